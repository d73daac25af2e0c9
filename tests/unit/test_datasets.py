"""`promptops.datasets`: records, datasets from captures, immutable storage in a real SQLite capture store."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import promptops
from promptops import datasets
from promptops.capture import CaptureRecord, CaptureStore, input_hash, uuid7
from promptops.capture import _store as capture_store
from promptops.datasets import (
    Dataset,
    DatasetError,
    DatasetExistsError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetRecord,
)
from promptops.datasets._model import free_name
from tests.support import write_as_older_schema

NOW = datetime.datetime.now(datetime.timezone.utc)

# Values JSON can hold that are easy to get wrong on the way through a database or a file.
AWKWARD: list[Any] = [
    "naïve café — 東京 🚀 \u202eRTL\u202c",
    {"nested": {"deeper": [1, 2.5, None, True, False, {"k": "v"}], "empty": {}, "list": []}},
    None,
    0,
    -0.0,
    2**70,
    -1.5e-310,
    1.7976931348623157e308,
    "",
    'line\nbreak\ttab \\ backslash "quote" \x00 nul \x07 bell',
    [],
    {},
    ["mixed", 1, {"a": [None]}],
]


def make_capture(
    *,
    age: datetime.timedelta,
    function: str = "app.llm:summarize",
    prompt: str | None = "summarize",
    version: int | None = 1,
    inputs: dict[str, Any] | None = None,
    output: Any = "a summary",
    error: tuple[str, str] | None = None,
    replayable: bool = True,
) -> CaptureRecord:
    timestamp = NOW - age
    inputs = {"text": "hello world"} if inputs is None else inputs
    return CaptureRecord(
        id=uuid7(int(timestamp.timestamp() * 1e9)),
        timestamp=timestamp,
        function=function,
        prompt_name=prompt,
        prompt_version=version,
        prompt_alias="production" if prompt else None,
        prompt_source="registry" if prompt else None,
        inputs=inputs,
        replayable=replayable,
        replay_reason=None if replayable else "argument 'doc' is a Doc: stored as its repr",
        output=None if error else output,
        error_type=error[0] if error else None,
        error_message=error[1] if error else None,
        latency_ms=12.5,
        first_item_ms=None,
        trace_id="ab" * 16,
        span_id="cd" * 8,
        tags={"team": "search"},
        app_version="1.2.3",
        input_hash=input_hash(inputs),
    )


def write(url: str, records: list[CaptureRecord]) -> None:
    store = CaptureStore.open(url)
    try:
        assert store.write(records) == len(records)
    finally:
        store.close()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'captures.db'}"


@pytest.fixture
def captured(url: str) -> list[CaptureRecord]:
    """Six captures, oldest first: ages 10d, 2d, 5h, 20m, 5m, 1m; the last repeats the first one's inputs."""
    records = [
        make_capture(age=datetime.timedelta(days=10), inputs={"text": "very old"}),
        make_capture(age=datetime.timedelta(days=2), version=2, inputs={"text": "two days"}),
        make_capture(
            age=datetime.timedelta(hours=5),
            function="app.llm:classify",
            prompt="classify",
            inputs={"ticket": {"id": 7}},
            output={"label": "billing"},
        ),
        make_capture(age=datetime.timedelta(minutes=20), error=("TimeoutError", "model timed out")),
        make_capture(age=datetime.timedelta(minutes=5), inputs={"text": "<Doc>"}, replayable=False),
        make_capture(age=datetime.timedelta(minutes=1), inputs={"text": "very old"}, output="again"),
    ]
    write(url, records)
    return records


def ids(dataset: Dataset) -> list[str]:
    return [record.id for record in dataset.records]


# ------------------------------------------------------------------------------------------------ the model


