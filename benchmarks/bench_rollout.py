"""What a rollout adds to a warm `@promptops.track` call (issue 14: at most 2 µs at the median).

Isolates prompt resolution: tracing and capture are off (`trace_exporter="none"`, `capture=False`), so the
rows differ only in what the decorator does to pick the prompt. A real MLflow sqlite registry in a temporary
directory holds two prompts; one has a rollout running at share 0.5.

    .venv/bin/python benchmarks/bench_rollout.py [--baseline-src /path/to/other/checkout]

With `--baseline-src`, the same measurement also runs against another checkout of promptops (say `main`
before the rollout hook), in child processes interleaved with this one's, and the table puts them side by
side. Each row: median and p90 over batches of the per-call time; *added* is the median minus a bare call's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
for _name in [name for name in os.environ if name.startswith("PROMPTOPS_")] + ["MLFLOW_TRACKING_URI"]:
    os.environ.pop(_name, None)

ROOT = Path(__file__).resolve().parents[1]


def measure(calls: int, repeats: int, cpu: bool = False) -> dict[str, list[float]]:
    """Per-call nanoseconds of each contender's batches, contenders interleaved (`cpu`: the thread's CPU time)."""
    clock = time.thread_time_ns if cpu else time.perf_counter_ns
    from mlflow import MlflowClient

    import promptops

    work = Path(tempfile.mkdtemp(prefix="promptops-bench-rollout-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("plain", "rolled"):
        client.register_prompt(name=name, template="v1 {{text}}")
        version = client.register_prompt(name=name, template="v2 {{text}}")
        client.set_prompt_alias(name, "production", 1)
    promptops.configure(tracking_uri=uri, cache_dir=work / "cache", trace_exporter="none", capture=False)
    rollout: Any = None
    try:
        from promptops import rollout  # not in checkouts older than issue 14

        rollout.start_rollout(client, "rolled", candidate=int(version.version), share=0.5)
        rollout.rollout_cache().refresh("rolled")
    except ImportError:
        pass

    def bare(text: str) -> str:
        return text

    @promptops.track(prompt="plain")
    def no_rollout(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    import inspect

    # Checkouts before the decorator's rollout hook take no rollout_key: their rows show the call without it.
    keyword = {"rollout_key": "text"} if "rollout_key" in inspect.signature(promptops.track).parameters else {}

    @promptops.track(prompt="rolled", **keyword)
    def keyed(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    @promptops.track(prompt="rolled")
    def random_arm(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    same = ["some text"] * calls
    # A new sticky key on every call of a batch: no key's bucket is remembered (the worst case for the memo).
    distinct = [f"user-{index}" for index in range(calls)]
    contenders = {
        "bare call": (bare, same),
        "no rollout": (no_rollout, same),
        "rollout, sticky key": (keyed, same),
        "rollout, new key per call": (keyed, distinct),
        "rollout, no key": (random_arm, same),
    }
    for func, _ in contenders.values():  # warm every cache
        for _ in range(1000):
            func("some text")
    promptops.flush()
    results: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for repeat in range(repeats):
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
            func, texts = contenders[name]
            start = clock()
            for text in texts:
                func(text)
            results[name].append((clock() - start) / calls)
    return results


def run_child(src: Path, calls: int, repeats: int, cpu: bool) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = f"import json, sys; sys.path.insert(0, {str(src)!r}); import bench_rollout as b; print(json.dumps(b.measure({calls}, {repeats}, {cpu})))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3, help="child processes per checkout, interleaved")
    parser.add_argument(
        "--baseline-src", type=Path, action="append", help="another checkout of promptops to compare with (repeatable)"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="the calling thread's CPU time, not wall time (on a loaded machine)"
    )
    args = parser.parse_args()
    sources = {"this checkout": ROOT}
    if args.baseline_src:
        sources = {src.resolve().name[:15]: src.resolve() for src in args.baseline_src} | sources
    merged: dict[str, dict[str, list[float]]] = {label: {} for label in sources}
    for _ in range(args.rounds):
        for label, src in sources.items():
            for name, values in run_child(src, args.calls, args.repeats, args.cpu).items():
                merged[label].setdefault(name, []).extend(values)
    print(
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.calls:,} calls x {args.repeats} batches x "
        f"{args.rounds} processes; {'thread CPU' if args.cpu else 'wall'} time"
    )
    print(f"{'checkout':15s} {'contender':26s} {'median':>9s} {'p90':>9s} {'added':>9s}")
    for label, rows in merged.items():
        bare = statistics.median(rows["bare call"])
        for name, values in rows.items():
            median = statistics.median(values)
            p90 = statistics.quantiles(values, n=10)[-1]
            print(f"{label:15s} {name:26s} {median:8.0f}n {p90:8.0f}n {median - bare:8.0f}n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
