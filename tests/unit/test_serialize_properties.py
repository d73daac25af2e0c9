"""Properties of serialisation + redaction (issues 11, 16), with Hypothesis.

1. The fast paths agree with the general walk: `_plain_text` (span text of plain data) with
   `dumps_for_span`'s walk, and the capture writer's `_plain_scalar`/`_plain_inputs` with `encode`.
2. Canaries planted in every container shape the serialiser supports, under sensitive keys and as secrets in
   text, never come out: not in the span text, not in the capture conversion, at any size limit.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import enum
import json
import re
import sys
import uuid
from typing import Any, NamedTuple

import pydantic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from promptops._json import compact_encoder, plain_encoder
from promptops._redact import Redactor
from promptops._serialize import (
    _NOT_PLAIN,  # pyright: ignore[reportPrivateUsage]
    _plain_copy,  # pyright: ignore[reportPrivateUsage]
    _plain_text,  # pyright: ignore[reportPrivateUsage]
    _to_json,  # pyright: ignore[reportPrivateUsage]
    _Walk,  # pyright: ignore[reportPrivateUsage]
    dumps_encoded,
    dumps_for_span,
    encode,
    encode_plain,
)
from promptops.capture import _writer  # pyright: ignore[reportPrivateUsage]

REDACTOR = Redactor()

SCALARS = (
    st.text(max_size=40)
    | st.sampled_from(["sk-" + "a1B2c3D4e5" * 2, "jane@example.com", "password=hunter2", "4111 1111 1111 1111"])
    | st.integers(min_value=-(10**13), max_value=10**13)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)
KEYS = st.text(max_size=12) | st.sampled_from(["password", "api_key", "max_tokens", "token", "text", "pwd"])


def walked(value: Any, limit: int) -> str:
    """What `dumps_for_span` produces through the general walk, never the fast path."""
    return _to_json(_Walk(limit, REDACTOR, limit).value(value, "", 0))


# Plain data as the fast paths take it: scalars, and dicts, lists and tuples of them nested a few levels.
PLAIN = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, PLAIN, max_size=6), st.sampled_from([64, 200, 8192]))
# The walk's budget charges 9 per item here, the text takes 6: the walk cuts the eighth item, so must the fast path.
@example(dict.fromkeys("abcdefgh", 0), 64)
def test_the_span_fast_path_matches_the_walk(value: dict[str, Any], limit: int) -> None:
    fast = _plain_text(value, limit, REDACTOR)
    if fast is not None:
        assert fast == walked(value, limit)
    assert dumps_for_span(value, max_chars=limit, redactor=REDACTOR) == (
        fast if fast is not None else dumps_for_span(value, max_chars=limit, redactor=REDACTOR)
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PLAIN, st.sampled_from([64, 200, 8192]))
def test_the_plain_text_shortcut_is_what_encode_records(value: Any, limit: int) -> None:
    # `encode_plain` (the hot path's one conversion of plain data, issue 11) must give what `encode` records, and
    # the span text the walk would.
    plain = encode_plain(value, max_chars=limit, redactor=REDACTOR)
    if plain is not None:
        expected = encode(value, max_chars=limit, redactor=REDACTOR, max_total_chars=limit * 10)
        assert (expected.replayable, expected.redacted) == (True, False)
        assert plain.decoded().data == json.loads(_to_json(expected.data))
        assert plain.text == walked(value, limit)
        assert dumps_encoded(plain, max_chars=limit) == plain.text


def test_the_plain_text_shortcut_takes_the_common_arguments() -> None:
    # A positive control for the property above: without it, a shortcut that always declined would pass.
    value = {"query": "What changed?", "options": {"temperature": 0.2, "top_k": 5, "tags": ["news", "eu"]}}
    plain = encode_plain(value, max_chars=8192, redactor=REDACTOR)
    assert plain is not None and json.loads(plain.text) == value
    assert encode_plain({"password": "hunter2"}, max_chars=8192, redactor=REDACTOR) is None  # masked: general way
    assert encode_plain({"q": "x" * 100}, max_chars=64, redactor=REDACTOR) is None  # cut: general way
    # Keys equal to those seen before but other objects (arguments decoded per request) still take the shortcut.
    assert encode_plain(json.loads(json.dumps(value)), max_chars=8192, redactor=REDACTOR) == plain

    # What the C encoder would write as plain JSON but the walk records otherwise goes the general way.
    class Login(NamedTuple):
        user: str
        password: str

    others = ({"login": Login("jane", "hunter2")}, {"n": float("nan")}, {"card": 4111111111111111}, ["é"], [1e-7])
    for other in others:
        assert encode_plain(other, max_chars=8192, redactor=REDACTOR) is None, other


def test_deep_and_cyclic_data_go_the_general_way() -> None:
    # The walk writes "<depth limit>" past MAX_DEPTH and "<cycle>" for a container inside itself: the shortcut,
    # which would write every level (or recurse for good), must leave both to it.
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(40):
        inner["a"] = inner = {}
    cyclic: dict[str, Any] = {"q": "x"}
    cyclic["self"] = cyclic
    looped: list[Any] = ["x"]
    looped.append(looped)
    for value in (deep, cyclic, looped):
        assert encode_plain(value, max_chars=8192, redactor=REDACTOR) is None
        assert dumps_for_span(value, max_chars=8192, redactor=REDACTOR) == walked(value, 8192)
    assert "<depth limit>" in walked(deep, 8192) and "<cycle>" in walked(cyclic, 8192)


def test_the_shortcut_encodes_a_copy_of_what_it_checked() -> None:
    # What is checked is what is encoded: an argument another thread changes meanwhile brings in no unchecked value.
    value: dict[str, Any] = {"q": "x", "options": {"tags": ["a"]}, "pair": ("b", {"c": 1})}
    copy = _plain_copy(value, 8192, REDACTOR, 0)
    value["q"] = value["options"]["tags"][0] = value["pair"][1]["c"] = "sk-" + "a1B2c3D4e5" * 2
    assert json.loads(_to_json(copy)) == {"q": "x", "options": {"tags": ["a"]}, "pair": ["b", {"c": 1}]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PLAIN)
def test_orjson_and_the_standard_library_write_plain_data_alike(value: Any) -> None:
    # The shortcut's text comes from orjson where it is installed, else from the standard library's C encoder.
    encoder = plain_encoder()
    assert "orjson" in sys.modules  # a dependency on CPython: the fast encoder is the one compared
    if _plain_copy(value, 8192, REDACTOR, 0) is _NOT_PLAIN:
        return
    try:
        fast = encoder(value)
    except Exception:  # a lone surrogate: orjson refuses it, and the shortcut then declines
        return
    assert fast == compact_encoder()(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCALARS, st.sampled_from([64, 200, 100_000]))
def test_the_writer_scalar_shortcut_matches_encode(value: Any, limit: int) -> None:
    ok, converted = _writer._plain_scalar(value, limit)  # pyright: ignore[reportPrivateUsage]
    if ok:
        expected = encode(value, max_chars=limit, redactor=REDACTOR)
        assert expected.replayable
        assert converted == expected.data or (converted != converted and expected.data != expected.data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, SCALARS, max_size=8), st.sampled_from([64, 100_000]))
def test_the_writer_inputs_shortcut_matches_encode(value: dict[str, Any], limit: int) -> None:
    shortcut = _writer._plain_inputs(value, REDACTOR, limit)  # pyright: ignore[reportPrivateUsage]
    if shortcut is not None:
        expected = encode(value, max_chars=limit, redactor=REDACTOR, max_total_chars=limit * 10)
        data, redacted = shortcut
        assert _to_json(data) == _to_json(expected.data)
        assert redacted == expected.redacted


# -- canaries ------------------------------------------------------------------------------------------------

CANARY = "CANARY7731"  # in every planted secret; must never come out
SECRET_TEXTS = [
    f"sk-{CANARY}abcdefghijklmnop",
    f"{CANARY.lower()}.person@example.com",
    f"ghp_{CANARY}abcdefghijklmnopqrstuvwxyz0123",
    f"password={CANARY}",
    f"https://alice:{CANARY}@host.example.com/x",
    f"-----BEGIN RSA PRIVATE KEY-----\nMII{CANARY}\n-----END RSA PRIVATE KEY-----",
    f"xoxb-1234567890-{CANARY}abcdef",
    f"sk_live_{CANARY}abcdefgh",
    f"AIza{CANARY}abcdefghijklmnopqrstuvwxyz0",
    f"Bearer {CANARY}abcdefgh",
]


class Color(enum.Enum):
    RED = f"sk-{CANARY}enumvalue0123456789"


@dataclasses.dataclass
class Login:
    user: str
    password: str


class Credentials(NamedTuple):
    host: str
    token: str


class Model(pydantic.BaseModel):
    name: str
    api_key: str


def planted(secret: str) -> st.SearchStrategy[Any]:
    """The secret in text, and a canary value under a sensitive key, in one container shape each."""
    text = st.sampled_from([secret, f"before {secret} after", f"{secret}\n" * 3]).map(str)
    under_key = st.just(CANARY + "-value")
    shapes = [
        text,
        st.builds(lambda t: {"note": t}, text),
        st.builds(lambda v: {"password": v}, under_key),
        st.builds(lambda v: {"nested": {"deeper": [{"api_key": v}]}}, under_key),
        st.builds(lambda t: [t, 1, None], text),
        st.builds(lambda t: (t, 2.5), text),
        st.builds(lambda t: {t}, text),
        st.builds(lambda t: frozenset([t]), text),
        st.builds(lambda t: collections.deque([t]), text),
        st.builds(lambda t: collections.OrderedDict(x=t), text),
        st.builds(lambda v: Login("ann", v), under_key),
        st.builds(lambda v: Credentials("h", v), under_key),
        st.builds(lambda v: Model(name="m", api_key=v), under_key),
        st.builds(lambda t: t.encode() + b"\xff", text),
        st.builds(lambda t: bytearray(t.encode()), text),
        st.builds(lambda t: memoryview(t.encode() + b"\x80"), text),
        st.builds(lambda t: {t: 1}, text),  # a secret as a key
        st.builds(lambda v: {"x" * 150 + "_password": v}, under_key),  # a long sensitive key
        st.just(Color.RED),
        st.builds(lambda t: {"when": datetime.date(2026, 1, 1), "id": uuid.UUID(int=1), "t": t}, text),
    ]
    return st.one_of(shapes)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SECRET_TEXTS).flatmap(planted),
    st.integers(min_value=0, max_value=3),
    st.sampled_from([64, 100, 300, 8192]),
)
def test_no_canary_comes_out_of_any_container_shape(value: Any, depth: int, limit: int) -> None:
    for _ in range(depth):
        value = {"wrap": [value]}
    span_text = revealed(dumps_for_span(value, max_chars=limit, redactor=REDACTOR))
    assert CANARY not in span_text and CANARY.lower() not in span_text
    data = encode(value, max_chars=limit, redactor=REDACTOR, max_total_chars=limit * 10).data
    shown = revealed(_to_json(data))
    assert CANARY not in shown and CANARY.lower() not in shown


def revealed(text: str) -> str:
    """`text` and whatever its `base64:` values decode to (bytes are recorded that way)."""
    decoded = [
        base64.b64decode(chunk + "=" * (-len(chunk) % 4)).decode("latin-1")
        for chunk in re.findall(r"base64:([A-Za-z0-9+/]+)", text)
    ]
    return "\n".join([text, *decoded])