def test_record_properties() -> None:
    plain = DatasetRecord("1", {"x": 1})
    assert (plain.replayable, plain.replay_reason, plain.latency_ms, plain.trace_id) == (True, None, None, None)
    assert (plain.prompt_version, plain.error, plain.output, plain.expected, plain.metadata) == (
        None,
        None,
        None,
        None,
        {},
    )
    record = DatasetRecord(
        "2",
        {"x": 1},
        metadata={
            "replayable": False,
            "replay_reason": "a repr",
            "latency_ms": 3,
            "trace_id": "ab" * 16,
            "prompt_version": 4,
            "error_type": "ValueError",
            "error_message": "bad value",
        },
    )
    assert (record.replayable, record.replay_reason, record.latency_ms, record.prompt_version) == (
        False,
        "a repr",
        3.0,
        4,
    )
    assert record.error == "ValueError: bad value" and record.trace_id == "ab" * 16
    assert DatasetRecord("3", {}, metadata={"error_type": "KeyError"}).error == "KeyError"
    # Wrong types in metadata (a hand-written file) are not trusted.
    odd = DatasetRecord("4", {}, metadata={"prompt_version": True, "latency_ms": "3", "error_type": 7})
    assert (odd.prompt_version, odd.latency_ms, odd.error) == (None, None, None)
    assert record.to_dict() == {
        "id": "2",
        "inputs": {"x": 1},
        "output": None,
        "expected": None,
        "metadata": record.metadata,
    }


def test_fingerprint_identifies_content_only() -> None:
    records = [DatasetRecord(str(i), {"v": value}, output=value) for i, value in enumerate(AWKWARD)]
    first = Dataset("a", records)
    assert isinstance(first.records, tuple) and len(first) == len(AWKWARD) and list(first) == records
    same = Dataset("b", tuple(records), source="x", filters={"k": 1}, created_at=NOW - datetime.timedelta(days=3))
    assert same.fingerprint == first.fingerprint and len(first.fingerprint) == 64
    assert Dataset("a", records[::-1]).fingerprint != first.fingerprint  # order matters
    changed = [*records[:-1], dataclasses.replace(records[-1], expected="x")]
    assert Dataset("a", changed).fingerprint != first.fingerprint
    assert Dataset("a", records, fingerprint=first.fingerprint).fingerprint == first.fingerprint
    with pytest.raises(DatasetError, match=r"do not match its fingerprint 000000000000"):
        Dataset("a", records, fingerprint="0" * 64)
    assert first.info == datasets.DatasetInfo("a", "", first.created_at, len(records), first.fingerprint, {})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (DatasetRecord("r", {"when": datetime.date(2026, 1, 1)}), r"record 'r': inputs\.when is a date, not JSON data"),
        (DatasetRecord("r", {"x": 1}, output=float("nan")), r"record 'r': output is nan, which JSON cannot hold"),
        (
            DatasetRecord("r", {"x": {1: "a"}}),
            r"record 'r': inputs\.x has the key 1 \(int\); JSON object keys are text",
        ),
        (DatasetRecord("r", {"x": [1, {2}]}), r"inputs\.x\[1\] is a set, not JSON data"),
        (DatasetRecord("r", ["not", "a", "dict"]), r"record 'r': inputs is a list; it must be an object"),  # type: ignore[arg-type]
        (DatasetRecord("r", {}, metadata=[]), r"record 'r': metadata is a list"),  # type: ignore[arg-type]
        (DatasetRecord("", {}), r"record id '' is not usable"),
        (DatasetRecord("a\x00b", {}), r"record id 'a\\x00b' is not usable"),
        (DatasetRecord("r", {"x": "lone \ud800 surrogate"}), r"record 'r' holds text that is not valid Unicode"),
    ],
)
def test_records_must_be_json_data(record: DatasetRecord, message: str) -> None:
    with pytest.raises(DatasetFormatError, match=message):
        Dataset("d", [record])


