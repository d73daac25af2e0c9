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
