"""Benchmarks for capture (issues 4, 10 and 16): hot-path cost, writer throughput, a CPU-busy process, memory bound.

Run with `.venv/bin/python benchmarks/bench_capture.py` (`--quick` for a short run). Everything is real: a
SQLite file in a temporary directory and the PostgreSQL server on 127.0.0.1:5432 (a throw-away database is
created and dropped). Figures:

1. Per-call cost, side by side in one run, batches interleaved: a bare call of a tracked-sized function, the
   same plus `submit()` (str in, str out: values deferred to the writer thread), plus `submit()` with a list
   input (converted on the hot path); then the real decorator: a raw OpenTelemetry SDK span (a decorator
   around `start_as_current_span`, `BatchSpanProcessor`, an exporter that discards), `@promptops.track` with
   tracing only and `@promptops.track` with tracing and capture (its spans routed to a provider with the same
   discarding exporter). The writer thread runs meanwhile, as in production.
2. Sustained writer throughput: N calls submitted back to back, timed until `flush()` returns (records/s), alone
   and with a CPU-bound thread beside the writer.
3. One batch of 2,048 records written by `CaptureStore.write()`, with and without a CPU-bound thread beside it,
   against the per-row `executemany` it replaced (the baseline, reproduced here), batches interleaved.
4. 200,000 tracked calls with a CPU-bound thread beside them (default settings, tracing off): drops counted, at
   each rate of `--rates` (calls/s; 0, the default, as fast as the calling thread goes).
5. Memory while the store is down: 200,000 calls against a port where nothing listens; queue length and RSS
   growth stay bounded by `capture_queue_size`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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

    raw, tracked, tracked_captured, provider = decorated(cc)

    def loop(func: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(batch):
                func("some input text")

        return run

    contenders = {
        "bare call": bare,
        "call + submit (str in/out, deferred)": captured,
        "call + submit (list input, encoded now)": captured_mutable,
        "raw OTel SDK span (decorator)": loop(raw),
        "@promptops.track, tracing only": loop(tracked),
        "@promptops.track, tracing + capture": loop(tracked_captured),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            start = time.perf_counter_ns()
            contenders[name]()
            samples[name].append((time.perf_counter_ns() - start) / batch)
        provider.force_flush()
        promptops.flush(60)  # keep the queue from filling: this measures the enqueue, not drops
    routing.close()
    return [(name, statistics.median(values)) for name, values in samples.items()]


class Discard:
    """A span exporter that accepts every batch and drops it."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


routing = contextlib.ExitStack()  # the use_provider() routing of the per-call phase


def decorated(cc: CallCapture) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Any]:
    """A raw-span decorator and `@promptops.track` (tracing only; tracing + capture), spans to a discarding exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(Discard()))  # type: ignore[arg-type]
    start_span = provider.get_tracer("bench").start_as_current_span

    def plain(text: str) -> str:
        return text

    @functools.wraps(plain)
    def raw(*args: Any, **kwargs: Any) -> Any:
        with start_span("plain"):
            return plain(*args, **kwargs)

    fallback = "Summarize {{text}}"
    tracked = promptops.track(prompt="bench-capture", fallback=fallback, capture=False)(plain)
    tracked_captured = promptops.track(prompt="bench-capture", fallback=fallback)(plain)
    routing.enter_context(promptops.tracing.use_provider(provider))
    tracked("warm")  # resolves the prompt (to the fallback: the registry is an empty sqlite store)
    tracked_captured("warm")
    return raw, tracked, tracked_captured, provider


def throughput(url: str, n: int, busy: bool = False) -> float:
    """Records/s of the whole writer (rows built and written) draining `n` queued calls, beside a busy thread or not."""
    promptops.shutdown(10)
    promptops.configure(capture=url, capture_queue_size=n + 10)
    cc = CallCapture(summarize)
    cc.submit(PROMPT, ("warm",), {"prompt": PROMPT}, bound=False, output="o", started_ns=0, ended_ns=1)
    promptops.flush(60)
    before = promptops.stats()["captures_written"]
    with cpu_bound_thread(busy):
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


def executemany_write(store: Any, records: Sequence[Any]) -> None:
    """The baseline: `CaptureStore.write()` before issue 10, one `executemany` (one statement per row)."""
    from promptops.capture._store import _row

    sqlite = store.dialect == "sqlite"
    rows = [_row(record, sqlite) for record in records]
    marker = "?" if sqlite else "%s"
    columns = ", ".join(column.name for column in _store_columns())
    statement = f"INSERT INTO promptops_captures ({columns}) VALUES ({', '.join([marker] * len(_store_columns()))})"
    with store.transaction() as connection:
        connection.exec_driver_sql(statement, rows)


def _store_columns() -> Any:
    from promptops.capture._store import captures_table

    return captures_table.columns


@contextlib.contextmanager
def cpu_bound_thread(on: bool = True) -> Iterator[None]:
    """A thread that computes and never waits, beside the block (it holds the GIL whenever it can)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin, daemon=True)
    if on:
        thread.start()
        time.sleep(0.05)
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join()


