"""The value pipeline: conversion to JSON data, truncation, cycles, hostile objects, span text, argument binding."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptops._redact import Redactor
from promptops._serialize import (
    MAX_DEPTH,
    MIN_MAX_CHARS,
    dumps_for_span,
    encode,
    to_jsonable,
)

REDACTOR = Redactor()


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str = "p"


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    created: datetime.datetime
    color: Color


class Address(pydantic.BaseModel):
    city: str
    zip_code: str


class User(pydantic.BaseModel):
    id: uuid.UUID
    name: str
    joined: datetime.date
    balance: decimal.Decimal
    address: Address
    tags: list[str] = []


# -- conversion -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["text", "", 0, -7, 2**62, 1.5, -0.0, True, False, None])
def test_json_scalars_pass_through(value: Any) -> None:
    assert to_jsonable(value, max_chars=100) is value
    assert encode(value, max_chars=100).replayable


def test_nan_and_infinities_become_strings() -> None:
    assert to_jsonable([math.nan, math.inf, -math.inf], max_chars=100) == ["NaN", "Infinity", "-Infinity"]
    assert dumps_for_span({"x": math.nan}, max_chars=100, redactor=None) == '{"x":"NaN"}'


def test_containers() -> None:
    value = {"a": (1, 2), "b": [{"c": None}], 3: "int key", None: 1, 2.5: 2, True: 3}
    assert to_jsonable(value, max_chars=100) == {
        "a": [1, 2],
        "b": [{"c": None}],
        "3": "int key",
        "null": 1,
        "2.5": 2,
        "true": 3,
    }
    assert to_jsonable({3, 1, 2}, max_chars=100) == [1, 2, 3]
    mixed = to_jsonable(frozenset({"b", 1}), max_chars=100)  # not comparable: iteration order
    assert isinstance(mixed, list) and sorted(mixed, key=str) == [1, "b"]
    assert to_jsonable(deque([1, 2]), max_chars=100) == [1, 2]
    assert to_jsonable(range(3), max_chars=100) == [0, 1, 2]
    assert to_jsonable(OrderedDict(a=1), max_chars=100) == {"a": 1}


def test_documented_representations() -> None:
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
    value = {
        "datetime": moment,
        "date": moment.date(),
        "time": moment.time(),
        "timedelta": datetime.timedelta(minutes=1, milliseconds=500),
        "uuid": uuid.UUID(int=1),
        "decimal": decimal.Decimal("1.10"),
        "path": PurePosixPath("/tmp/x"),
        "enum": Color.RED,
        "int_enum": Level.LOW,
        "bytes": b"caf\xc3\xa9",
        "bytearray": bytearray(b"ab"),
    }
    encoded = encode(value, max_chars=100)
    assert encoded.data == {
        "datetime": "2024-05-06T07:08:09+00:00",
        "date": "2024-05-06",
        "time": "07:08:09",
        "timedelta": 60.5,
        "uuid": "00000000-0000-0000-0000-000000000001",
        "decimal": "1.10",
        "path": "/tmp/x",
        "enum": "red",
        "int_enum": 1,
        "bytes": "café",
        "bytearray": "ab",
    }
    assert encoded.replayable, encoded.reason


def test_binary_that_is_not_text_is_base64_and_not_replayable() -> None:
    encoded = encode(b"\xff\x00\x01", max_chars=100)
    assert encoded.data == "base64:/wAB"
    assert not encoded.replayable


def test_pydantic_models_round_trip() -> None:
    user = User(
        id=uuid.uuid4(),
        name="Ann",
        joined=datetime.date(2020, 1, 2),
        balance=decimal.Decimal("12.50"),
        address=Address(city="Oslo", zip_code="0150"),
        tags=["a"],
    )
    encoded = encode({"user": user}, max_chars=1000, redactor=REDACTOR)
    assert encoded.replayable
    data = encoded.data
    assert isinstance(data, dict)
    assert User.model_validate(data["user"]) == user
    assert json.loads(dumps_for_span(user, max_chars=1000, redactor=REDACTOR)) == data["user"]


def test_dataclasses_round_trip() -> None:
    shape = Shape("tri", [Point(0, 0.5), Point(1, 2.0, "b")], datetime.datetime(2024, 1, 1), Color.BLUE)
    data = to_jsonable(shape, max_chars=1000)
    assert data == {
        "name": "tri",
        "points": [{"x": 0, "y": 0.5, "label": "p"}, {"x": 1, "y": 2.0, "label": "b"}],
        "created": "2024-01-01T00:00:00",
        "color": 2,
    }
    assert pydantic.TypeAdapter(Shape).validate_python(data) == shape


def test_numpy_values() -> None:
    numpy = pytest.importorskip("numpy")
    assert to_jsonable({"a": numpy.arange(3), "s": numpy.int64(4)}, max_chars=100) == {"a": [0, 1, 2], "s": 4}


def test_anything_else_is_its_repr_and_not_replayable() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "Thing(1)"

    encoded = encode({"t": Thing()}, max_chars=100)
    assert encoded.data == {"t": "Thing(1)"}
    assert not encoded.replayable
    assert encoded.reason is not None and "Thing" in encoded.reason


def test_subclasses_of_builtins_become_plain_builtins() -> None:
    class Text(str):
        def __str__(self) -> str:
            raise RuntimeError("not called")

    class Number(int):
        pass

    data = to_jsonable([Text("abc"), Number(5), Color.RED], max_chars=100)
    assert data == ["abc", 5, "red"]
    assert [type(item) for item in data] == [str, int, str]  # type: ignore[union-attr]


# -- never raises -----------------------------------------------------------------------------------------------


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")


class BadClass:
    @property  # type: ignore[misc]
    def __class__(self) -> type:  # type: ignore[override]
        raise RuntimeError("hostile")


class BadMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise ValueError("cannot iterate")

    def __len__(self) -> int:
        return 1


@dataclasses.dataclass
class BadField:
    a: int

    def __getattribute__(self, name: str) -> Any:
        if name == "a":
            raise RuntimeError("hostile field")
        return super().__getattribute__(name)


class BadModel(pydantic.BaseModel):
    x: int

    @pydantic.model_serializer
    def broken(self) -> dict[str, Any]:
        raise ValueError("cannot serialise")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (BadRepr, "<unrepresentable BadRepr>"),
        (BadClass, "<unrepresentable BadClass>"),
        (BadMapping, "<unrepresentable BadMapping>"),
        (lambda: BadField(1), "<unrepresentable BadField>"),
    ],
    ids=["repr", "class", "mapping", "dataclass-field"],
)
def test_hostile_objects_are_marked_not_raised(make: Any, expected: str) -> None:
    value = make()
    encoded = encode({"v": value}, max_chars=100)
    assert encoded.data == {"v": expected}
    assert not encoded.replayable
    assert json.loads(dumps_for_span({"v": value}, max_chars=100, redactor=REDACTOR)) == {"v": expected}


def test_a_model_whose_serialiser_raises_is_walked_field_by_field() -> None:
    assert to_jsonable(BadModel(x=3), max_chars=100) == {"x": 3}


def test_cycles_are_marked() -> None:
    items: list[Any] = [1]
    items.append(items)
    mapping: dict[str, Any] = {"name": "loop"}
    mapping["self"] = {"back": mapping}
    point = Point(1, 2.0)
    point.label = point  # type: ignore[assignment]
    encoded = encode({"list": items, "dict": mapping, "dataclass": point}, max_chars=100)
    assert encoded.data == {
        "list": [1, "<cycle>"],
        "dict": {"name": "loop", "self": {"back": "<cycle>"}},
        "dataclass": {"x": 1, "y": 2.0, "label": "<cycle>"},
    }
    assert not encoded.replayable
    assert encoded.reason == "a reference cycle"


def test_shared_references_are_not_cycles() -> None:
    shared = {"a": 1}
    encoded = encode([shared, shared, [shared]], max_chars=100)
    assert encoded.data == [{"a": 1}, {"a": 1}, [{"a": 1}]]
    assert encoded.replayable


def test_depth_limit() -> None:
    value: Any = "bottom"
    for _ in range(MAX_DEPTH + 5):
        value = [value]
    encoded = encode(value, max_chars=100)
    assert "<depth limit>" in json.dumps(encoded.data)
    assert not encoded.replayable
    depth = 0
    data = encoded.data
    while isinstance(data, list):
        data = data[0]
        depth += 1
    assert depth == MAX_DEPTH


def test_huge_ints_and_lone_surrogates() -> None:
    encoded = encode({"big": 10**5000, "text": "a\ud800b", "\udfffkey": 1}, max_chars=100)
    assert encoded.data == {"big": "<int of 16610 bits>", "text": "a\ufffdb", "\ufffdkey": 1}
    for value in ({"text": "a\ud800b"}, {"\ud800": "x"}, {"k": ["\udfff"]}, "\ud800"):
        text = dumps_for_span(value, max_chars=100, redactor=REDACTOR)
        text.encode("utf-8")  # no lone surrogate left
        assert "\ufffd" in json.loads(text) or "\ufffd" in text


def test_a_mapping_changing_during_iteration_is_recorded_partially() -> None:
    class Shrinking(dict[str, int]):
        def items(self) -> Any:
            yield "a", 1
            raise RuntimeError("dictionary changed size during iteration")

    encoded = encode({"m": Shrinking(a=1, b=2)}, max_chars=100)
    assert encoded.data == {"m": {"a": 1}}
    assert not encoded.replayable


# -- truncation -------------------------------------------------------------------------------------------------


def test_long_strings_are_cut_with_a_marker_counting_what_was_cut() -> None:
    text = "x" * 1000
    encoded = encode(text, max_chars=100)
    data = encoded.data
    assert isinstance(data, str) and len(data) <= 100
    kept = data.index("…")
    assert data == "x" * kept + f"…[truncated {1000 - kept} chars]"
    assert not encoded.replayable and encoded.reason == "a string of 1000 characters was truncated"


def test_a_ten_megabyte_string_costs_little() -> None:
    text = "y" * 10_000_000
    start = time.perf_counter()
    for _ in range(10):
        span_text = dumps_for_span({"text": text}, max_chars=8192, redactor=REDACTOR)
        data = to_jsonable(text, max_chars=8192, redactor=REDACTOR)
    elapsed = time.perf_counter() - start
    assert len(span_text) <= 8192
    assert json.loads(span_text)["text"].endswith(" chars]")
    assert isinstance(data, str) and len(data) <= 8192
    kept = data.index("…")
    assert data.endswith(f"…[truncated {10_000_000 - kept} chars]")
    assert elapsed < 2.0  # generous: copying or scanning the whole string 20 times would take far longer


def test_a_secret_straddling_the_cut_is_not_partly_revealed() -> None:
    for padding in range(60, 140, 7):
        text = "a " * padding + "sk-CANARYabcdefghijklmnopqrstuvwxyz0123456789 and more text " * 3
        for max_chars in (64, 100, 150, 200):
            recorded = json.dumps(encode(text, max_chars=max_chars, redactor=REDACTOR).data)
            assert "sk-" not in recorded and "CANARY" not in recorded
            span = dumps_for_span({"text": text}, max_chars=max_chars, redactor=REDACTOR)
            assert "sk-" not in span and "CANARY" not in span


def test_containers_past_the_budget_end_with_a_marker() -> None:
    encoded = encode(list(range(100_000)), max_chars=100, max_total_chars=1000)
    data = encoded.data
    assert isinstance(data, list) and len(data) < 1000
    assert isinstance(data[-1], str) and data[-1].startswith("…[truncated ")
    assert not encoded.replayable
    text = dumps_for_span({"n": list(range(100_000))}, max_chars=500, redactor=REDACTOR)
    assert len(text) <= 500
    assert json.loads(text)["n"][-1].startswith("…[truncated ")


def test_escaping_heavy_values_still_fit_and_stay_valid_json() -> None:
    for value in ['"' * 5000, "\x01" * 5000, {"k": ["\n" * 50] * 200}, ['é"\\' * 30] * 100]:
        for max_chars in (64, 100, 1000):
            text = dumps_for_span(value, max_chars=max_chars, redactor=REDACTOR)
            assert len(text) <= max_chars
            json.loads(text)


def test_small_max_chars_is_raised_to_the_minimum() -> None:
    text = dumps_for_span("z" * 500, max_chars=5, redactor=REDACTOR)
    assert len(text) <= MIN_MAX_CHARS
    assert json.loads(text).startswith("z")


# -- dumps_for_span ---------------------------------------------------------------------------------------------


def test_dumps_for_span_is_compact_unicode_json() -> None:
    text = dumps_for_span({"text": "héllo", "n": [1, 2]}, max_chars=100, redactor=REDACTOR)
    assert text == '{"text":"héllo","n":[1,2]}'
    assert dumps_for_span("plain output", max_chars=100, redactor=REDACTOR) == '"plain output"'


def test_dumps_for_span_redacts() -> None:
    value = {"api_key": "abc", "text": "write to ann@example.com"}
    assert dumps_for_span(value, max_chars=200, redactor=REDACTOR) == (
        '{"api_key":"[REDACTED]","text":"write to [REDACTED:email]"}'
    )
    assert dumps_for_span("mail ann@example.com", max_chars=200, redactor=REDACTOR) == '"mail [REDACTED:email]"'


def test_dumps_for_span_with_a_callable_that_changes_the_type() -> None:
    redactor = Redactor([lambda key, value: 0 if value == "zero" else value])
    assert dumps_for_span("zero", max_chars=100, redactor=redactor) == "0"
    assert dumps_for_span({"a": "zero"}, max_chars=100, redactor=redactor) == '{"a":0}'


CANARIES = {
    "sk": "sk-CANARYkey000000000000000000000",
    "aws": "AKIACANARY0000000000",
    "card": "4000 0000 0000 0002",  # Luhn-valid
    "jwt": "eyJDQU5BUlkiOiJ4In0.eyJjYW5hcnkiOjF9.c2lnbmF0dXJlQ0FOQVJZ",
    "email": "canary.person@canary-mail.example",
    "ghp": "ghp_CANARY000000000000000000000000000000",
    "bearer": "CANARYbearertoken123",
    "password": "hunter2-canary",  # only ever under a sensitive key: free text is not parsed for `password=`
}


def _canary_inputs() -> dict[str, Any]:
    return {
        "query": f"please use {CANARIES['sk']} now",
        "config": {
            "nested": [f"aws {CANARIES['aws']}", {"pay": f"card {CANARIES['card']} thanks"}],
            "password": CANARIES["password"],
            "headers": {"X-Note": f"Bearer {CANARIES['bearer']}"},
        },
        "token_thing": (f"jwt={CANARIES['jwt']}",),
        "user": Point(1, 2.0, f"mail {CANARIES['email']} or {CANARIES['ghp']}"),
        "items": [f"{name}: {secret}" for name, secret in CANARIES.items() if name not in ("bearer", "password")],
        "db": {"PASSWORD": CANARIES["password"], "auth": {"kind": "basic", "value": CANARIES["password"]}},
    }


@pytest.mark.parametrize("max_chars", [64, 120, 333, 1000, 8192])
def test_canary_secrets_never_reach_a_span(max_chars: int) -> None:
    text = dumps_for_span(_canary_inputs(), max_chars=max_chars, redactor=REDACTOR)
    json.loads(text)
    assert "CANARY" not in text.upper()
    for secret in CANARIES.values():
        assert secret not in text
        assert secret[:8] not in text
    encoded = encode(_canary_inputs(), max_chars=max_chars, redactor=REDACTOR)
    assert "canary" not in json.dumps(encoded.data).lower()
    assert encoded.redacted


# -- hostile input, by hypothesis -------------------------------------------------------------------------------

HOSTILE_TEXT = st.text(
    st.characters(codec=None, categories=None) | st.sampled_from(list('{}[]"\\\n\t\x00\u2028\ud800\udfff…@-_')),
    max_size=60,
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | HOSTILE_TEXT
    | st.binary(max_size=20)
    | st.datetimes()
    | st.decimals()
    | st.uuids()
    | st.sampled_from([Color.RED, Level.LOW, BadRepr, object, lambda: Path("/x"), lambda: math.nan]).map(
        lambda make: make if isinstance(make, enum.Enum) else make()
    )
)
HOSTILE = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner, inner)
        | st.dictionaries(HOSTILE_TEXT | st.integers() | st.none(), inner, max_size=6)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(HOSTILE, st.integers(min_value=0, max_value=3000))
def test_dumps_for_span_always_returns_capped_valid_json(value: Any, max_chars: int) -> None:
    text = dumps_for_span(value, max_chars=max_chars, redactor=REDACTOR)
    assert isinstance(text, str)
    assert len(text) <= max(max_chars, MIN_MAX_CHARS)
    json.loads(text)
    text.encode("utf-8")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(HOSTILE, st.integers(min_value=0, max_value=300))
def test_encode_always_returns_json_data(value: Any, max_chars: int) -> None:
    encoded = encode(value, max_chars=max_chars, redactor=REDACTOR)
    text = json.dumps(encoded.data, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    assert encoded.replayable == (encoded.reason is None)
