"""Replay speed, side by side in one run: `promptops.replay.run` versus `mlflow.genai.evaluate`.

Run with `.venv/bin/python benchmarks/bench_replay.py` (`--quick`: 200 records only). Everything is real: a
sqlite MLflow store in a temporary directory holds the prompt versions, the runs and the traces.

1. End to end, 200 and 1,000 records, a zero-latency target (it formats its prompt), scorers rougeL + bleu, in two
   cases: the best case (the candidate is the production template, so every output equals its baseline, and
   evaluate runs cold) and the realistic one (a candidate whose outputs differ on every record, both sides warmed
   with 20 records first); issue 16:
   - `mlflow.genai.evaluate` with a `predict_fn` doing the same and two `@scorer`s computing the same values
     (rouge-score and sacrebleu against the baseline output given as the expectation), in a process of its own
     (the timing excludes its imports);
   - `promptops.replay.run` with `--repeats 0` (one call per record, as evaluate makes) and with the default
     `--repeats 1` (a second call per record for the noise floor: twice the calls), both logging an MLflow run
     with the per-record table and the HTML report, and both exporting their spans to MLflow (flushed inside the
     timing).
2. I/O-bound throughput: a target that sleeps 200 ms per call, 32 workers, records/s (ideal: 160/s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
TICKETS = ROOT / "examples" / "support" / "tickets.jsonl"
TEMPLATE = "Summarize this ticket for the agent. Ticket: {{ text }}"
# A candidate whose outputs differ from the captured ones on every record (issue 16): with TEMPLATE itself as the
# candidate every output equals its baseline and ROUGE's identical-text shortcut fires each time (the best case).
DIFFERENT = "Ticket (for the agent, summarize briefly): {{ text }} Reply within one business day."
APP = """
import time
import promptops

@promptops.track(prompt="PROMPT")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    return prompt.format(text=text)[:400]

@promptops.track(prompt="PROMPT")
def slow(text: str, *, prompt: promptops.Prompt) -> str:
    time.sleep(0.2)
    return prompt.format(text=text)[:400]
"""


def texts(count: int) -> list[str]:
    base = [json.loads(line)["text"] for line in TICKETS.read_text().splitlines() if line.strip()]
    return [base[i % len(base)] + ("" if i < len(base) else f" (ref {i})") for i in range(count)]


def setup(workdir: Path) -> tuple[str, str]:
    import mlflow

    import promptops

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    name = f"bench-{uuid.uuid4().hex[:6]}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name=name, template=TEMPLATE)
    client.set_prompt_alias(name, "production", 1)
    client.register_prompt(name=name, template=DIFFERENT)  # version 2
    module = f"bench_replay_app_{uuid.uuid4().hex[:6]}"
    (workdir / f"{module}.py").write_text(textwrap.dedent(APP).replace("PROMPT", name))
    sys.path.insert(0, str(workdir))
    promptops.configure(tracking_uri=uri, experiment_name="bench-replay", capture=False)
    return uri, module


def dataset(workdir: Path, count: int) -> str:
    path = workdir / f"data-{count}.jsonl"
    with path.open("w") as out:
        for text in texts(count):
            baseline = TEMPLATE.replace("{{ text }}", text)[:400]
            out.write(json.dumps({"inputs": {"text": text}, "output": baseline, "metadata": {"prompt_version": 1}}))
            out.write("\n")
    return str(path)


MLFLOW_EVALUATE = """
import json, sys, time
import mlflow, sacrebleu
from mlflow.genai.scorers import scorer
from rouge_score import rouge_scorer

uri, template, path, warm = sys.argv[1:5]
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("bench-evaluate")
rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

@scorer
def rouge_l(outputs, expectations):
    return rouge.score(expectations["expected_response"], outputs)["rougeL"].fmeasure

@scorer
def bleu(outputs, expectations):
    return sacrebleu.sentence_bleu(outputs, [expectations["expected_response"]]).score / 100

def predict(text):
    return template.replace("{{ text }}", text)[:400]

rows = [json.loads(line) for line in open(path)]
data = [{"inputs": row["inputs"], "expectations": {"expected_response": row["output"]}} for row in rows]
if warm == "1":  # as promptops is warmed: imports, scorer tables, the store's first writes (untimed)
    mlflow.genai.evaluate(data=data[:20], predict_fn=predict, scorers=[rouge_l, bleu])
