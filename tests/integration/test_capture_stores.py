"""Capture into real SQLite and PostgreSQL stores: nothing lost under threads, at exit, across fork."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import promptops
from promptops.capture import CallCapture, CaptureStore, input_hash
from promptops.capture._store import SCHEMA_VERSION, schema_table
from promptops.prompts import Prompt

from .capture_support import count, pg_url, postgres_database, psql
from .conftest import child_env

PROMPT = Prompt(name="summarize", version=2, template="{{text}}", alias="production", source="cache")
ROOT = Path(__file__).resolve().parents[2]


def summarize(text: str, *, prompt: Prompt) -> str:
    return text


def hammer(cc: CallCapture, threads: int, calls: int, pause: float = 0.0) -> list[BaseException]:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(calls):
                start = time.perf_counter_ns()
                if pause:
                    time.sleep(pause)  # a model call takes far longer than this
                cc.submit(
                    PROMPT,
                    (f"thread {worker} call {i}",),
                    {"prompt": PROMPT},
                    bound=False,
                    output=f"summary {worker}/{i}",
                    started_ns=start,
                    ended_ns=time.perf_counter_ns(),
                )
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


def test_8_threads_x_5000_calls_default_settings_none_lost(store_url: str) -> None:
    promptops.configure(capture=store_url, trace_exporter="none")
    before = promptops.stats()
    assert hammer(CallCapture(summarize), threads=8, calls=5000, pause=0.0002) == []
    assert promptops.flush(timeout=120)
    after = promptops.stats()
    assert after["captures_dropped"] == before["captures_dropped"]
    assert after["captures_written"] - before["captures_written"] == 40_000
    assert count(store_url) == 40_000


def test_8_threads_x_5000_calls_back_to_back_none_lost(store_url: str) -> None:
    # Back to back, 8 threads submit ~20x faster than any store writes: the default queue holds the burst.
    promptops.configure(capture=store_url, trace_exporter="none")
    before = promptops.stats()
    assert hammer(CallCapture(summarize), threads=8, calls=5000) == []
    assert promptops.flush(timeout=120)
    after = promptops.stats()
    assert after["captures_dropped"] == before["captures_dropped"]
    assert count(store_url) == 40_000
    store = CaptureStore.open(store_url)
    texts = {record.inputs["text"] for record in store.query()}
    store.close()
    assert texts == {f"thread {w} call {i}" for w in range(8) for i in range(5000)}


def styled(text: str, style: str = "short", *, prompt: Prompt) -> str:
    return text


def test_what_the_writer_stores_reads_back_as_the_record_says(store_url: str) -> None:
    """The writer builds rows straight from the queue (issue 10): hash, timestamp and JSON agree with the record."""
    promptops.configure(capture=store_url, trace_exporter="none")
    start = time.perf_counter_ns()
    calls: list[tuple[tuple[object, ...], dict[str, object], object, BaseException | None]] = [
        (("hello",), {"style": "long"}, "hi", None),  # deferred, keys out of order ("text" > "style")
        (("one",), {}, ["a", {"z": 1, "a": 2}], None),  # one key; a list output, converted now
        ((["x", {"zeta": 1, "alpha": [2, {"y": None, "b": 1.5}]}],), {}, "ok", None),  # converted now: nested, unsorted
        ((object(),), {}, None, None),  # not plain: the general conversion
        (("bad",), {}, None, ValueError("no\x00pe")),
    ]
    cc = CallCapture(styled)
    for args, kwargs, output, error in calls:
        cc.submit(
            PROMPT, args, {**kwargs, "prompt": PROMPT}, bound=False, output=output, error=error,
            started_ns=start, ended_ns=start + 2_500_000,
        )  # fmt: skip
    assert promptops.flush(timeout=60)
    store = CaptureStore.open(store_url)
    try:
        got = list(store.query())
    finally:
        store.close()
    assert len(got) == len(calls)
    for record in got:
        assert record.input_hash == input_hash(record.inputs)
        # The id holds the call's start in ms; the timestamp is the same instant (the call took 2.5 ms).
        since_epoch = record.timestamp - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        assert int(record.id[:8] + record.id[9:13], 16) == since_epoch // datetime.timedelta(milliseconds=1)
        assert record.latency_ms == 2.5
    assert [record.inputs for record in got[:3]] == [
        {"text": "hello", "style": "long"},
        {"text": "one"},
        {"text": ["x", {"zeta": 1, "alpha": [2, {"y": None, "b": 1.5}]}]},
    ]
    assert list(got[0].inputs) == ["text", "style"]  # stored in the call's order
    assert got[1].output == ["a", {"z": 1, "a": 2}] and got[3].output is None
    assert got[3].inputs["text"].startswith("<object object") and not got[3].replayable
    assert (got[4].error_type, got[4].error_message, got[4].output) == ("ValueError", "no\ufffdpe", None)


def test_a_process_exiting_without_flush_delivers_every_record(store_url: str, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import time, promptops
        from promptops.capture import CallCapture
        from promptops.prompts import Prompt
        promptops.configure(capture={store_url!r}, trace_exporter="none")
        prompt = Prompt(name="summarize", version=2, template="x")
        def summarize(text, *, prompt): ...
        cc = CallCapture(summarize)
        for i in range(3000):
            cc.submit(prompt, (str(i),), {{"prompt": prompt}}, bound=False, output="o", started_ns=0, ended_ns=1)
        # no flush, no shutdown: the atexit hook writes what is queued
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert count(store_url) == 3000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_captures_its_own_calls(store_url: str) -> None:
    promptops.configure(capture=store_url, trace_exporter="none")
    parent = CallCapture(summarize)

    def child_capture(text: str, *, prompt: Prompt) -> str:
        return text

    for i in range(300):  # queued, maybe partly written, when the fork happens
        parent.submit(PROMPT, (f"before {i}",), {"prompt": PROMPT}, bound=False, output="", started_ns=0, ended_ns=1)
    child_cc = CallCapture(child_capture)
    pid = os.fork()
    if pid == 0:  # the child: capture, flush, leave without running the parent's pytest machinery
        status = 1
        try:
            for i in range(500):
                child_cc.submit(
                    PROMPT, (f"child {i}",), {"prompt": PROMPT}, bound=False, output="", started_ns=0, ended_ns=1
                )
            status = 0 if promptops.flush(timeout=60) else 2
        finally:
            os._exit(status)
    for i in range(200):
        parent.submit(PROMPT, (f"after {i}",), {"prompt": PROMPT}, bound=False, output="", started_ns=0, ended_ns=1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert promptops.flush(timeout=60)
    assert count(store_url, function=child_cc.function) == 500
    assert count(store_url, function=parent.function) == 500  # the child wrote none of the parent's queue


def test_four_processes_opening_a_new_store_at_once_migrate_it_once(store_url: str, tmp_path: Path) -> None:
    # A real barrier (issue 16: a start time 3 s ahead did not make them race on a slow machine): each child
    # imports everything, says it is ready, and opens the store only when the parent releases all of them.
    code = textwrap.dedent(f"""
        import sys
        from promptops.capture import CaptureStore
        print("ready", flush=True)
        sys.stdin.readline()
        store = CaptureStore.open({store_url!r})
        print(store.schema_version(), flush=True)
    """)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=child_env(PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # go: all four at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [str(SCHEMA_VERSION)] * 4
    store = CaptureStore.open(store_url)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(sa.select(schema_table.c.version)).all()
        assert [tuple(row) for row in rows] == [(SCHEMA_VERSION,)]  # one schema row: migrated once, recorded once
        assert store.migrate() == 0
    finally:
        store.close()


def test_a_future_schema_version_is_refused_clearly_by_postgresql() -> None:
    from promptops.capture import CaptureSchemaError

    with postgres_database() as database:
        CaptureStore.open(pg_url(database)).close()
        psql("UPDATE promptops_schema SET version = 7", database=database)
        with pytest.raises(CaptureSchemaError, match=r"has schema version 7, newer than this promptops supports"):
            CaptureStore.open(pg_url(database))


def test_a_version_2_postgresql_store_gains_the_usage_columns_in_place() -> None:
    """Schema version 3 on PostgreSQL: the columns are added to a store with calls in it; COPY writes usage."""
    import datetime

    from tests.support import write_as_older_schema
    from tests.unit.test_capture_usage import version_2_store
    from tests.unit.test_datasets import make_capture

    with postgres_database() as database:
        url = pg_url(database)
        engine = version_2_store(url)
        old = make_capture(age=datetime.timedelta(minutes=2))
        write_as_older_schema(engine, [old])
        engine.dispose()
        columns = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'promptops_captures'"
        assert psql(columns, database=database) == "21"  # a faithful version 2 table
        store = CaptureStore.open(url)
        try:
            assert store.schema_version() == SCHEMA_VERSION == 4
            assert psql(columns, database=database) == "25"
            new = make_capture(age=datetime.timedelta(minutes=1))
            new.input_tokens, new.output_tokens, new.model, new.provider = 7, 3, "m" * 300, "anthropic"
            store.write([new])  # one COPY; a model name longer than its column is cut, not refused
            stored_old, stored_new = store.query()
            assert stored_old == old and stored_old.input_tokens is None
            assert (stored_new.input_tokens, stored_new.output_tokens, stored_new.model, stored_new.provider) == (
                7,
                3,
                "m" * 256,
                "anthropic",
            )
        finally:
            store.close()
