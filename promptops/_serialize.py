"""Turning a call's inputs, output or exception into JSON-safe, redacted, size-bounded data.

Shared by tracing (span attributes, via `dumps_for_span`) and capture (records, via `encode`). One pass over
the value converts, redacts (when given a `Redactor`) and truncates; nothing here ever raises into the
caller, whatever the value.

How values are represented:

| value | becomes |
|---|---|
| `str`, `int`, `float`, `bool`, `None` | itself; NaN and infinities become `"NaN"`, `"Infinity"`, `"-Infinity"` |
| `dict` and other mappings | a dict; keys become strings (`None` → `"null"`, numbers as in JSON, else `repr`) |
| `list`, `tuple`, `range`, `deque` | a list |
| `set`, `frozenset` | a list, sorted when the items can be compared |
| pydantic v2 models | `model_dump(mode="json")` |
| dataclass instances | a dict of their fields |
| `datetime`, `date`, `time` | ISO 8601 text (`isoformat()`) |
| `timedelta` | seconds, as a float |
| `UUID`, `Decimal`, paths | `str(value)` |
| `Enum` members | their `value`, converted |
| `bytes`, `bytearray`, `memoryview` | the text if it is UTF-8, else `"base64:..."` |
| numpy arrays and scalars | `tolist()` / `item()` |
| anything else | `repr(value)`; `"<unrepresentable TypeName>"` if `repr` raises |

Limits, each marked in the data and making the value *not replayable* (`Encoded.replayable`): a string longer
than `max_chars` keeps its start and ends in `"…[truncated N chars]"` (N characters were cut; the cut costs a
slice, never a copy of the whole string); a reference cycle becomes `"<cycle>"`; nesting deeper than
`MAX_DEPTH` becomes `"<depth limit>"`; a container past the total size budget ends with a
`"…[truncated N items]"` entry. Lone surrogates (which no UTF-8 exporter accepts) become U+FFFD.

Truncation never reveals part of a secret: a long string is redacted over a window `TRUNCATION_MARGIN`
characters longer than what is kept, and the window's unmatched tail is never kept.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import PurePath
from typing import Any, Final

from ._errors import log_internal_error
from ._json import compact_encoder, plain_encoder
from ._redact import MASK, MASK_ERROR, Jsonable, Redactor, maybe_secret, redact_with_defaults

__all__ = [
    "MAX_DEPTH",
    "MIN_MAX_CHARS",
    "TRUNCATION_MARGIN",
    "Encoded",
    "EncodedText",
    "Jsonable",
    "bounded_text",
    "dumps_encoded",
    "dumps_for_span",
    "encode",
    "encode_plain",
    "to_jsonable",
]

MAX_DEPTH: Final = 32
"""Containers nested deeper than this are recorded as `"<depth limit>"`."""
MIN_MAX_CHARS: Final = 64
"""Smaller `max_chars` values are raised to this: below it not even a truncation marker fits."""
TRUNCATION_MARGIN: Final = 1024
"""Extra characters redacted past a truncation point, so a secret straddling it is recognised whole."""

_SURROGATES = re.compile("[\ud800-\udfff]")
_CARD_MIN = 10**12  # ints from here on may be card numbers (13 digits or more)
_LARGE_INT_BITS = 256  # larger ints are recorded as text: str() of one past 4300 digits raises


_to_json: Final = compact_encoder()
_plain_json: Final = plain_encoder()
_encode_str: Final[Callable[[str], str]] = json.encoder.encode_basestring  # the C function when available


def _clean(text: str) -> str:
    """Replace lone surrogates, which cannot be encoded as UTF-8 (callers test `isascii()` first)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def _marker(cut: int) -> str:
    return f"…[truncated {cut} chars]"


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
        if type(text) is not str:
            raise TypeError("__repr__ returned a non-string")
        return text
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


# Dataclass field names per class: `dataclasses.fields()` costs microseconds per call.
_fields_cache: dict[type, tuple[str, ...]] = {}


