"""A CPU-busy process: the writer must not starve beside a thread that never lets go of the GIL (issue 10, 1).

The loss came from one GIL hand-off per row: SQLite's driver releases the GIL around every statement it runs,
so an `executemany` of 2,048 rows gave the GIL away 2,048 times, and beside a CPU-bound thread each re-take
waited out a switch interval (13 s for one batch; 23-35% of 200,000 captures dropped as `queue_full`). How
long a hand-off costs depends on the machine's load, so these tests count the hand-offs themselves (the
statements the driver runs per batch); `benchmarks/bench_capture.py` measures the write rate with and without a
busy thread and the drops over 200,000 tracked calls.
"""

from __future__ import annotations

import datetime
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import promptops
from promptops.capture import CallCapture, CaptureStore, _writer
from promptops.prompts import Prompt

from ..integration.capture_support import pg_url, postgres_database
from .support import make_records

PROMPT = Prompt(name="summarize", version=2, template="{{text}}", alias="production", source="cache")


def test_a_full_batch_reaches_sqlite_in_a_few_statements(tmp_path: Path) -> None:
    store = CaptureStore.open(f"sqlite:///{tmp_path / 'captures.db'}")
    statements: list[str] = []

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)  # SQLite calls it each time a statement runs

    event.listen(store.engine, "checkout", checkout)
    try:
        store.write(make_records(2048))
        event.remove(store.engine, "checkout", checkout)
        writing = list(statements)
        assert store.count() == 2048
    finally:
        store.close()
    inserts = [statement for statement in writing if statement.lstrip().upper().startswith("INSERT")]
    # 2,048 records x 21 columns: one statement, two where SQLite takes at most 32,766 parameters (it was 2,048).
    assert 1 <= len(inserts) <= 2, f"{len(inserts)} INSERT statements for one batch"
    assert len(writing) <= 4  # BEGIN IMMEDIATE, the INSERTs, COMMIT


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("ending", ["flush", "shutdown"])
def test_the_next_batch_is_built_while_one_is_written_and_counts_until_written(tmp_path: Path, ending: str) -> None:
    """Rows of the next batch are built while the store takes the current one (SQLite runs its INSERT without the
    GIL: beside a busy thread the two overlap instead of taking turns). Those records still count against the
    queue's bound, `flush()` waits for them, and a shutdown that gives up on a stuck store counts them as lost."""
    url = f"sqlite:///{tmp_path / 'captures.db'}"
    promptops.configure(capture=url, trace_exporter="none")
    cc = CallCapture.named("faults:ahead")
    cc.submit_inputs(PROMPT, {"i": -1}, output="o", started_ns=0, ended_ns=1)
    assert promptops.flush(timeout=60)  # the store exists and is migrated
    writer = _writer._writers[url]  # pyright: ignore[reportPrivateUsage]
    ahead = writer._ahead  # pyright: ignore[reportPrivateUsage]
    before = promptops.stats()
    blocker = sqlite3.connect(tmp_path / "captures.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer's INSERT now waits for this lock (busy timeout: 30 s)
        total = 2 * _writer.MAX_BATCH
        with writer._lock:  # pyright: ignore[reportPrivateUsage]  # the writer takes nothing until all are queued
            for i in range(total):
                cc.submit_inputs(PROMPT, {"i": i}, output="o", started_ns=0, ended_ns=1)
        # The first batch waits on the lock; the second one's rows are built meanwhile, and still counted.
        assert _wait_for(lambda: ahead.held > 0 and ahead._done.is_set())  # pyright: ignore[reportPrivateUsage]
        assert writer.queued == total
        assert promptops.stats()["captures_written"] == before["captures_written"]
        if ending == "shutdown":
            assert not promptops.shutdown(timeout=0.5)
            after = promptops.stats()
            assert after["captures_dropped_shutdown"] - before["captures_dropped_shutdown"] == total
            blocker.execute("COMMIT")
            assert _wait_for(lambda: not writer._thread.is_alive())  # pyright: ignore[reportPrivateUsage]
            assert promptops.stats()["captures_written"] == before["captures_written"]  # counted once, as lost
            store = writer._store  # pyright: ignore[reportPrivateUsage]  # the abandoned writer's connections
            if store is not None:
                store.close()
            return
        blocker.execute("COMMIT")
        assert promptops.flush(timeout=60)
        after = promptops.stats()
        assert after["captures_written"] - before["captures_written"] == total
        assert after["captures_dropped"] == before["captures_dropped"]
    finally:
        blocker.close()
    store = CaptureStore.open(url)
    try:
        assert [record.inputs["i"] for record in store.query(function="faults:ahead")] == list(range(-1, total))
    finally:
        store.close()


@pytest.fixture
def pg_store() -> Iterator[str]:
    with postgres_database() as database:
        yield pg_url(database)
        promptops.shutdown(timeout=10)


def test_postgresql_copy_keeps_every_value_as_sqlite_does(pg_store: str, tmp_path: Path) -> None:
    """The PostgreSQL batch goes through COPY: the values read back equal what SQLite's INSERT keeps."""
    records = make_records(3, text="naïve — \U0001f600 \\ tab\tnewline\n quote'\" NUL\x00")
    records[1].output = None
    records[1].error_type, records[1].error_message = "ValueError", "bad\x00 input"
    records[2].output = {"list": [1, 2.5, None, True], "nested": {"k": "v\\N"}}
    records[2].prompt_version, records[2].first_item_ms, records[2].tags = None, 12.25, {"team": "a\tb"}
    read: dict[str, list[Any]] = {}
    for url in (pg_store, f"sqlite:///{tmp_path / 'captures.db'}"):
        store = CaptureStore.open(url)
        try:
            assert store.write(records) == 3
            read[url] = list(store.query())
        finally:
            store.close()
    postgres, sqlite = read.values()
    assert postgres == sqlite
    assert [record.id for record in postgres] == [record.id for record in records]
    assert postgres[0].inputs == {"text": records[0].inputs["text"]}  # the NUL survives in JSON
    assert postgres[0].timestamp == records[0].timestamp.replace(microsecond=postgres[0].timestamp.microsecond)
    assert postgres[0].timestamp.tzinfo is not None
    assert abs(postgres[0].timestamp - records[0].timestamp) < datetime.timedelta(microseconds=1)


def test_postgresql_rejecting_one_record_keeps_the_rest_of_its_batch(pg_store: str) -> None:
    """A value the store refuses (a function name over its 512 characters) costs that record only."""
    promptops.configure(capture=pg_store, trace_exporter="none")
    good = CallCapture.named("faults:good")
    bad = CallCapture.named("faults:" + "x" * 600)
    before = promptops.stats()
    for i in range(300):
        (bad if i == 150 else good).submit_inputs(PROMPT, {"i": i}, output="o", started_ns=0, ended_ns=1)
    assert promptops.flush(timeout=60)
    after = promptops.stats()
    assert after["captures_written"] - before["captures_written"] == 299
    assert after["captures_dropped_store_error"] - before["captures_dropped_store_error"] == 1
    store = CaptureStore.open(pg_store)
    try:
        assert store.count(function="faults:good") == 299
    finally:
        store.close()


def test_a_batch_written_beside_a_cpu_bound_thread_arrives_whole(pg_store: str, tmp_path: Path) -> None:
    """Both stores, 5,000 tracked-call records with a thread spinning on the GIL meanwhile: all written."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    busy = threading.Thread(target=spin, daemon=True)
    busy.start()
    try:
        for url in (f"sqlite:///{tmp_path / 'captures.db'}", pg_store):
            promptops.configure(capture=url, trace_exporter="none")
            cc = CallCapture.named("faults:busy")
            before = promptops.stats()
            for i in range(5000):
                cc.submit_inputs(PROMPT, {"i": i}, output="o", started_ns=0, ended_ns=1)
            assert promptops.flush(timeout=120)
            after = promptops.stats()
            assert after["captures_dropped"] == before["captures_dropped"]
            assert after["captures_written"] - before["captures_written"] == 5000
            promptops.shutdown(timeout=10)
    finally:
        stop.set()
        busy.join()


def test_a_batch_retried_after_its_copy_reply_was_lost_counts_as_written(pg_store: str) -> None:
    # Issue 10: a COPY that committed, then lost its reply with the connection, is retried whole by the writer; its
    # records are stored, so the retry must succeed (they used to come back as duplicate-id errors, each counted
    # as a store_error, while in the store).
    store = CaptureStore.open(pg_store)
    try:
        records = make_records(100)
        assert store.write(records[:60]) == 60  # the COPY whose reply was lost
        assert store.write(records) == 100  # the writer's retry of the whole batch
        assert store.count() == 100
        assert {record.id for record in store.query(limit=1000)} == {record.id for record in records}
    finally:
        store.close()
