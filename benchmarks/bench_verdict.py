"""Verdict quality of replay's default gates: false alarms on A/A replays, detection of injected regressions.

Run with `.venv/bin/python benchmarks/bench_verdict.py` (`--trials N`, default 60 A/A and 20 per regression).
Everything is real: the support demo app (`examples/support/app.py`: a tracked function on the offline model,
which reads its prompt and varies one answer in five, seeded), a sqlite MLflow registry with the demo's prompt
versions, production traffic captured through `@promptops.track` into a SQLite capture store, and
`promptops.replay.run` with its defaults (scorers rougeL and bleu, one baseline re-run per record for the noise
floor, the default gates).

* A/A: the candidate is a new version with the production template, unchanged. Each trial replays a different
  random 200 of the 234 captured tickets with a different model seed. Target: at most 5% fail.
* Regressions: candidates that truncate (`bad_truncate`), change the format (`bad_format`), drop content
  (`bad_drop`), and two subtler ones (production's template plus "in at most 20 words"; plus "as JSON", which
  keeps the summary). Target: at least 95% fail.
* A reworded, equivalent candidate (`good`), for information.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ["PROMPTOPS_DEMO_SEED"] = "0"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60, help="A/A trials (regressions: a third of it each)")
    args = parser.parse_args()

    import mlflow

    import promptops
    from examples.support import app
    from promptops import datasets, replay

    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        uri = f"sqlite:///{Path(directory) / 'mlflow.db'}"
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        v1 = app.TEMPLATES["v1"]
        candidates = {
            "A/A (same template)": v1,
            "good (reworded)": app.TEMPLATES["good"],
            "bad_truncate": app.TEMPLATES["bad_truncate"],
            "bad_format": app.TEMPLATES["bad_format"],
            "bad_drop": app.TEMPLATES["bad_drop"],
            "v1 + at most 20 words": v1.replace("Write at most 40 words", "Write at most 20 words"),
            "v1 + as JSON": v1.replace("include the customer's name.", "include the customer's name. Reply as JSON."),
        }
        production = int(client.register_prompt(name=app.PROMPT_NAME, template=v1).version)
        client.set_prompt_alias(app.PROMPT_NAME, "production", production)
        versions = {label: int(client.register_prompt(name=app.PROMPT_NAME, template=t).version) for label, t in
                    candidates.items()}  # fmt: skip
        promptops.configure(tracking_uri=uri, trace_exporter="none", capture="sqlite:///captures.db")

        tickets = app.load_tickets()
        for ticket in tickets:  # production traffic, captured
            app.summarize_ticket(ticket["text"], ticket["customer"])
        assert promptops.flush(timeout=60)
        function = f"{app.summarize_ticket.__module__}:summarize_ticket"
        captured = datasets.from_captures(function=function)
        assert len(captured.records) == len(tickets), len(captured.records)

        plan = {label: args.trials if label.startswith("A/A") else max(10, args.trials // 3) for label in candidates}
        print(f"{'candidate':<24} {'trials':>6} {'failed':>7} {'rate':>7}   mean rougeL delta   s/replay")
        for label, trials in plan.items():
            failed = 0
            deltas: list[float] = []
            started = time.perf_counter()
            for trial in range(trials):
                app.MODEL.reset(seed=1000 + trial)
                sample = datasets.from_captures(function=function, sample=200, seed=trial)
                result = replay.run(
                    "examples.support.app:summarize_ticket", candidate=versions[label], dataset=sample,
                    log_to_mlflow=False, seed=trial,
                )  # fmt: skip
                failed += not result.passed
                delta = result.metrics["rougeL"].delta
                deltas.append(delta if delta is not None else float("nan"))
            seconds = (time.perf_counter() - started) / trials
            mean_delta = sum(deltas) / len(deltas)
            print(f"{label:<24} {trials:>6} {failed:>7} {failed / trials:>7.1%}   {mean_delta:+17.3f}   {seconds:8.2f}")


if __name__ == "__main__":
    main()