def _dataclass_fields(cls: type) -> tuple[str, ...]:
    names = _fields_cache.get(cls)
    if names is None:
        names = tuple(field.name for field in dataclasses.fields(cls))
        if len(_fields_cache) >= 1024:
            _fields_cache.clear()
        _fields_cache[cls] = names
    return names


class _Walk:
    """One conversion pass: the limits, and what was lost or masked on the way."""

    __slots__ = ("active", "budget", "keys", "max_chars", "plain", "reason", "redacted", "redactor")

    def __init__(self, max_chars: int, redactor: Redactor | None, budget: float) -> None:
        self.max_chars = max_chars
        self.redactor = redactor
        # Shortcuts for the common case, a redactor with the default rules only.
        self.plain = redactor is not None and redactor.plain
        self.keys = redactor.key_decisions if redactor is not None else None
        self.budget = budget  # a lower bound of the JSON characters still allowed
        self.active: set[int] = set()  # ids of the containers being walked: seeing one again is a cycle
        self.reason: str | None = None
        self.redacted = False

    def lossy(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def value(self, value: Any, key: str, depth: int) -> Jsonable:
        kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
        if kind is str:
            return self.text(value, key)
        if kind is dict:
            return self.mapping(value, key, depth)
        if kind is int:
            self.budget -= 5
            if -_CARD_MIN < value < _CARD_MIN and (self.plain or self.redactor is None):
                return value  # too short to be a card number: the default rules leave it alone
            bits = value.bit_length()
            if bits > _LARGE_INT_BITS:
                self.lossy(f"an int of {bits} bits was recorded as text")
                return self.text(f"<int of {bits} bits>", key)
            return self.leaf(key, value)
        if kind is bool or value is None:
            self.budget -= 5
            return value if self.plain or self.redactor is None else self.leaf(key, value)
        if kind is float:
            self.budget -= 8
            if value - value != 0.0:  # NaN or an infinity: JSON has neither
                value = _float_text(value)
            return value if self.plain or self.redactor is None else self.leaf(key, value)
        if kind is list or kind is tuple:
            return self.sequence(value, len(value), key, depth)
        try:
            return self.other(value, key, depth)
        except Exception:
            self.lossy(f"a value of type {kind.__name__} could not be converted")
            return self.text(f"<unrepresentable {kind.__name__}>", key)

    def leaf(self, key: str, value: Any) -> Jsonable:
        redactor = self.redactor
        if redactor is None:
            return value
        result = redactor.leaf(key, value)
        if result is not value:
            self.redacted = True
        return result

    def text(self, text: str, key: str) -> Jsonable:
        size = len(text)
        if size > self.max_chars or size + 2 > self.budget:
            return self.cut(text, size, key)
        self.budget -= size + 3
        if not text.isascii():
            text = _clean(text)
        if self.plain:
            if not maybe_secret(text):
                return text
            try:
                redacted = redact_with_defaults(text)
            except Exception:  # pragma: no cover - cannot happen for a str; fail closed all the same
                redacted = MASK_ERROR
            if redacted is not text:
                self.redacted = True
            return redacted
        return text if self.redactor is None else self.leaf(key, text)

    def cut(self, text: str, size: int, key: str) -> Jsonable:
        cap = self.max_chars
        if self.budget - 2 < cap:
            cap = max(int(self.budget) - 2, 0)
        redactor = self.redactor
        window = text[: cap + TRUNCATION_MARGIN] if redactor is not None else text[:cap]
        if not window.isascii():
            window = _clean(window)
        safe = len(window)
        if redactor is not None:
            redacted = self.leaf(key, window)
            if type(redacted) is not str:  # a user callable replaced the value, or redaction failed
                return redacted
            # A secret that continues past the window is unmatched in its tail: never keep that tail.
            safe = len(redacted) - TRUNCATION_MARGIN if len(window) < size else len(redacted)
            window = redacted
        dropped = size - (cap + TRUNCATION_MARGIN if redactor is not None else cap)
        dropped = max(dropped, 0)
        keep = max(min(safe, cap - len(_marker(size + len(window)))), 0)
        self.lossy(f"a string of {size} characters was truncated")
        self.budget -= cap + 3
        return window[:keep] + _marker(dropped + len(window) - keep)

    def key_text(self, key: Any) -> str:
        if type(key) is str:
            text = key
        elif key is None or type(key) is bool:
            text = json.dumps(key)
        elif type(key) is int and key.bit_length() <= _LARGE_INT_BITS:
            text = int.__repr__(key)
        elif type(key) is float:
            text = float.__repr__(key) if key - key == 0.0 else _float_text(key)
        elif isinstance(key, enum.Enum) and isinstance(key.value, str):
            text = str.__str__(key.value)
        else:
            self.lossy(f"a mapping key of type {type(key).__name__} was recorded as its repr()")
            text = _safe_repr(key)
        if not text.isascii():
            text = _clean(text)
        return text

    def long_key(self, text: str) -> tuple[bool, str]:
        """A key longer than `max_chars`: whether its value is masked, and the key cut after redaction.

        The key is redacted over a window `TRUNCATION_MARGIN` characters longer than what is kept, so the cut
        never keeps the start of a secret (issue 11).
        """
        self.lossy("a mapping key was truncated")
        keep = self.max_chars - 40
        if self.redactor is None:
            return False, text[:keep] + _marker(len(text) - keep)
        window = text[: keep + TRUNCATION_MARGIN]
        hidden, shown = self.redactor.key(window)
        safe = len(shown) - TRUNCATION_MARGIN if len(window) < len(text) else len(shown)
        cut = max(min(keep, safe), 0)
        return hidden, shown[:cut] + _marker(len(text) - cut)

    def enter(self, value: object, depth: int) -> str | None:
        """The marker to record instead of a container, if it is too deep or already being walked."""
        if depth >= MAX_DEPTH:
            self.lossy("nesting deeper than the depth limit")
            return "<depth limit>"
        if id(value) in self.active:
            self.lossy("a reference cycle")
            return "<cycle>"
        return None

    # A container joins `active` only once it has a child that is not a string: only through such a child can
    # the walk come back to it. Most recorded values are flat, and skip the bookkeeping.

    def mapping(self, value: Mapping[Any, Any], key: str, depth: int, owner: object = None) -> Jsonable:
        """A mapping; `owner` is the object it stands for (a dataclass or model) when that is not `value`."""
        if owner is None:
            owner = value
        if depth >= MAX_DEPTH or id(owner) in self.active:
            return self.enter(owner, depth)
        result: dict[str, Jsonable] = {}
        keys = self.keys
        max_chars = self.max_chars
        remaining = len(value)
        ident = 0
        self.budget -= 2
        try:
            for name, item in value.items():
                if self.budget <= 0:
                    self.lossy("the value exceeded the size limit")
                    result["…"] = f"[truncated {remaining} items]"
                    break
                remaining -= 1
                if type(name) is str and len(name) <= max_chars and name.isascii():
                    name_text = name
                else:
                    name_text = self.key_text(name)
                    if len(name_text) > max_chars:
                        hidden, name_text = self.long_key(name_text)
                        if hidden:
                            self.redacted = True
                            result[name_text] = MASK
                            continue
                self.budget -= len(name_text) + 3
                shown = name_text
                if keys is not None:
                    decision = keys.get(name_text) or self.redactor.key(name_text)  # pyright: ignore[reportOptionalMemberAccess]
                    if decision[0]:
                        self.redacted = True
                        result[decision[1]] = MASK
                        continue
                    shown = decision[1]
                    if shown is not name_text:
                        self.redacted = True
                if type(item) is str:
                    result[shown] = self.text(item, name_text)
                else:
                    if not ident:
                        ident = id(owner)
                        self.active.add(ident)
                    result[shown] = self.value(item, name_text, depth + 1)
        except RuntimeError as exc:
            if "during iteration" not in str(exc):
                raise
            self.lossy("the mapping changed while it was being recorded")  # another thread is mutating it
        finally:
            if ident:
                self.active.discard(ident)
        return result

    def sequence(self, value: Iterable[Any], size: int, key: str, depth: int) -> Jsonable:
        if depth >= MAX_DEPTH or id(value) in self.active:
            return self.enter(value, depth)
        result: list[Jsonable] = []
        remaining = size
        ident = 0
        self.budget -= 2
        try:
            for item in value:
                if self.budget <= 0:
                    self.lossy("the value exceeded the size limit")
                    result.append(f"…[truncated {remaining} items]")
                    break
                remaining -= 1
                self.budget -= 1
                if type(item) is str:
                    result.append(self.text(item, key))
                else:
                    if not ident:
                        ident = id(value)
                        self.active.add(ident)
                    result.append(self.value(item, key, depth + 1))
        except RuntimeError as exc:
            if "during iteration" not in str(exc):
                raise
            self.lossy("the collection changed while it was being recorded")
        finally:
            if ident:
                self.active.discard(ident)
        return result

    def fields(self, value: tuple[Any, ...], names: tuple[Any, ...], key: str, depth: int) -> Jsonable:
        """A named tuple: a list, as any tuple, but each field is redacted under its name (issue 11)."""
        keys = self.keys
        if keys is None or len(names) != len(value):
            return self.sequence(value, len(value), key, depth)
        if depth >= MAX_DEPTH or id(value) in self.active:
            return self.enter(value, depth)
        redactor: Any = self.redactor
        masked = [redactor.key(str(name))[0] for name in names]
        if not any(masked):
            return self.sequence(value, len(value), key, depth)  # the common case: the nearest key as usual
        self.redacted = True
        result: list[Jsonable] = []
        self.active.add(id(value))
        try:
            for name, item, hidden in zip(names, value, masked):
                self.budget -= 1
                result.append(MASK if hidden else self.value(item, str(name), depth + 1))
        finally:
            self.active.discard(id(value))
        return result

    def other(self, value: Any, key: str, depth: int) -> Jsonable:
        """Everything that is not an exact builtin JSON type. May raise: `value()` catches."""
        if isinstance(value, enum.Enum):
            return self.value(value.value, key, depth + 1) if depth < MAX_DEPTH else "<depth limit>"
        if isinstance(value, str):
            return self.text(str.__str__(value), key)
        if isinstance(value, int):
            return self.value(int.__int__(value), key, depth)
        if isinstance(value, float):
            return self.value(float.__float__(value), key, depth)
        if isinstance(value, dict):
            return self.mapping(value, key, depth)  # pyright: ignore[reportUnknownArgumentType]
        cls: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
        if isinstance(value, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
            return self.fields(value, cls._fields, key, depth)  # pyright: ignore[reportUnknownArgumentType]
        if isinstance(value, (list, tuple, deque, range)):
            items: Any = value  # pyright: ignore[reportUnknownVariableType]
            return self.sequence(items, len(items), key, depth)
        if hasattr(cls, "__pydantic_fields__") and callable(getattr(cls, "model_dump", None)):
            return self.model(value, key, depth)
        if dataclasses.is_dataclass(cls) and not isinstance(value, type):
            fields = _dataclass_fields(cls)
            return self.mapping(_Attributes(value, fields), key, depth, owner=value)
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return self.text(value.isoformat(), key)
        if isinstance(value, datetime.timedelta):
            return self.value(value.total_seconds(), key, depth)
        if isinstance(value, PurePath):
            return self.text(str(value), key)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.binary(value, key)
        uuid_module = sys.modules.get("uuid")  # not imported: then no value can be a UUID
        if uuid_module is not None and isinstance(value, uuid_module.UUID):
            return self.text(str(value), key)
        decimal_module = sys.modules.get("decimal")
        if decimal_module is not None and isinstance(value, decimal_module.Decimal):
            return self.text(str(value), key)
        if isinstance(value, (set, frozenset)):
            return self.unordered(value, key, depth)  # pyright: ignore[reportUnknownArgumentType]
        if isinstance(value, Mapping):
            return self.mapping(value, key, depth)  # pyright: ignore[reportUnknownArgumentType]
        if cls.__module__ == "numpy" and hasattr(value, "tolist"):
            if getattr(value, "size", 1) <= max(self.budget, 1):
                converted: Any = value.tolist()  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
                return self.value(converted, key, depth)
        self.lossy(f"a value of type {cls.__name__} was recorded as its repr()")
        return self.text(_safe_repr(value), key)

    def model(self, value: Any, key: str, depth: int) -> Jsonable:
        if depth >= MAX_DEPTH or id(value) in self.active:
            return self.enter(value, depth)
        try:
            dumped = value.model_dump(mode="json")  # fresh data: it cannot lead back to `value`
        except Exception:  # a custom serialiser raised, or the model holds a cycle: walk its fields instead
            names: list[Any] = list(getattr(value, "__pydantic_fields__", ()))
            fields = tuple(str(name) for name in names)
            return self.mapping(_Attributes(value, fields), key, depth, owner=value)
        return self.value(dumped, key, depth)

    def binary(self, value: Any, key: str) -> Jsonable:
        size: int = value.nbytes if isinstance(value, memoryview) else len(value)  # pyright: ignore[reportUnknownMemberType]
        head = bytes(value[: self.max_chars + TRUNCATION_MARGIN])  # pyright: ignore[reportUnknownArgumentType]
        if size <= self.max_chars:
            try:
                return self.text(head.decode("utf-8"), key)
            except UnicodeDecodeError:
                pass
        if self.redactor is not None:
            # Base64 would carry a secret past redaction (it decodes back to the key: issue 11). Bytes that
            # hold one are recorded as text, undecodable bytes escaped, and redacted as text.
            view = head.decode("utf-8", "backslashreplace")
            if self.redactor.leaf(key, view) != view:
                self.lossy("bytes holding a secret were recorded as redacted text")
                return self.text(view if size <= len(head) else view + _marker(size - len(head)), key)
        head = head[: self.max_chars]
        self.lossy("bytes were recorded as base64" if size <= self.max_chars else "bytes were truncated")
        text = "base64:" + base64.b64encode(head[: (self.max_chars * 3) // 4]).decode("ascii")
        if size > self.max_chars:
            text = text[: self.max_chars - 40] + f"…[truncated {size - len(head)} bytes]"
        return self.text(text, key)

    def unordered(self, value: set[Any] | frozenset[Any], key: str, depth: int) -> Jsonable:
        limit = len(value) if self.budget >= len(value) else max(int(self.budget), 0) + 1
        items = list(islice(value, limit))
        try:
            items.sort()
        except Exception:  # items of different types: keep iteration order
            pass
        return self.sequence(items, len(value), key, depth)


class _Attributes(Mapping[str, Any]):
    """A dataclass's or model's fields as a read-only mapping, read lazily (only those within the budget)."""

    __slots__ = ("fields", "obj")

    def __init__(self, obj: Any, fields: tuple[str, ...]) -> None:
        self.obj = obj
        self.fields = fields

    def __getitem__(self, name: str) -> Any:
        return getattr(self.obj, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        obj = self.obj
        return ((name, getattr(obj, name, None)) for name in self.fields)


def _float_text(value: float) -> str:
    return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """A value converted for recording, and whether replay could call the function with it again.

    Attributes:
        data: JSON-compatible data (dicts, lists, strings, numbers, booleans, `None`).
        replayable: `False` when something was lost on the way: a value recorded as its `repr()`, a truncated
            string or container, a reference cycle, the depth limit.
        reason: The first loss, in words, when not replayable.
        redacted: Whether redaction changed anything (the data then differs from the call's real input).
    """

    data: Jsonable
    replayable: bool
    reason: str | None = None
    redacted: bool = False


class EncodedText:
    """Plain data converted straight to its JSON text, with nothing cut and nothing redacted (`encode_plain`).

    What the hot path hands the capture writer instead of an `Encoded`: one string to keep while queued, parsed in
    the writer thread (`decoded()`), and recorded on the span as it is. A plain class, not a frozen dataclass: one
    is made per traced call, and a frozen dataclass's `__init__` costs three times as much (issue 11).

    Attributes:
        text: The JSON text (never reassigned).
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"EncodedText({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is EncodedText and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def decoded(self) -> Encoded:
        """The `Encoded` form: the parsed data, replayable, not redacted."""
        return Encoded(json.loads(self.text), True)


def _limit(max_chars: int) -> int:
    return max_chars if max_chars >= MIN_MAX_CHARS else MIN_MAX_CHARS


def encode(
    value: Any, *, max_chars: int, redactor: Redactor | None = None, max_total_chars: int | None = None
) -> Encoded:
    """Convert a value to JSON-compatible data, noting whether it can be replayed. Never raises.

    Args:
        value: Anything.
        max_chars: Longest string kept (at least `MIN_MAX_CHARS`); longer ones are truncated with a marker.
        redactor: Redact while converting (recommended: the cut of a long string then never splits a secret).
        max_total_chars: Rough budget for the whole value's JSON size; containers past it are cut with a
            marker. `None`: only strings are limited.

    Returns:
        The data, and whether (and why not) it is replayable.
    """
    limit = _limit(max_chars)
    walk = _Walk(limit, redactor, float("inf") if max_total_chars is None else max_total_chars)
    try:
        data = walk.value(value, "", 0)
    except Exception:  # a bug of ours: every user-code call in the walk is guarded
        log_internal_error("value serialisation")
        return Encoded(f"<unrepresentable {type(value).__name__}>", False, "serialisation failed")
    return Encoded(data, walk.reason is None, walk.reason, walk.redacted)


def to_jsonable(value: Any, *, max_chars: int, redactor: Redactor | None = None) -> Jsonable:
    """Convert a value to JSON-compatible data (see the module documentation for each type). Never raises.

    Args:
        value: Anything.
        max_chars: Longest string kept (at least `MIN_MAX_CHARS`); longer ones are truncated with a marker.
        redactor: Redact while converting.

    Returns:
        Dicts, lists, strings, numbers, booleans and `None`.
    """
    return encode(value, max_chars=max_chars, redactor=redactor).data


def dumps_for_span(value: Any, *, max_chars: int, redactor: Redactor | None) -> str:
    """The JSON text recorded on a span for a value: redacted, compact, at most `max_chars` long. Never raises.

    Args:
        value: Anything (the bound inputs as a dict, or the output).
        max_chars: Longest text returned (at least `MIN_MAX_CHARS`). A value whose JSON is longer has its strings
            and containers cut with markers; if escaping still makes it too long, the JSON text itself is cut
            and returned as a JSON string ending in the marker, so the result is always valid JSON.
        redactor: The redactor (`redactor_for(settings)`); `None` records values unredacted.

    Returns:
        JSON text.
    """
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    try:
        limit = max_chars if max_chars >= MIN_MAX_CHARS else MIN_MAX_CHARS
        if kind is str and len(value) < limit - 2:  # the common output: one short string
            text: Any = value if value.isascii() else _clean(value)
            if redactor is not None and (not redactor.plain or maybe_secret(text)):
                text = redactor.leaf("", text)
                if type(text) is not str:  # a user callable made it a number, or redaction failed
                    return _to_json(_Walk(limit, None, limit).value(text, "", 0))
            encoded = _encode_str(text)
            if len(encoded) <= limit:
                return encoded
        if kind is dict and redactor is not None and redactor.plain:
            flat = _plain_text(value, limit, redactor)
            if flat is not None:
                return flat
        text = _to_json(_Walk(limit, redactor, limit).value(value, "", 0))
        return text if len(text) <= limit else _refit(value, text, limit, redactor)
    except Exception:
        log_internal_error("value serialisation")
        return _encode_str(f"<unrepresentable {kind.__name__}>")


def dumps_encoded(encoded: Encoded | EncodedText, *, max_chars: int) -> str:
    """The span text of a value `encode()`d already (converted, redacted): one conversion for span and capture.

    The data is only serialised; when its JSON is longer than `max_chars` it is cut like `dumps_for_span` cuts,
    without redacting again (cutting redacted text reveals nothing). Never raises.

    Args:
        encoded: What `encode(value, redactor=...)` returned (with any string limit of at least `max_chars`).
        max_chars: Longest text returned (at least `MIN_MAX_CHARS`).

    Returns:
        JSON text, the same as `dumps_for_span(value, ...)` when the value fits.
    """
    if isinstance(encoded, EncodedText):
        if len(encoded.text) <= _limit(max_chars):
            return encoded.text
        encoded = encoded.decoded()
    data = encoded.data
    try:
        text = _to_json(data)
        limit = _limit(max_chars)
        return text if len(text) <= limit else dumps_for_span(data, max_chars=limit, redactor=None)
    except Exception:
        log_internal_error("value serialisation")
        return _encode_str(f"<unrepresentable {type(data).__name__}>")


_NOT_A_KEY: Final = (True, "")  # the decision for a key that is not an exact `str`: not plain
_NOT_PLAIN: Final = object()


def _plain_copy(value: Any, limit: int, redactor: Redactor, depth: int) -> Any:
    """`value`, its containers copied, when it is plain data the default rules leave as it is; else `_NOT_PLAIN`.

    Plain: exact `str`, small `int`, `float`, `bool`, `None`, and exact `dict` (`str` keys), `list` and `tuple` of
    those, three levels deep and 16 items wide at most; no key masked or redacted, no string a rule changes. Each
    container is copied at once (in C) before it is checked, and the copy is what gets encoded: an argument another
    thread changes meanwhile cannot slip an unchecked value into the text. One pass in Python over the containers;
    the text is made by `plain_encoder`, in C (`_plain_text`).
    """
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    items: Any
    if kind is dict:
        if depth >= 3 or len(value) > 16:
            return _NOT_PLAIN
        value = value.copy()
        decisions = redactor.key_decisions
        for name in value:
            decision = decisions.get(name) if type(name) is str else _NOT_A_KEY
            if decision is None:
                decision = redactor.key(name)
            # Masked, or the key's own text redacted (an unchanged key is cached as the first object seen): the walk.
            if decision[0] or (decision[1] is not name and decision[1] != name):
                return _NOT_PLAIN
        items = value.items()
    elif kind is list or kind is tuple:
        if depth >= 3 or len(value) > 16:
            return _NOT_PLAIN
        value = list(value)  # a tuple's text is a list's
        items = enumerate(value)
    else:
        items = ((None, value),)
    for slot, item in items:
        kind = type(item)  # pyright: ignore[reportUnknownVariableType]
        if kind is str:
            # Length first: a string too long for the text is cut by the walk before it is redacted (issue 11). Under
            # five characters no default rule matches (`maybe_secret`'s own first test, without the call).
            size = len(item)
            if size * 4 >= limit or (size >= 5 and maybe_secret(item) and redact_with_defaults(item) is not item):
                return _NOT_PLAIN
        elif kind is int:
            if not -_CARD_MIN < item < _CARD_MIN:  # could be a card number: the walk checks
                return _NOT_PLAIN
        elif kind is dict or kind is list or kind is tuple:
            copy = _plain_copy(item, limit, redactor, depth + 1)
            if copy is _NOT_PLAIN:
                return _NOT_PLAIN
            value[slot] = copy  # a key or position already there: the container keeps its size
        elif kind is float:
            # Written without an exponent, alike by every encoder `plain_encoder` may pick; NaN and infinities
            # (the walk records them as text) fail the test too.
            if not (1e-4 <= abs(item) < 1e16 or item == 0.0):
                return _NOT_PLAIN
        elif not (kind is bool or item is None):
            return _NOT_PLAIN
    return value


def _plain_text(value: Any, limit: int, redactor: Redactor) -> str | None:
    """`value`'s JSON text, exactly as the walk would make it, when it is plain data (`_plain_copy`); else `None`.

    The length test keeps the walk's budget: it charges at most 4 per character of the text plus 6 (a number costs
    it more than its digits), so within `limit / 4` characters nothing is cut; non-ASCII text (which the walk
    cleans) goes the general way.
    """
    copy = _plain_copy(value, limit, redactor, 0)
    if copy is _NOT_PLAIN:
        return None
    try:
        text = _plain_json(copy)
    except Exception:  # a lone surrogate: orjson refuses it, the walk replaces it
        return None
    return text if len(text) * 4 + 8 < limit and text.isascii() else None


def encode_plain(value: Any, *, max_chars: int, redactor: Redactor) -> EncodedText | None:
    """`value` as JSON text when it is plain data needing no conversion, no cut and no redaction; else `None`.

    Plain data: see `_plain_copy`. Under the default rules only (`redactor.plain`); a value the rules would change
    anywhere (a masked key, a secret in a string) returns `None`, and the caller goes the general way (`encode`).
    Never raises.

    Args:
        value: Anything.
        max_chars: The smallest string and total limit that applies (the span's and the capture's).
        redactor: The redactor.

    Returns:
        The text, or `None`.
    """
    if not redactor.plain:
        return None
    try:
        text = _plain_text(value, max_chars, redactor)
        # Every mask contains "[REDACTED": a user's own "[REDACTED" goes the general way, which knows.
        return EncodedText(text) if text is not None and "[REDACTED" not in text else None
    except Exception:  # another thread changed a container while it was read; the general way decides
        return None


def bounded_text(text: str, max_chars: int, redactor: Redactor, masked: Iterable[str] = ()) -> str:
    """Free text (an exception message, a stack trace) redacted and cut to at most `max_chars`. Never raises.

    Cut first, redact after, over a window `TRUNCATION_MARGIN` characters longer than what is kept: a huge
    message costs no more than a short one, and the cut never keeps the start of a secret (issue 11).

    Args:
        text: The text.
        max_chars: Longest text returned (at least `MIN_MAX_CHARS`), the truncation marker included.
        redactor: The redactor.
        masked: Values to mask wherever they occur (see `Redactor.masked_values`).

    Returns:
        The redacted text, ending in a truncation marker if it was cut.
    """
    limit = _limit(max_chars)
    size = len(text)
    if size <= limit:
        return redactor.redact_text(text, masked)
    window = redactor.redact_text(text[: limit + TRUNCATION_MARGIN], masked)
    keep = max(min(len(window) - TRUNCATION_MARGIN, limit - len(_marker(size))), 0)
    return window[:keep] + _marker(size - limit - TRUNCATION_MARGIN + len(window) - keep)


def _refit(value: Any, text: str, limit: int, redactor: Redactor | None) -> str:
    """Walk again with a smaller budget: escaping made the JSON longer than the walk estimated."""
    budget = float(limit)
    for _attempt in range(2):
        budget = budget * limit / len(text) * 0.9
        text = _to_json(_Walk(limit, redactor, budget).value(value, "", 0))
        if len(text) <= limit:
            return text
    return _json_string_cut(text, limit)


def _json_string_cut(text: str, limit: int) -> str:
    """`text` (already redacted) cut and encoded as one JSON string of at most `limit` characters."""
    keep = limit - 2 - len(_marker(len(text)))
    while keep > 0:
        encoded = _encode_str(text[:keep] + _marker(len(text) - keep))
        if len(encoded) <= limit:
            return encoded
        keep -= len(encoded) - limit
    return _encode_str(_marker(len(text)))
