"""Reading a large capture store (issue 15): `captures list`, `datasets create --sample` and an aggregate, at 1M rows.

Run with `.venv/bin/python benchmarks/bench_capture_queries.py [--records N] [--stores sqlite,postgresql]`.
Everything is real: a SQLite file in a temporary directory and a throw-away database on the PostgreSQL at
127.0.0.1:5432 (created and dropped here). The store is filled through `CaptureStore.write()` (the capture
writer's own path) in batches of 2,048: N calls over the last 30 days, 10 functions, two prompt versions, one
call in five repeating earlier inputs, outputs of about 400 characters.

Each selection runs side by side with the way promptops made it before issue 15 (every matching record read
and decoded, then cut in Python), three times each, interleaved; the table shows the median wall time and the
peak of Python allocations (`tracemalloc`, a separate run) of each.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"

import sqlalchemy as sa

from promptops import datasets
from promptops.capture import CaptureRecord, CaptureStore
from promptops.capture._record import input_hash, uuid7

NOW = datetime.datetime.now(datetime.timezone.utc)
FUNCTIONS = [f"app.handlers:task_{index}" for index in range(10)]


def records(count: int) -> Iterator[CaptureRecord]:
    chooser = random.Random(15)
    span_ns = 30 * 86_400 * 10**9
    start_ns = int((NOW - datetime.timedelta(days=30)).timestamp() * 1e9)
    for index in range(count):
        at_ns = start_ns + span_ns * index // count
        text = f"ticket {chooser.randrange(index // 5 + 1) if index % 5 == 0 else index}: " + "words " * 20
        inputs = {"text": text, "options": {"tone": "brief", "index": index % 3}}
        yield CaptureRecord(
            id=uuid7(at_ns),
            timestamp=datetime.datetime.fromtimestamp(at_ns / 1e9, datetime.timezone.utc),
            function=FUNCTIONS[index % len(FUNCTIONS)],
            prompt_name="summarize",
            prompt_version=1 + index % 2,
            prompt_alias="production",
            prompt_source="cache",
            inputs=inputs,
            replayable=True,
            replay_reason=None,
            output="summary " * 50,
            error_type=None,
            error_message=None,
            latency_ms=100.0 + index % 50,
            first_item_ms=None,
            trace_id=uuid.uuid4().hex,
            span_id=uuid.uuid4().hex[:16],
            tags={},
            app_version="1.4.2",
            input_hash=input_hash(inputs),
        )


def fill(store: CaptureStore, count: int) -> float:
    started = time.perf_counter()
    batch: list[CaptureRecord] = []
    for record in records(count):
        batch.append(record)
        if len(batch) == 2048:
            store.write(batch)
            batch.clear()
    if batch:
        store.write(batch)
    return time.perf_counter() - started


# -- the contenders: now, and as before issue 15 --------------------------------------------------------------


def list_now(store: CaptureStore) -> int:
    return len(list(store.query(latest=50)))


def list_before(store: CaptureStore) -> int:
    return len(collections.deque(store.query(), maxlen=50))


SINCE = NOW - datetime.timedelta(days=7)


def sample_now(store: CaptureStore) -> int:
    return len(datasets.from_captures(store=store, since=SINCE, sample=500).records)


def sample_before(store: CaptureStore) -> int:
    found = list(store.query(since=SINCE))
    chosen = random.Random(0).sample(range(len(found)), 500)
    return len([found[index] for index in sorted(chosen)])


def dedupe_now(store: CaptureStore) -> int:
    return len(datasets.from_captures(store=store, function=FUNCTIONS[3], since=SINCE, dedupe=True, limit=500).records)


def dedupe_before(store: CaptureStore) -> int:
    seen: set[str] = set()
    kept = [
        r
        for r in store.query(function=FUNCTIONS[3], since=SINCE)
        if not (r.input_hash in seen or seen.add(r.input_hash))
    ]  # type: ignore[func-returns-value]
    return len(collections.deque(kept, maxlen=500))


def aggregate(store: CaptureStore) -> int:
    # What a rollout comparison needs per arm: calls, mean latency, errors, over a window.
    table = sa.table(
        "promptops_captures",
        sa.column("prompt_name"),
        sa.column("prompt_version"),
        sa.column("timestamp"),
        sa.column("latency_ms"),
        sa.column("error_type"),
    )
    statement = (
        sa.select(
            table.c.prompt_version, sa.func.count(), sa.func.avg(table.c.latency_ms), sa.func.count(table.c.error_type)
        )
        .where(table.c.prompt_name == "summarize", table.c.timestamp >= SINCE)
        .group_by(table.c.prompt_version)
    )
    with store.engine.connect() as connection:
        return len(connection.execute(statement).all())


CONTENDERS: list[tuple[str, Callable[[CaptureStore], int], Callable[[CaptureStore], int] | None]] = [
    ("captures list (the 50 most recent)", list_now, list_before),
    ("datasets create --since 7d --sample 500", sample_now, sample_before),
    ("datasets create --function F --since 7d --dedupe --limit 500", dedupe_now, dedupe_before),
    ("aggregate per prompt version, last 7 days", aggregate, None),
]


def timed(run: Callable[[CaptureStore], int], store: CaptureStore) -> float:
    started = time.perf_counter()
    run(store)
    return time.perf_counter() - started


def peak_mb(run: Callable[[CaptureStore], int], store: CaptureStore) -> float:
    tracemalloc.start()
    try:
        run(store)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


@contextlib.contextmanager
def opened(kind: str, directory: Path) -> Iterator[CaptureStore]:
    if kind == "sqlite":
        store = CaptureStore.open(f"sqlite:///{directory / 'captures.db'}")
        try:
            yield store
        finally:
            store.close()
        return
    name = f"promptops_bench_{uuid.uuid4().hex[:10]}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc"]
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True)
    try:
        store = CaptureStore.open(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        try:
            yield store
        finally:
            store.close()
    finally:
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    print(
        f"{options.records:,} records; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; python {sys.version.split()[0]}"
    )
    for kind in options.stores.split(","):
        with tempfile.TemporaryDirectory() as directory, opened(kind, Path(directory)) as store:
            seconds = fill(store, options.records)
            if kind == "postgresql":
                with store.engine.begin() as connection:
                    connection.execute(sa.text("ANALYZE promptops_captures"))
            print(f"\n{kind}: filled in {seconds:.1f} s ({options.records / seconds:,.0f} records/s)")
            times: dict[str, list[float]] = collections.defaultdict(list)
            for _ in range(options.repeats):
                for label, now, before in CONTENDERS:
                    times[f"{label}|now"].append(timed(now, store))
                    if before is not None:
                        times[f"{label}|before"].append(timed(before, store))
            print(f"{'selection':<62} {'now s':>8} {'before s':>9} {'now MB':>8} {'before MB':>10}")
            for label, now, before in CONTENDERS:
                now_s = statistics.median(times[f"{label}|now"])
                before_s = statistics.median(times[f"{label}|before"]) if before is not None else None
                now_mb = peak_mb(now, store)
                before_mb = peak_mb(before, store) if before is not None else None
                print(
                    f"{label:<62} {now_s:>8.3f} {before_s if before_s is not None else float('nan'):>9.3f}"
                    f" {now_mb:>8.1f} {before_mb if before_mb is not None else float('nan'):>10.1f}"
                )


if __name__ == "__main__":
    main()
