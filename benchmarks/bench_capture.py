"""Benchmarks for issue 4 (capture core): hot-path cost of `CallCapture.submit`, writer throughput, memory bound.

Run with `.venv/bin/python benchmarks/bench_capture.py` (`--quick` for a short run). Everything is real: a
SQLite file in a temporary directory and the PostgreSQL server on 127.0.0.1:5432 (a throw-away database is
created and dropped). Figures:

1. Per-call cost, side by side in one run, batches interleaved: a bare call of a tracked-sized function, the
   same plus `submit()` (str in, str out: values deferred to the writer thread), plus `submit()` with a list
   input (converted on the hot path), and a raw OpenTelemetry SDK span with and without `submit()`. The writer
   thread runs meanwhile, as in production.
2. Sustained writer throughput: N calls submitted back to back, timed until `flush()` returns (records/s).
3. Memory while the store is down: 200,000 calls against a port where nothing listens; queue length and RSS
   growth stay bounded by `capture_queue_size`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"

import promptops
from promptops.capture import CallCapture
from promptops.prompts import Prompt

PROMPT = Prompt(name="summarize", version=2, template="{{text}}", alias="production", source="cache")


def summarize(text: str, *, prompt: Prompt) -> str:
    return text


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql], check=True, capture_output=True
    )


def hot_path(repeats: int, batch: int) -> list[tuple[str, float]]:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    cc = CallCapture(summarize)
    submit = cc.submit
    perf = time.perf_counter_ns
    prompt = PROMPT
    items = [1, 2, 3]

    def bare() -> None:
        for _ in range(batch):
            kwargs = {"prompt": prompt}
            start = perf()
            summarize("some input text", **kwargs)
            perf() - start

    def captured() -> None:
        for _ in range(batch):
            kwargs = {"prompt": prompt}
            start = perf()
            out = summarize("some input text", **kwargs)
            submit(prompt, ("some input text",), kwargs, bound=False, output=out, started_ns=start, ended_ns=perf())

    def captured_mutable() -> None:
        for _ in range(batch):
            kwargs = {"prompt": prompt}
            start = perf()
            out = summarize("x", **kwargs)
            submit(prompt, (items,), kwargs, bound=False, output=out, started_ns=start, ended_ns=perf())

    def span() -> None:
        for _ in range(batch):
            kwargs = {"prompt": prompt}
            start = perf()
            s = tracer.start_span("summarize", attributes={"promptops.prompt.name": "summarize"})
            summarize("some input text", **kwargs)
            s.end()
            perf() - start

    def span_captured() -> None:
        for _ in range(batch):
            kwargs = {"prompt": prompt}
            start = perf()
            s = tracer.start_span("summarize", attributes={"promptops.prompt.name": "summarize"})
            out = summarize("some input text", **kwargs)
            s.end()
            submit(
                prompt,
                ("some input text",),
                kwargs,
                bound=False,
                output=out,
                started_ns=start,
                ended_ns=perf(),
                span_context=s.get_span_context(),
            )

    contenders = {
        "bare call": bare,
        "call + submit (str in/out, deferred)": captured,
        "call + submit (list input, encoded now)": captured_mutable,
        "raw OTel SDK span": span,
        "raw OTel SDK span + submit": span_captured,
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            start = time.perf_counter_ns()
            contenders[name]()
            samples[name].append((time.perf_counter_ns() - start) / batch)
        promptops.flush(60)  # keep the queue from filling: this measures the enqueue, not drops
    return [(name, statistics.median(values)) for name, values in samples.items()]


def throughput(url: str, n: int) -> float:
    promptops.shutdown(10)
    promptops.configure(capture=url, capture_queue_size=n + 10)
    cc = CallCapture(summarize)
    cc.submit(PROMPT, ("warm",), {"prompt": PROMPT}, bound=False, output="o", started_ns=0, ended_ns=1)
    promptops.flush(60)
    before = promptops.stats()["captures_written"]
    start = time.perf_counter()
    for i in range(n):
        cc.submit(
            PROMPT,
            (f"call number {i}: some text to summarize",),
            {"prompt": PROMPT},
            bound=False,
            output="a short summary",
            started_ns=0,
            ended_ns=1_000_000,
        )
    assert promptops.flush(300)
    elapsed = time.perf_counter() - start
    assert promptops.stats()["captures_written"] - before == n
    return n / elapsed


def sink_down(n: int) -> tuple[int, int, float, float]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    promptops.shutdown(10)
    promptops.configure(capture=f"postgresql+psycopg://postgres@127.0.0.1:{port}/none", capture_queue_size=20_000)
    cc = CallCapture(summarize)
    text = "x" * 1000
    rss_start = rss_mb()
    dropped = promptops.stats()["captures_dropped"]
    for half in range(2):
        for i in range(n // 2):
            cc.submit(PROMPT, (text + str(i),), {"prompt": PROMPT}, bound=False, output=text, started_ns=0, ended_ns=1)
        if half == 0:
            rss_half = rss_mb()
    stats = promptops.stats()
    rss_end = rss_mb()
    promptops.shutdown(1)
    return stats["captures_queued"], stats["captures_dropped"] - dropped, rss_half - rss_start, rss_end - rss_start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    n = 20_000 if options.quick else 100_000
    folder = Path(tempfile.mkdtemp(prefix="promptops-bench-"))
    promptops.configure(capture=f"sqlite:///{folder / 'hot.db'}", trace_exporter="none", capture_queue_size=1_000_000)
    rows = hot_path(repeats=20 if options.quick else 60, batch=1000)
    bare = rows[0][1]
    print(f"{'hot path (median per call)':45s} {'ns':>9s} {'added':>9s}")
    for name, value in rows:
        print(f"{name:45s} {value:9.0f} {value - bare:9.0f}")
    span, span_captured = rows[3][1], rows[4][1]
    print(f"{'span + submit / raw span':45s} {span_captured / span:9.2f}x")

    database = f"promptops_bench_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {database}")
    try:
        results = {
            "SQLite": [throughput(f"sqlite:///{folder / f'tp{i}.db'}", n) for i in range(3)],
            "PostgreSQL": [throughput(f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}", n) for _ in range(3)],
        }
    finally:
        promptops.shutdown(10)
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    print(f"\n{'writer throughput (' + str(n) + ' records)':45s} {'median/s':>9s} {'min/s':>9s} {'target':>9s}")
    for (name, values), target in zip(results.items(), (20_000, 10_000)):
        print(f"{name:45s} {statistics.median(values):9.0f} {min(values):9.0f} {target:9d}")

    queued, dropped, growth_half, growth = sink_down(200_000)
    print(f"\n{'store down, 200,000 calls of ~2 KB, bound 20,000':45s}")
    print(f"{'  queued at the end':45s} {queued:9d}")
    print(f"{'  dropped (counted)':45s} {dropped:9d}")
    print(f"{'  RSS growth after 100,000 / 200,000 calls (MB)':45s} {growth_half:9.1f} {growth:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