def batch_write(url: str, repeats: int) -> dict[tuple[str, bool], float]:
    """Records/s of one `CaptureStore.write()` of 2,048 records: new and baseline, with and without a busy thread."""
    from promptops.capture import CaptureStore

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.faults.support import make_records

    store = CaptureStore.open(url)
    samples: dict[tuple[str, bool], list[float]] = {}
    ways: list[tuple[str, Callable[[Any, Any], Any]]] = [
        ("multi-row / COPY (now)", lambda store, records: store.write(records)),
        ("executemany (before)", executemany_write),
    ]
    try:
        for repeat in range(repeats):
            for name, write in ways[repeat % 2 :] + ways[: repeat % 2]:
                for busy in (False, True):
                    records = make_records(2048)
                    with cpu_bound_thread(busy):
                        start = time.perf_counter()
                        write(store, records)
                        elapsed = time.perf_counter() - start
                    samples.setdefault((name, busy), []).append(2048 / elapsed)
    finally:
        store.close()
    return {key: statistics.median(values) for key, values in samples.items()}


def busy_process(url: str, folder: Path, n: int, rate: float = 0.0) -> tuple[float, int, int]:
    """`n` tracked calls with a CPU-bound thread beside them, default capture settings: (calls/s, written, dropped).

    `rate`: calls a second at most (paced by sleeping between groups of calls, as a server waiting for requests
    would); 0 for as fast as the calling thread goes.
    """
    promptops.shutdown(10)
    promptops.configure(
        capture=url, trace_exporter="none", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", cache_dir=str(folder)
    )

    @promptops.track(prompt="bench-busy", fallback="Summarize {{text}}")
    def summarize_call(text: str, *, prompt: Prompt) -> str:
        return prompt.format(text=text)[:40]

    summarize_call("warm")
    promptops.flush(60)
    before = promptops.stats()
    perf, sleep = time.perf_counter, time.sleep
    with cpu_bound_thread():
        start = perf()
        for i in range(n):
            if rate and not i % PACE:
                ahead = start + i / rate - perf()
                if ahead > 0:
                    sleep(ahead)
            summarize_call(f"call number {i}: some text to summarize")
        elapsed = perf() - start
        promptops.flush(300)
    after = promptops.stats()
    return (
        n / elapsed,
        after["captures_written"] - before["captures_written"],
        after["captures_dropped"] - before["captures_dropped"],
    )


PACE = 16  # calls between two checks of the pace in `busy_process`


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


def print_busy(folder: Path, pg: str, calls: int, rates: Sequence[float] = (0.0,)) -> None:
    """Figure 4, both stores, at each call rate (0: unthrottled)."""
    title = f"{calls:,} tracked calls beside a CPU-bound thread"
    print(f"\n{title:45s} {'calls/s':>9s} {'written':>9s} {'dropped':>9s}")
    for rate in rates:
        for label, url in (("SQLite", f"sqlite:///{folder / f'busy{rate:.0f}.db'}"), ("PostgreSQL", pg)):
            pace = f"at most {rate:,.0f} calls/s" if rate else "unthrottled"
            achieved, written, dropped = busy_process(url, folder, calls, rate)
            print(f"{label + ', ' + pace:45s} {achieved:9.0f} {written:9d} {dropped:9d}", flush=True)


