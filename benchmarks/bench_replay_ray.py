"""Replay on Ray against local threads (issue 15), side by side in one run, on this machine.

Run with `.venv/bin/python benchmarks/bench_replay_ray.py` (needs `mlflow-promptops[ray]`; `--records`,
`--workers`, `--latency`, `--pairs`). Everything is real: a sqlite MLflow store in a temporary directory holds the
prompt versions; each Ray cluster is a `ray start --head` on 127.0.0.1 started for its measurement and stopped
after it (`tests.support.RayCluster`).

1. Calls: a tracked function that sleeps `--latency` (200 ms) per call, `--records` records (2,000), one call per
   record (`--baseline captured --repeats 0`), `--workers` in flight (32), tracing and capture off, scorers rougeL
   and bleu. Local threads, then Ray with 1 and with 2 worker processes (`--num-cpus`). Reported: the wall time
   of `replay.run` (Ray: joining the cluster, starting worker processes, shipping the directory included), the
   *calls phase* (first to last finished call, as the progress bar sees it) and its ratio to the ideal
   (calls x latency / workers).
2. Semantic scoring of `--pairs` (5,000) pairs of different texts: in this process against scoring tasks on a
   2-CPU cluster (model load on each worker included, no embedding cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray keeps to 127.0.0.1 (see tests.support.RayCluster)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import RayCluster  # noqa: E402

TICKETS = ROOT / "examples" / "support" / "tickets.jsonl"
TEMPLATE = "Summarize this ticket for the agent. Ticket: {{ text }}"
CANDIDATE = "Ticket (for the agent, summarize briefly): {{ text }} Reply within one business day."
APP = """
import time
import promptops

@promptops.track(prompt="PROMPT")
def slow(text: str, *, prompt: promptops.Prompt) -> str:
    time.sleep(LATENCY)
    return prompt.format(text=text)[:400]
"""


def texts(count: int) -> list[str]:
    base = [json.loads(line)["text"] for line in TICKETS.read_text().splitlines() if line.strip()]
    return [base[i % len(base)] + f" (ref {i})" for i in range(count)]


def setup(workdir: Path, records: int, latency: float) -> tuple[str, Path]:
    import mlflow

    import promptops

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    name = f"bench-{uuid.uuid4().hex[:6]}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name=name, template=TEMPLATE)
    client.register_prompt(name=name, template=CANDIDATE)  # version 2
    module = f"bench_ray_app_{uuid.uuid4().hex[:6]}"
    (workdir / f"{module}.py").write_text(
        textwrap.dedent(APP).replace("PROMPT", name).replace("LATENCY", repr(latency))
    )
    os.chdir(workdir)  # the target's module is shipped to the workers from the current directory
    sys.path.insert(0, str(workdir))
    promptops.configure(tracking_uri=uri, trace_exporter="none", capture=False)
    data = workdir / "records.jsonl"
    rows = [
        {
            "inputs": {"text": text},
            "output": TEMPLATE.replace("{{ text }}", text)[:400],
            "metadata": {"prompt_version": 1},
        }
        for text in texts(records)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return f"{module}:slow", data


class Clock:
    """The progress callback: when the first and the last call finished."""

    def __init__(self) -> None:
        self.first = self.last = 0.0
        self.calls = 0

    def __call__(self, calls: int, records: int) -> Callable[[int], None]:
        def tick(count: int) -> None:
            now = time.perf_counter()
            self.first = self.first or now
            self.last = now
            self.calls += count

        return tick


def calls(target: str, data: Path, workers: int, latency: float, **options: object) -> dict[str, float]:
    from promptops import replay

    clock = Clock()
    started = time.perf_counter()
    result = replay.run(
        target,
        candidate=2,
        dataset=str(data),
        repeats=0,
        workers=workers,
        log_to_mlflow=False,
        progress=clock,
        **options,
    )
    wall = time.perf_counter() - started
    assert result.calls == clock.calls and not result.interrupted and result.infrastructure_errors == 0
    ideal = result.calls * latency / workers
    phase = clock.last - clock.first
    return {
        "calls": result.calls,
        "wall_s": wall,
        "phase_s": phase,
        "ideal_s": ideal,
        "before_first_s": clock.first - started,
    }


def semantic(pairs: int, address: str | None) -> float:
    from promptops.scorers import ScoreInput, Semantic
    from promptops.scorers._semantic import clear_memory_cache

    base = texts(pairs)
    items = [ScoreInput({}, text, base[(i + 7) % len(base)]) for i, text in enumerate(base)]
    scorer = Semantic(disk_cache=False)
    clear_memory_cache()
    if address is None:
        started = time.perf_counter()
        scorer.score(items)
        return time.perf_counter() - started
    import ray

    from promptops.replay._ray import RayExecutor

    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        started = time.perf_counter()
        RayExecutor({}).score(scorer, items)
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--pairs", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        workdir = Path(tmp)
        target, data = setup(workdir, args.records, args.latency)
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        rows: list[tuple[str, dict[str, float]]] = [("local threads", calls(target, data, args.workers, args.latency))]
        semantic_rows: list[tuple[str, float]] = []
        for cpus in (1, 2):
            session = Path(tempfile.mkdtemp(prefix="bench-ray-session-"))  # outside the shipped directory
            cluster = RayCluster(session, cpus=cpus)
            try:
                figures = calls(target, data, args.workers, args.latency, executor="ray", ray_address=cluster.address)
                rows.append((f"Ray, {cpus} worker process{'es' if cpus > 1 else ''}", figures))
                if cpus == 2 and args.pairs:
                    semantic_rows.append(("Ray, 2 worker processes", semantic(args.pairs, cluster.address)))
            finally:
                cluster.stop()
                shutil.rmtree(session, ignore_errors=True)
        if args.pairs:
            semantic_rows.insert(0, ("this process", semantic(args.pairs, None)))
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"\n{args.records} records, 1 call each, {args.latency * 1000:.0f} ms per call, --workers {args.workers}")
    print("| executor | wall time of replay.run | before the first call | calls phase | ideal | calls phase / ideal |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, f in rows:
        print(
            f"| {label} | {f['wall_s']:.1f} s | {f['before_first_s']:.1f} s | {f['phase_s']:.1f} s | {f['ideal_s']:.1f} s "
            f"| {f['phase_s'] / f['ideal_s']:.2f}x |"
        )
    if semantic_rows:
        print(f"\nsemantic scoring of {args.pairs} pairs (all-MiniLM-L6-v2, no cache)")
        print("| where | seconds | pairs/s |")
        print("|---|---:|---:|")
        for label, seconds in semantic_rows:
            print(f"| {label} | {seconds:.1f} | {args.pairs / seconds:.0f} |")


if __name__ == "__main__":
    main()