started = time.perf_counter()
mlflow.genai.evaluate(data=data, predict_fn=predict, scorers=[rouge_l, bleu])
print(time.perf_counter() - started)
"""


def run_mlflow(uri: str, data: str, template: str, *, warm: bool) -> float:
    """`mlflow.genai.evaluate` in a process of its own: nothing of promptops loaded or configured there."""
    # MLflow 3.17's evaluate deadlocks on a sqlite store at 1,000 rows with SQLAlchemy's default pool (its
    # predict threads wait forever for a connection, seen here): a larger pool lets it finish.
    env = {**os.environ, "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "32", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "64"}
    done = subprocess.run(
        [sys.executable, "-c", MLFLOW_EVALUATE, uri, template, data, "1" if warm else "0"], capture_output=True,
        text=True, check=True,
        env=env, timeout=1800,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def run_promptops(
    module: str, data: str, repeats: int, function: str = "summarize", workers: int = 8, candidate: int = 1
) -> float:
    import promptops
    from promptops import replay

    dropped = promptops.stats()["spans_dropped"]
    started = time.perf_counter()
    result = replay.run(
        f"{module}:{function}", candidate=candidate, dataset=data, scorers=["rougeL", "bleu"], repeats=repeats,
        workers=workers, log_to_mlflow=True,
    )  # fmt: skip
    promptops.flush(timeout=60)
    elapsed = time.perf_counter() - started
    assert result.mlflow_run_id is not None and (result.passed or candidate != 1), result.summary()
    lost = promptops.stats()["spans_dropped"] - dropped
    if lost:  # a run that dropped spans did less work than one that exported them all: say so (issue 16)
        print(f"warning: {lost} of the replay's spans were dropped ({module}:{function}, {repeats=})")
    rouge = result.metrics["rougeL"].candidate
    assert rouge is not None and (rouge == 1.0) == (candidate == 1), rouge  # the outputs differ, or not
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 records only")
    args = parser.parse_args()
    sizes = [200] if args.quick else [200, 1000]
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        os.chdir(workdir)
        uri, module = setup(workdir)
        run_promptops(module, dataset(workdir, 20), repeats=0)  # warm-up: imports, model of the scorers, tables
        # Two cases, each side by side: the best case (the candidate reproduces every captured output, and
        # evaluate runs cold, as first measured) and the realistic one (a candidate whose outputs differ, and
        # evaluate warmed with 20 records first, as promptops is).
        cases = [
            ("best case: identical outputs, evaluate cold", 1, TEMPLATE, False),
            ("realistic: outputs differ, both warmed", 2, DIFFERENT, True),
        ]
        rows: list[tuple[str, str, int, float]] = []
        for case, version, template, warm in cases:
            for count in sizes:
                data = dataset(workdir, count)
                rows.append((case, "mlflow.genai.evaluate", count, run_mlflow(uri, data, template, warm=warm)))
                for repeats, label in (
                    (0, "promptops replay --repeats 0"),
                    (1, "promptops replay (default --repeats 1)"),
                ):
                    seconds = run_promptops(module, data, repeats, candidate=version)
                    rows.append((case, label, count, seconds))
        evaluate = {(case, count): seconds for case, name, count, seconds in rows if name.startswith("mlflow")}
        for current, *_ in cases:
            print(f"\n{current}")
            print(
                f"{'end to end, zero-latency target, rougeL + bleu':<48} {'records':>8} {'seconds':>9} {'ms/record':>10}"
            )
            for case, name, count, seconds in rows:
                if case != current:
                    continue
                speedup = "" if name.startswith("mlflow") else f"  {evaluate[case, count] / seconds:5.1f}x faster"
                print(f"{name:<48} {count:>8} {seconds:>9.2f} {seconds / count * 1000:>10.2f}{speedup}")

        records = 320
        data = dataset(workdir, records)
        seconds = run_promptops(module, data, 0, function="slow", workers=32)
        print(f"\nI/O-bound: 200 ms per call, 32 workers, {records} records: {seconds:.2f} s, "
              f"{records / seconds:.0f} records/s (ideal {32 / 0.2:.0f}/s)")  # fmt: skip


if __name__ == "__main__":
    main()