def test_ids_are_unique_and_records_are_records() -> None:
    with pytest.raises(DatasetFormatError, match=r"two records have the id 'a'"):
        Dataset("d", [DatasetRecord("a", {}), DatasetRecord("b", {}), DatasetRecord("a", {})])
    with pytest.raises(DatasetFormatError, match=r"a dataset holds DatasetRecord values, not dict"):
        Dataset("d", [{"id": "a", "inputs": {}}])  # type: ignore[list-item]


def test_free_name() -> None:
    assert free_name("summarize-nov", ["summarize-nov"]) == "summarize-nov-2"
    assert free_name("summarize-nov", ["summarize-nov", "summarize-nov-2", "summarize-nov-3"]) == "summarize-nov-4"
    # a numbered copy continues its series; a name that merely ends in digits gets a suffix
    assert free_name("summarize-nov-2", ["summarize-nov", "summarize-nov-2"]) == "summarize-nov-3"
    assert free_name("summarize-2026-01", ["summarize-2026-01"]) == "summarize-2026-01-2"
    long = "x" * 200
    assert free_name(long, [long]) == "x" * 198 + "-2"


# ------------------------------------------------------------------------------------------------ from_captures


def test_from_captures_maps_every_field(url: str, captured: list[CaptureRecord]) -> None:
    dataset = datasets.from_captures(store=url)
    assert ids(dataset) == [c.id for c in captured]  # oldest first
    assert dataset.source == "captures" and dataset.name == "captures"
    assert dataset.filters == {"store": url}
    first = dataset.records[0]
    assert first.inputs == {"text": "very old"} and first.output == "a summary" and first.expected is None
    expected_metadata = captured[0].to_dict()
    for key in ("id", "inputs", "output"):
        del expected_metadata[key]
    assert first.metadata == expected_metadata
    assert first.metadata["timestamp"] == captured[0].timestamp.isoformat()
    assert (first.latency_ms, first.trace_id, first.prompt_version, first.error) == (12.5, "ab" * 16, 1, None)
    failed = dataset.records[3]
    assert failed.output is None and failed.error == "TimeoutError: model timed out"
    blocked = dataset.records[4]  # non-replayable captures stay in, marked, so replay can count them
    assert not blocked.replayable and blocked.replay_reason == "argument 'doc' is a Doc: stored as its repr"


def test_from_captures_of_real_tracked_calls(tmp_path: Path) -> None:
    class Doc:
        def __repr__(self) -> str:
            return "<Doc>"

    @promptops.track(prompt="greet", fallback="Hello, {{name}}!")
    def greet(name: str, doc: Any = None, *, prompt: promptops.Prompt) -> str:
        if name == "boom":
            raise ValueError("no greeting")
        return prompt.format(name=name)

    promptops.configure(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", trace_exporter="none")
    greet("Ada")
    greet("Grace", doc=Doc())
    with pytest.raises(ValueError):
        greet("boom")
    assert promptops.flush(timeout=30)
    dataset = datasets.from_captures(function=f"{__name__}:test_from_captures_of_real_tracked_calls.<locals>.greet")
    assert [r.inputs["name"] for r in dataset.records] == ["Ada", "Grace", "boom"]
    ada, grace, boom = dataset.records
    assert ada.output == "Hello, Ada!" and ada.replayable and ada.metadata["prompt_source"] == "fallback"
    assert ada.prompt_version == 0 and ada.metadata["prompt_name"] == "greet"
    assert not grace.replayable and grace.replay_reason and grace.output == "Hello, Grace!"
    assert boom.output is None and boom.error == "ValueError: no greeting"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"function": "app.llm:classify"}, [2]),
        ({"prompt": "summarize"}, [0, 1, 3, 4, 5]),
        ({"prompt": "summarize", "version": 2}, [1]),
        ({"since": datetime.timedelta(hours=24)}, [2, 3, 4, 5]),
        ({"since": NOW - datetime.timedelta(minutes=30)}, [3, 4, 5]),
        ({"until": NOW - datetime.timedelta(days=1)}, [0, 1]),
        (
            {"since": (NOW - datetime.timedelta(days=7)).replace(tzinfo=None), "until": datetime.timedelta(hours=1)},
            [1, 2],
        ),
        ({"limit": 2}, [4, 5]),  # the most recent two
        ({"dedupe": True}, [0, 1, 2, 3, 4]),  # the first call per distinct inputs: 5 repeats 0
        ({"dedupe": True, "limit": 2}, [3, 4]),
        ({"function": "nope:nothing"}, []),
    ],
)
def test_from_captures_filters(
    url: str, captured: list[CaptureRecord], options: dict[str, Any], expected: list[int]
) -> None:
    assert ids(datasets.from_captures(store=url, **options)) == [captured[i].id for i in expected]


