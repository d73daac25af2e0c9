"""Compact JSON encoders built once: `json.dumps` with options builds an encoder per call, half its cost."""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any

__all__ = ["compact_encoder", "plain_decoder", "plain_encoder"]


def _unsupported(value: Any) -> Any:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def compact_encoder(*, sort_keys: bool = False) -> Callable[[Any], str]:
    """A function turning JSON data into compact text, as `json.dumps` would at a third of its cost.

    The text of `json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=...)`.

    Args:
        sort_keys: Sort every object's keys (canonical text).

    Returns:
        The encoder; it raises `TypeError` for what JSON cannot hold and `ValueError` for NaN and infinities.
    """
    make: Any = getattr(json_encoder, "c_make_encoder", None)  # private, hence looked up defensively
    if make is not None:
        try:
            iterencode: Any = make(
                None, _unsupported, json_encoder.encode_basestring, None, ":", ",", sort_keys, False, False
            )
            iterencode({"a": [1, 2.5, None, True, "x"]}, 0)
        except Exception:  # pragma: no cover - a Python whose private C encoder differs
            pass
        else:
            return lambda data: "".join(iterencode(data, 0))
    return json.JSONEncoder(  # pragma: no cover - PyPy
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=sort_keys, default=_unsupported
    ).encode


def plain_encoder(*, sort_keys: bool = False) -> Callable[[Any], str]:
    """The fastest encoder at hand for plain data: orjson where it is installed (CPython), else `compact_encoder()`.

    For exact `str`, `int` (64-bit), `bool`, `None`, `dict` with `str` keys, `list` and `tuple`, and floats written
    without an exponent (1e-4 <= |x| < 1e16, or 0), both give the same text: orjson encodes such a value in about
    0.2 µs, the standard library's C encoder in about 1.4 µs (issue 11). Other values may come out differently:
    the caller checks first (`_serialize._plain_copy`). Sorted keys come out alike too: orjson orders them by their
    UTF-8 bytes, which is code point order, the standard library's.

    Args:
        sort_keys: Sort every object's keys (canonical text: the capture writer hashes it).

    Returns:
        The encoder; it raises for what it cannot encode.
    """
    try:
        from orjson import OPT_SORT_KEYS, dumps
    except ImportError:  # pragma: no cover - PyPy, or an installation without it
        return compact_encoder(sort_keys=sort_keys)
    if sort_keys:
        return lambda data: dumps(data, option=OPT_SORT_KEYS).decode()
    return lambda data: dumps(data).decode()


def plain_decoder() -> Callable[[str], Any]:
    """The fastest parser at hand for `plain_encoder`'s text: orjson's (a fifth of `json.loads`), else the standard one.

    Both give the same data for such text (no floats beyond what `plain_encoder` admits, no duplicate keys).

    Returns:
        The parser.
    """
    try:
        from orjson import loads
    except ImportError:  # pragma: no cover - PyPy, or an installation without it
        return json.loads
    return loads
