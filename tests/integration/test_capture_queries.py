"""Selections the database makes (issue 15): filters, de-duplication, "the N most recent" and sampling pushed into
SQL, so that `captures list` and `datasets create --sample` read only the records they keep.

Real SQLite and PostgreSQL stores; every selection is checked against the same selection made in Python over
all the records (`reference`), the way these commands made it before.
"""

from __future__ import annotations

import collections
import datetime
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

import promptops
from promptops import datasets
from promptops.capture import CaptureRecord, CaptureStore
from tests.faults.support import make_record

from .capture_support import pg_url, postgres_database

START = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaptureStore]:
    if request.param == "sqlite":
        opened = CaptureStore.open(f"sqlite:///{tmp_path / 'captures.db'}")
        yield opened
        opened.close()
    else:
        with postgres_database() as database:
            opened = CaptureStore.open(pg_url(database))
            yield opened
            opened.close()
            promptops.shutdown(timeout=10)


def make(index: int, text: str, function: str = "app:summarize") -> CaptureRecord:
    at_ns = int((START + datetime.timedelta(minutes=index)).timestamp()) * 10**9
    return make_record(at_ns, function=function, text=text, prompt_version=1 + index % 2, index=index)


def fill(store: CaptureStore) -> list[CaptureRecord]:
    # 300 calls, 40 distinct texts (repeats interleaved), a second function mixed in: dedupe and filters matter.
    records = [make(index, f"text {index % 40}", "app:summarize" if index % 7 else "app:other") for index in range(300)]
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)  # written out of order: the store must order by id, not by insertion
    store.write(shuffled)
    return records


def reference(
    records: list[CaptureRecord],
    *,
    function: str | None,
    since: datetime.datetime | None,
    dedupe: bool,
    limit: int | None,
) -> list[str]:
    """The selection made in Python over every record, as `from_captures` and `captures list` made it before."""
    found = [
        r for r in records if (function is None or r.function == function) and (since is None or r.timestamp >= since)
    ]
    if dedupe:
        seen: set[str] = set()
        found = [r for r in found if not (r.input_hash in seen or seen.add(r.input_hash))]  # type: ignore[func-returns-value]
    kept = list(collections.deque(found, maxlen=limit)) if limit is not None else found
    return [r.id for r in kept]


@pytest.mark.parametrize("dedupe", [False, True])
@pytest.mark.parametrize("limit", [None, 1, 25, 10_000])
@pytest.mark.parametrize(("function", "since"), [(None, None), ("app:summarize", START + datetime.timedelta(hours=2))])
def test_ids_select_what_python_selected(
    store: CaptureStore, dedupe: bool, limit: int | None, function: str | None, since: datetime.datetime | None
) -> None:
    records = fill(store)
    expected = reference(records, function=function, since=since, dedupe=dedupe, limit=limit)
    assert expected  # every combination selects something
    assert store.ids(function=function, since=since, dedupe=dedupe, latest=limit) == expected


def test_fetch_keeps_the_order_given_and_leaves_out_unknown_ids(store: CaptureStore) -> None:
    records = fill(store)
    wanted = [records[250].id, records[3].id, "no-such-id", records[120].id]
    assert [r.id for r in store.fetch(wanted)] == [records[250].id, records[3].id, records[120].id]
    assert store.fetch(wanted)[0] == records[250]  # whole records, decoded as written
    many = [r.id for r in records]
    assert [r.id for r in store.fetch(many)] == many  # more ids than one IN (...) holds


def test_query_latest_reads_only_the_newest(store: CaptureStore) -> None:
    records = fill(store)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        newest = list(store.query(function="app:summarize", latest=5))
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert [r.id for r in newest] == reference(records, function="app:summarize", since=None, dedupe=False, limit=5)
    (select,) = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert "LIMIT" in select.upper() and "DESC" in select.upper()  # the database cuts, not Python


@pytest.mark.parametrize("dedupe", [False, True])
def test_a_sample_is_the_one_python_drew(store: CaptureStore, dedupe: bool) -> None:
    records = fill(store)
    since = START + datetime.timedelta(hours=1)
    ids = reference(records, function="app:summarize", since=since, dedupe=dedupe, limit=None)
    chosen = sorted(random.Random(7).sample(range(len(ids)), 20))
    dataset = datasets.from_captures(
        store=store, function="app:summarize", since=since, sample=20, seed=7, dedupe=dedupe
    )
    assert [record.id for record in dataset.records] == [ids[i] for i in chosen]


def test_the_queries_use_an_index(store: CaptureStore) -> None:
    # The plans of the selections above on a filled table: an index, not a scan of every row. "The newest N"
    # walks the primary key backwards and stops after N; a function's calls come from its (function, timestamp)
    # index.
    fill(store)
    sqlite = store.engine.dialect.name == "sqlite"
    primary = "sqlite_autoindex_promptops_captures_1" if sqlite else "promptops_captures_pkey"
    with store.engine.connect() as connection:
        if not sqlite:
            connection.execute(sa.text("ANALYZE promptops_captures"))
            connection.execute(sa.text("SET enable_seqscan = off"))  # 300 rows: PostgreSQL would scan anyway
        for statement, index in (
            ("SELECT id FROM promptops_captures WHERE timestamp >= :since ORDER BY id DESC LIMIT 50", primary),
            (
                "SELECT id FROM promptops_captures WHERE function = :f AND timestamp >= :since",
                "promptops_captures_function",
            ),
        ):
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = connection.execute(sa.text(explain + statement), {"since": START, "f": "app:x"})
            plan = " ".join(str(row[-1]) for row in rows)
            assert index in plan, plan