def busy_figure(folder: Path, calls: int, rates: Sequence[float]) -> int:
    """Figure 4 alone, in a throw-away PostgreSQL database."""
    database = f"promptops_bench_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {database}")
    try:
        print_busy(folder, f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}", calls, rates)
    finally:
        promptops.shutdown(10)
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--busy-only", action="store_true", help="figure 4 only: tracked calls beside a busy thread")
    parser.add_argument(
        "--rates",
        default="0",
        help="figure 4's call rates, comma-separated calls/s (0: unthrottled), e.g. 2300,5000,10000,0",
    )
    parser.add_argument("--calls", type=int, default=0, help="figure 4's number of calls (default 200,000)")
    options = parser.parse_args()
    rates = [float(rate) for rate in options.rates.split(",")]
    n = 20_000 if options.quick else 100_000
    busy_calls = options.calls or (20_000 if options.quick else 200_000)
    folder = Path(tempfile.mkdtemp(prefix="promptops-bench-"))
    if options.busy_only:
        return busy_figure(folder, busy_calls, rates)
    promptops.configure(
        capture=f"sqlite:///{folder / 'hot.db'}",
        trace_exporter="none",
        capture_queue_size=1_000_000,
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",  # nothing written into the working directory
        cache_dir=str(folder),
        cache_ttl=86_400.0,
    )
    rows = dict(hot_path(repeats=20 if options.quick else 60, batch=1000))
    bare = rows["bare call"]
    print(f"{'hot path (median per call)':45s} {'ns':>9s} {'added':>9s}")
    for name, value in rows.items():
        print(f"{name:45s} {value:9.0f} {value - bare:9.0f}")
    span = rows["raw OTel SDK span (decorator)"] - bare
    both = rows["@promptops.track, tracing + capture"] - bare
    print(f"{'track, tracing + capture / raw span (added)':45s} {both / span:9.2f}x")

    database = f"promptops_bench_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {database}")
    pg = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    try:
        print(f"\n{'writer throughput (' + str(n) + ' records)':45s} {'median/s':>9s} {'min/s':>9s} {'target':>9s}")
        for busy in (False, True):
            results = {
                "SQLite": [throughput(f"sqlite:///{folder / f'tp{i}{busy}.db'}", n, busy) for i in range(3)],
                "PostgreSQL": [throughput(pg, n, busy) for _ in range(3)],
            }
            for (name, values), target in zip(results.items(), (20_000, 10_000)):
                label = f"{name}, {'beside a CPU-bound thread' if busy else 'alone'}"
                print(
                    f"{label:45s} {statistics.median(values):9.0f} {min(values):9.0f} {'-' if busy else str(target):>9s}"
                )

        promptops.shutdown(10)
        print(f"\n{'one write() of 2,048 records (records/s)':45s} {'alone':>9s} {'busy':>9s} {'slowdown':>9s}")
        for label, url in (("SQLite", f"sqlite:///{folder / 'batch.db'}"), ("PostgreSQL", pg)):
            rates = batch_write(url, 6 if options.quick else 12)
            for way in ("multi-row / COPY (now)", "executemany (before)"):
                alone, busy = rates[(way, False)], rates[(way, True)]
                print(f"{label + ', ' + way:45s} {alone:9.0f} {busy:9.0f} {alone / busy:8.1f}x")

        print_busy(folder, pg, busy_calls, rates)
    finally:
        promptops.shutdown(10)
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    queued, dropped, growth_half, growth = sink_down(200_000)
    print(f"\n{'store down, 200,000 calls of ~2 KB, bound 20,000':45s}")
    print(f"{'  queued at the end':45s} {queued:9d}")
    print(f"{'  dropped (counted)':45s} {dropped:9d}")
    print(f"{'  RSS growth after 100,000 / 200,000 calls (MB)':45s} {growth_half:9.1f} {growth:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
