"""Datasets in a real PostgreSQL capture store: round trips, immutability under a race, upgrade, all-or-nothing."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from promptops import datasets
from promptops.capture import CaptureStore
from promptops.capture import _store as capture_store
from promptops.datasets import Dataset, DatasetError, DatasetExistsError, DatasetNotFoundError, DatasetRecord
from tests.support import write_as_older_schema
from tests.unit.test_datasets import AWKWARD, awkward_dataset, make_capture

from .capture_support import pg_url, postgres_database, psql


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_database() as name:
        yield name


@pytest.fixture
def url(database: str) -> str:
    return pg_url(database)


def test_round_trip_from_captures(url: str) -> None:
    captures = [
        make_capture(age=datetime.timedelta(minutes=10 - i), inputs={"text": value}, output=value)
        for i, value in enumerate(AWKWARD)
    ]
    store = CaptureStore.open(url)
    try:
        store.write(captures)
    finally:
        store.close()
    dataset = datasets.from_captures(store=url, dedupe=True)
    assert [r.id for r in dataset.records] == [c.id for c in captures]
    saved = datasets.create("pg-captures", dataset, store=url)
    loaded = datasets.load("pg-captures", store=url)
    assert loaded.records == dataset.records and loaded.fingerprint == saved.fingerprint
    assert loaded.created_at == saved.created_at and loaded.filters == {"store": url, "dedupe": True}
    assert loaded.records[9].output == AWKWARD[9]  # NUL and control characters survive PostgreSQL text


def test_round_trip_awkward_values_list_and_delete(url: str) -> None:
    dataset = awkward_dataset()
    datasets.create("awkward", dataset, store=url)
    datasets.create("small", Dataset("x", [DatasetRecord("1", {"q": 1})]), store=url)
    assert datasets.load("awkward", store=url).records == dataset.records
    assert [info.name for info in datasets.list_datasets(store=url)] == ["awkward", "small"]
    assert datasets.delete("awkward", store=url) == len(AWKWARD)
    with pytest.raises(DatasetNotFoundError, match=r"no dataset named 'awkward'"):
        datasets.load("awkward", store=url)
    assert [info.name for info in datasets.list_datasets(store=url)] == ["small"]


def test_two_writers_race_for_one_name(url: str) -> None:
    CaptureStore.open(url).close()
    barrier = threading.Barrier(4)
    outcomes: list[object] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        dataset = Dataset("x", [DatasetRecord(str(i), {"writer": n, "i": i}) for i in range(200)])
        barrier.wait()
        try:
            result: object = datasets.create("contested", dataset, store=url)
        except DatasetExistsError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if isinstance(o, Dataset)]
    losers = [o for o in outcomes if isinstance(o, DatasetExistsError)]
    assert len(winners) == 1 and len(losers) == 3
    assert all(loser.suggestion == "contested-2" for loser in losers)
    assert datasets.load("contested", store=url).records == winners[0].records  # nothing mixed in


def test_a_failed_write_leaves_nothing(url: str, database: str) -> None:
    CaptureStore.open(url).close()
    psql(
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$ "
        "LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON promptops_dataset_records FOR EACH ROW "
        "WHEN (NEW.position = 5) EXECUTE FUNCTION refuse()",
        database=database,
    )
    with pytest.raises(DatasetError, match=r"cannot write dataset 'half' .*disk says no; nothing was written"):
        datasets.create("half", awkward_dataset(), store=url)
    assert psql("SELECT count(*) FROM promptops_datasets", database=database) == "0"
    assert psql("SELECT count(*) FROM promptops_dataset_records", database=database) == "0"


def test_a_version_1_store_is_upgraded_in_place(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        capture_store._migrate_v1(connection)  # pyright: ignore[reportPrivateUsage]
        capture_store.schema_table.create(connection)
        connection.execute(capture_store.schema_table.insert().values(version=1))
    record = make_capture(age=datetime.timedelta(minutes=1))
    write_as_older_schema(engine, [record])  # as version 1 wrote it, without migrating
    assert not sa.inspect(engine).has_table("promptops_datasets")
    engine.dispose()
    store = CaptureStore.open(url)
    try:
        assert store.schema_version() == capture_store.SCHEMA_VERSION and list(store.query()) == [record]
    finally:
        store.close()
    saved = datasets.create("upgraded", datasets.from_captures(store=url), store=url)
    assert datasets.load("upgraded", store=url).records == saved.records
