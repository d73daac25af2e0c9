"""Retention on real SQLite and PostgreSQL stores (issue 15): `prune()` and the `capture_retention` setting.

Each test checks the exact ids left: old calls go, recent ones stay, and a call a saved dataset was made from
stays whatever its age, while the dataset itself is untouched.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator

import pytest

import promptops
from promptops import datasets
from promptops.capture import CallCapture, CaptureRecord, CaptureStore
from promptops.capture._retention import prune, prune_batch
from promptops.prompts import Prompt
from tests.unit.test_datasets import make_capture

DAY = datetime.timedelta(days=1)
PROMPT = Prompt(name="summarize", version=2, template="{{text}}", alias="production", source="cache")


def summarize(text: str, *, prompt: Prompt) -> str:
    return text


@pytest.fixture
def store(store_url: str) -> Iterator[CaptureStore]:
    opened = CaptureStore.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


def old_and_new(store: CaptureStore, old: int, new: int) -> tuple[list[CaptureRecord], list[CaptureRecord]]:
    """`old` calls 31 to 60 days old and `new` calls a day or less old, written to `store`."""
    olds = [make_capture(age=31 * DAY + i * datetime.timedelta(minutes=1), inputs={"i": i}) for i in range(old)]
    news = [make_capture(age=DAY - i * datetime.timedelta(minutes=1), inputs={"i": -i}) for i in range(new)]
    store.write([*olds, *news])
    return olds, news


def ids(store: CaptureStore) -> set[str]:
    return {record.id for record in store.query()}


def keep_in_a_dataset(store: CaptureStore, name: str, captures: list[CaptureRecord]) -> datasets.Dataset:
    chosen = {capture.id for capture in captures}
    made = datasets.from_captures(store=store)
    made = datasets.Dataset(name, tuple(record for record in made.records if record.id in chosen))
    assert len(made.records) == len(captures)
    return datasets.create(name, made, store=store)


def test_prune_deletes_only_old_calls_no_dataset_was_made_from(store: CaptureStore) -> None:
    olds, news = old_and_new(store, old=25, new=5)
    saved = keep_in_a_dataset(store, "golden", [olds[0], olds[7], news[1]])
    result = prune(store, 30 * DAY, batch=4)  # several batches, the last one short
    assert (result.deleted, result.kept) == (23, 2)
    assert ids(store) == {olds[0].id, olds[7].id} | {capture.id for capture in news}
    assert datasets.load("golden", store=store).records == saved.records
    # Nothing old is left: a second prune deletes nothing, and says what the dataset keeps.
    again = prune(store, 30 * DAY)
    assert (again.deleted, again.kept) == (0, 2)


def test_the_cutoff_is_by_start_time_and_a_dry_run_deletes_nothing(store: CaptureStore) -> None:
    _, news = old_and_new(store, old=3, new=3)
    before = ids(store)
    assert prune(store, 30 * DAY, dry_run=True).deleted == 3
    assert ids(store) == before
    # 36 hours: the three new calls (a day old or less) stay; an instant works as well as an age.
    cutoff = datetime.datetime.now(datetime.timezone.utc) - 36 * datetime.timedelta(hours=1)
    assert prune(store, cutoff).deleted == 3
    assert ids(store) == {capture.id for capture in news}
    assert prune_batch(store, datetime.timedelta(seconds=0)) == 3  # 0s: every call (none is in a dataset)
    assert ids(store) == set()


def test_prune_while_a_writer_writes(store: CaptureStore) -> None:
    olds, _ = old_and_new(store, old=3000, new=0)
    kept = keep_in_a_dataset(store, "kept", olds[100:110])
    written: list[CaptureRecord] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                batch = [
                    make_capture(age=datetime.timedelta(seconds=1), inputs={"n": len(written) + i}) for i in range(50)
                ]
                store.write(batch)
                written.extend(batch)
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = prune(store, 30 * DAY, batch=200)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert failures == [] and len(written) >= 50
    assert (result.deleted, result.kept) == (2990, 10)
    assert ids(store) == {capture.id for capture in olds[100:110]} | {capture.id for capture in written}
    assert datasets.load("kept", store=store).records == kept.records


def test_the_writer_applies_capture_retention_in_the_background(store_url: str, store: CaptureStore) -> None:
    olds, news = old_and_new(store, old=5000, new=2)
    keep_in_a_dataset(store, "from-old-calls", olds[:3])
    promptops.configure(capture=store_url, capture_retention="30d", trace_exporter="none")
    dropped_before = promptops.stats()["captures_dropped"]  # the counters are per process, across tests
    capture = CallCapture(summarize)
    # Tracked calls keep coming while the writer deletes (3 batches): every one of them is written.
    for i in range(300):
        capture.submit(PROMPT, (f"call {i}",), {"prompt": PROMPT}, bound=False, output="o", started_ns=0, ended_ns=1)
        if i % 50 == 0:
            time.sleep(0.05)
    assert promptops.flush(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(ids(store)) != 3 + 2 + 300:
        time.sleep(0.1)
    left = list(store.query())
    assert {record.id for record in left} >= {capture.id for capture in [*olds[:3], *news]}
    assert sorted(record.inputs["text"] for record in left if "text" in record.inputs) == sorted(
        f"call {i}" for i in range(300)
    )
    assert len(left) == 3 + 2 + 300
    assert promptops.stats()["captures_dropped"] == dropped_before


def test_without_capture_retention_the_writer_deletes_nothing(store_url: str, store: CaptureStore) -> None:
    old_and_new(store, old=3, new=0)
    promptops.configure(capture=store_url, trace_exporter="none")
    capture = CallCapture(summarize)
    capture.submit(PROMPT, ("x",), {"prompt": PROMPT}, bound=False, output="o", started_ns=0, ended_ns=1)
    assert promptops.flush(timeout=30)
    time.sleep(0.5)  # the writer has been idle: it would have pruned by now
    assert len(ids(store)) == 4


def test_feedback_on_pruned_calls_is_pruned_with_them(store_url: str, store: CaptureStore) -> None:
    from promptops.rollout import feedback, feedback_values, flush_feedback

    olds = [make_capture(age=31 * DAY + i * datetime.timedelta(minutes=1), inputs={"i": i}) for i in range(6)]
    news = [make_capture(age=DAY - i * datetime.timedelta(minutes=1), inputs={"i": -i}) for i in range(2)]
    for index, capture in enumerate([*olds, *news]):
        capture.trace_id = f"{index + 1:032x}"
    olds[5].trace_id = olds[4].trace_id  # a tracked call inside another: one trace, two records
    store.write([*olds, *news])
    keep_in_a_dataset(store, "golden", [olds[5]])  # keeps olds[5], so its trace's feedback stays
    promptops.configure(capture=store_url, trace_exporter="none")
    targets = {
        olds[0].id: "gone",  # by capture id
        olds[1].trace_id: "gone",  # by trace id
        olds[2].id: "gone",
        olds[4].trace_id: "kept",  # its other record is kept by the dataset
        olds[5].id: "kept",
        news[0].trace_id: "kept",
        news[1].id: "kept",
    }
    for target in targets:
        assert target is not None
        feedback(target, "thumbs", 1)
    assert flush_feedback(60)

    result = prune(store, 30 * DAY, batch=2)
    assert (result.deleted, result.kept) == (5, 1)
    kept = {target for target, fate in targets.items() if fate == "kept"}
    assert set(feedback_values(store)["thumbs"]) == kept


def test_prune_finds_referenced_calls_through_the_index_with_an_anti_join(store: CaptureStore) -> None:
    """The plan at any size: `NOT EXISTS` on the indexed `promptops_dataset_records.id` (schema version 4)."""
    import sqlalchemy as sa

    from promptops.capture._retention import _old  # pyright: ignore[reportPrivateUsage]
    from promptops.capture._store import captures_table

    olds, _ = old_and_new(store, old=3, new=1)
    keep_in_a_dataset(store, "golden", olds[:1])
    statement = sa.select(captures_table.c.id).where(
        _old(datetime.datetime.now(datetime.UTC) - 30 * DAY, referenced=False)
    )
    compiled = statement.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as connection:
        if store.dialect == "sqlite":
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "SEARCH promptops_dataset_records USING" in plan and "promptops_dataset_records_id (id=?)" in plan
        else:
            plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
            assert "Anti Join" in plan and "SubPlan" not in plan, plan


def test_a_store_without_the_dataset_records_index_gains_it(store_url: str) -> None:
    import sqlalchemy as sa

    from promptops.capture import _store

    opened = CaptureStore.open(store_url)
    with opened.transaction() as connection:  # as schema version 3 left it
        connection.exec_driver_sql("DROP INDEX promptops_dataset_records_id")
        connection.execute(_store.schema_table.update().values(version=3))
    opened.close()
    engine = sa.create_engine(store_url)
    assert "promptops_dataset_records_id" not in {
        i["name"] for i in sa.inspect(engine).get_indexes("promptops_dataset_records")
    }
    engine.dispose()
    reopened = CaptureStore.open(store_url)
    try:
        assert reopened.schema_version() == _store.SCHEMA_VERSION == 4
        indexes = {index["name"] for index in sa.inspect(reopened.engine).get_indexes("promptops_dataset_records")}
        assert "promptops_dataset_records_id" in indexes
    finally:
        reopened.close()