def test_sample_is_reproducible_and_keeps_time_order(url: str) -> None:
    records = [make_capture(age=datetime.timedelta(minutes=100 - i), inputs={"i": i}) for i in range(60)]
    write(url, records)
    order = [r.id for r in records]
    first = datasets.from_captures(store=url, sample=10, seed=7)
    again = datasets.from_captures(store=url, sample=10, seed=7)
    other = datasets.from_captures(store=url, sample=10, seed=8)
    assert len(first) == 10 and ids(first) == ids(again) and first.fingerprint == again.fingerprint
    assert ids(other) != ids(first)
    assert ids(first) == sorted(ids(first), key=order.index)  # still oldest first
    assert first.filters == {"store": url, "sample": 10, "seed": 7}
    assert ids(datasets.from_captures(store=url, sample=10)) == ids(
        datasets.from_captures(store=url, sample=10, seed=0)
    )
    # limit first, then the sample is drawn from those
    recent = datasets.from_captures(store=url, limit=20, sample=5, seed=1)
    assert set(ids(recent)) <= set(order[-20:]) and len(recent) == 5
    # asking for more than there is: all of them
    assert ids(datasets.from_captures(store=url, sample=500)) == order


def test_from_captures_provenance(url: str, captured: list[CaptureRecord]) -> None:
    since = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    dataset = datasets.from_captures(
        store=url, function="app.llm:summarize", prompt="summarize", version=1, since=since, limit=3, dedupe=True
    )
    assert dataset.filters == {
        "store": url,
        "function": "app.llm:summarize",
        "prompt": "summarize",
        "version": 1,
        "since": "2020-01-01T00:00:00+00:00",
        "limit": 3,
        "dedupe": True,
    }
    assert datasets.from_captures(store=url, name="mine").name == "mine"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, r"limit must be a whole number of at least 1, not 0"),
        ({"sample": -3}, r"sample must be a whole number of at least 1, not -3"),
        ({"sample": True}, r"sample must be a whole number"),
        ({"seed": "x"}, r"seed must be a whole number, not 'x'"),
    ],
)
def test_from_captures_bad_options(
    url: str, captured: list[CaptureRecord], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        datasets.from_captures(store=url, **options)


def test_from_captures_without_a_store(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no capture store at sqlite:///.*missing\.db; nothing has been captured"):
        datasets.from_captures(store=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    promptops.configure(capture="none")
    with pytest.raises(DatasetError, match=r"capture is disabled .* pass store=URL, or set PROMPTOPS_CAPTURE"):
        datasets.from_captures()
    with pytest.raises(DatasetError, match=r"invalid capture store URL 'not a url'"):
        datasets.from_captures(store="not a url")


# ------------------------------------------------------------------------------------------------ storage


def awkward_dataset(name: str = "awkward") -> Dataset:
    records = [
        DatasetRecord(
            id=f"r{i}",
            inputs={"value": value, "ключ": [value]},
            output=value,
            expected=AWKWARD[-1 - i],
            metadata={"i": i, "tags": {"x": value}},
        )
        for i, value in enumerate(AWKWARD)
    ]
    return Dataset(name, records, source="file:awkward.jsonl", filters={"file": "/tmp/awkward.jsonl", "n": [1, None]})


def test_create_and_load_round_trip_exactly(url: str) -> None:
    dataset = awkward_dataset()
    before = datetime.datetime.now(datetime.timezone.utc)
    saved = datasets.create("awkward-1", dataset, store=url)
    assert saved.name == "awkward-1" and saved.records == dataset.records and saved.fingerprint == dataset.fingerprint
    assert before <= saved.created_at <= datetime.datetime.now(datetime.timezone.utc)
    loaded = datasets.load("awkward-1", store=url)
    assert loaded.records == dataset.records
    assert [json.dumps(r.to_dict()) for r in loaded.records] == [json.dumps(r.to_dict()) for r in dataset.records]
    assert (loaded.name, loaded.source, loaded.filters, loaded.fingerprint) == (
        "awkward-1",
        "file:awkward.jsonl",
        {"file": "/tmp/awkward.jsonl", "n": [1, None]},
        dataset.fingerprint,
    )
    assert loaded.created_at == saved.created_at and loaded.created_at.tzinfo is not None
    assert [info.name for info in datasets.list_datasets(store=url)] == ["awkward-1"]
    (info,) = datasets.list_datasets(store=url)
    assert info == saved.info


def test_create_from_captures_and_the_capture_setting(url: str, captured: list[CaptureRecord]) -> None:
    promptops.configure(capture=url)
    saved = datasets.create("summarize-nov", datasets.from_captures(prompt="summarize"))
    loaded = datasets.load("summarize-nov")
    assert ids(loaded) == [captured[i].id for i in (0, 1, 3, 4, 5)]
    assert loaded.records == saved.records and loaded.filters == {"store": url, "prompt": "summarize"}
    store = CaptureStore.open(url)  # a CaptureStore works as well as a URL, and stays open
    try:
        assert datasets.load("summarize-nov", store=store).fingerprint == saved.fingerprint
        assert [i.name for i in datasets.list_datasets(store=store)] == ["summarize-nov"]
        assert store.count() == 6  # the captures are untouched
    finally:
        store.close()


def test_datasets_are_immutable(url: str) -> None:
    first = datasets.create("summarize-nov", awkward_dataset(), store=url)
    other = Dataset("x", [DatasetRecord("1", {"text": "different"})])
    with pytest.raises(DatasetExistsError) as raised:
        datasets.create("summarize-nov", other, store=url)
    assert str(raised.value) == (
        f"dataset 'summarize-nov' already exists in {url}; datasets are immutable: save this one under a new name, "
        "e.g. 'summarize-nov-2'"
    )
    assert (raised.value.name, raised.value.suggestion) == ("summarize-nov", "summarize-nov-2")
    assert datasets.load("summarize-nov", store=url).records == first.records  # unchanged
    datasets.create("summarize-nov-2", other, store=url)
    with pytest.raises(DatasetExistsError, match=r"e\.g\. 'summarize-nov-3'"):
        datasets.create("summarize-nov", other, store=url)
    with pytest.raises(DatasetExistsError, match=r"e\.g\. 'summarize-nov-3'"):
        datasets.create("summarize-nov-2", other, store=url)
    assert not hasattr(datasets, "update")


@pytest.mark.parametrize("name", ["", " x", "my data", "-x", "a/b", "x" * 201, "naïve", "x\n"])
def test_invalid_names(url: str, name: str) -> None:
    with pytest.raises(DatasetError, match=r"dataset name .* is not valid: use 1-200 letters, digits"):
        datasets.create(name, awkward_dataset(), store=url)


def test_empty_dataset_is_refused(url: str) -> None:
    with pytest.raises(DatasetError, match=r"dataset 'nothing' would have no records; widen the selection"):
        datasets.create("nothing", Dataset("x", []), store=url)


def test_load_and_delete_unknown(url: str) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"no dataset named 'x' in the capture store sqlite:///"):
        datasets.load("x", store=url)
    assert not Path(url.removeprefix("sqlite:///")).exists()  # reading never creates a store
    assert datasets.list_datasets(store=url) == []
    datasets.create("summarize-nov", awkward_dataset(), store=url)
    with pytest.raises(DatasetNotFoundError, match=r"did you mean 'summarize-nov'\? list them with"):
        datasets.load("summarize-noc", store=url)
    with pytest.raises(DatasetNotFoundError, match=r"no dataset named 'other'"):
        datasets.delete("other", store=url)


def test_delete_frees_the_name(url: str) -> None:
    datasets.create("a", awkward_dataset(), store=url)
    datasets.create("b", Dataset("x", [DatasetRecord("1", {"t": 1})]), store=url)
    assert datasets.delete("a", store=url) == len(AWKWARD)
    assert [i.name for i in datasets.list_datasets(store=url)] == ["b"]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        assert connection.execute("SELECT DISTINCT dataset FROM promptops_dataset_records").fetchall() == [("b",)]
    again = datasets.create("a", Dataset("x", [DatasetRecord("1", {"t": 2})]), store=url)
    assert datasets.load("a", store=url).records == again.records


def test_a_failed_write_leaves_nothing(url: str) -> None:
    CaptureStore.open(url).close()
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        # A real failure half-way through the records: the database refuses the fourth.
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON promptops_dataset_records WHEN NEW.position = 3 "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    with pytest.raises(DatasetError, match=r"cannot write dataset 'half' to the capture store .*disk says no; nothing"):
        datasets.create("half", awkward_dataset(), store=url)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM promptops_datasets").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM promptops_dataset_records").fetchone() == (0,)
        connection.execute("DROP TRIGGER refuse")
    datasets.create("half", awkward_dataset(), store=url)
    assert len(datasets.load("half", store=url)) == len(AWKWARD)


def test_changes_behind_promptops_back_are_detected(url: str) -> None:
    datasets.create("d", awkward_dataset(), store=url)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE promptops_dataset_records SET output = '\"edited\"' WHERE position = 2")
    with pytest.raises(DatasetError, match=r"dataset 'd': its records do not match its fingerprint"):
        datasets.load("d", store=url)
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM promptops_dataset_records WHERE position = 2")
    with pytest.raises(DatasetError, match=rf"should hold {len(AWKWARD)} records but holds {len(AWKWARD) - 1}"):
        datasets.load("d", store=url)


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    # What promptops with schema version 1 left behind: its captures table, a capture, version 1.
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        capture_store._migrate_v1(connection)  # pyright: ignore[reportPrivateUsage]
        capture_store.schema_table.create(connection)
        connection.execute(capture_store.schema_table.insert().values(version=1))
    engine.dispose()
    record = make_capture(age=datetime.timedelta(minutes=1))
    old = sa.create_engine(url)
    write_as_older_schema(old, [record])  # as version 1 wrote it, without migrating
    old.dispose()
    with sqlite3.connect(tmp_path / "v1.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "promptops_datasets" not in tables

    store = CaptureStore.open(url)
    try:
        assert store.schema_version() == capture_store.SCHEMA_VERSION == 4
        assert store.migrate() == 0
        assert list(store.query()) == [record]  # the captures survive the upgrade
    finally:
        store.close()
    saved = datasets.create("after-upgrade", datasets.from_captures(store=url), store=url)
    assert ids(saved) == [record.id] and datasets.load("after-upgrade", store=url).records == saved.records


def test_importing_promptops_stays_light() -> None:
    code = (
        "import sys, promptops; heavy = ['promptops.datasets', 'sqlalchemy', 'pyarrow', 'mlflow'];"
        "print([m for m in heavy if m in sys.modules]);"
        "import promptops.datasets; print([m for m in heavy[1:] if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines() == ["[]", "[]"]
