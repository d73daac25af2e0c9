"""`CaptureRecord`: one tracked call as stored, and how its id is made.

Every value in a record has already been through redaction (fail-closed) and size limits: `inputs`, `output`,
`error_message` never hold what the default or configured rules mask.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import random
import threading
from typing import Any

from .._json import compact_encoder

__all__ = ["CaptureRecord", "canonical_json", "input_hash", "uuid7"]


@dataclasses.dataclass(slots=True)
class CaptureRecord:
    """One captured call of a tracked function.

    Attributes:
        id: Time-ordered unique id (UUIDv7 text): sorting by id sorts by call start.
        timestamp: When the call started (UTC, timezone-aware).
        function: `module:qualname` of the tracked function.
        prompt_name: Registry name of the prompt the call used.
        prompt_version: Its version number (`0` for a `fallback=` template).
        prompt_alias: The alias it was resolved through, if any.
        prompt_source: Where the copy came from: `registry`, `cache`, `disk` or `fallback`.
        inputs: The call's arguments by parameter name (without the injected `prompt` and `self`/`cls`), as
            JSON data, redacted and size-limited.
        replayable: Whether `inputs` can be passed to the function again as they are (nothing was lost on
            the way: no `repr()` stand-in, truncation, cycle or depth limit).
        replay_reason: Why not, when `replayable` is false.
        output: The return value as JSON data (a stream's items joined: strings concatenated, else a list);
            `None` when the call raised.
        error_type: The exception's type (`module.QualName`, builtins without module) when the call raised.
        error_message: The exception's message, redacted.
        latency_ms: Wall time of the call (until the stream ended, for generators), in milliseconds.
        first_item_ms: Time to a stream's first item, in milliseconds.
        trace_id: The OpenTelemetry trace id (32 hex digits) of the call's span, when one was recording.
        span_id: The span id (16 hex digits).
        tags: Tags given to `@promptops.track`.
        app_version: The `app_version` setting when the call was made.
        input_hash: SHA-256 (hex) of `canonical_json(inputs)`, for de-duplication.
        redacted: Whether redaction changed anything in `inputs`, `output` or `error_message`.
        input_tokens: Tokens the call's model requests used, when the call reported them (`record_usage()`, or
            a returned OpenAI/Anthropic/LangChain response); summed over its model calls. `None`: not known.
        output_tokens: Tokens generated, likewise.
        model: The model that answered (the last one reported).
        provider: Who served it (`openai`, `anthropic`, ...), when known.
    """

    id: str
    timestamp: datetime.datetime
    function: str
    prompt_name: str | None
    prompt_version: int | None
    prompt_alias: str | None
    prompt_source: str | None
    inputs: dict[str, Any]
    replayable: bool
    replay_reason: str | None
    output: Any
    error_type: str | None
    error_message: str | None
    latency_ms: float
    first_item_ms: float | None
    trace_id: str | None
    span_id: str | None
    tags: dict[str, str]
    app_version: str | None
    input_hash: str
    redacted: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-compatible data (the timestamp as ISO 8601 text), e.g. for export."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["timestamp"] = self.timestamp.isoformat()
        return data


def canonical_json(data: Any) -> str:
    """Compact JSON with sorted keys: equal data gives equal text (the input hash is taken over it).

    Args:
        data: JSON-compatible data.

    Returns:
        The JSON text.
    """
    return canonical_text(data)


canonical_text = compact_encoder(sort_keys=True)
dumps_value = compact_encoder()
"""The stored form of a record's JSON values (compact, keys in their order)."""


def usage_values(
    input_tokens: int | None, output_tokens: int | None, model: str | None, provider: str | None
) -> tuple[int | None, int | None, str | None, str | None]:
    """The usage columns' values: the tokens, and model and provider cut to their columns' widths."""
    return (
        input_tokens,
        output_tokens,
        column_text(model[:256]) if model is not None else None,
        column_text(provider[:64]) if provider is not None else None,
    )


def column_text(value: str | None) -> str | None:
    """A plain text column's value: PostgreSQL text cannot hold NUL (a JSON value escapes it; plain columns need this)."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def input_hash(inputs: Any) -> str:
    """SHA-256 hex digest of `canonical_json(inputs)`.

    Args:
        inputs: The record's (already redacted) inputs.

    Returns:
        64 hex digits.
    """
    return hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()


_id_lock = threading.Lock()
_last_id = 0  # the last id's 80 time-ordered bits (48 ms + 12 sub-ms + 20 counter); ids of one process increase


def uuid7(unix_ns: int) -> str:
    """A UUID version 7 (RFC 9562) for an instant, as text; strictly increasing within a process.

    48 bits of Unix milliseconds, then 12 bits of sub-millisecond fraction (RFC 9562 method 3), then a counter
    and random bits. Two ids asked for the same instant still differ and keep their order.

    Args:
        unix_ns: The instant, in nanoseconds since the Unix epoch.

    Returns:
        `xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx`.
    """
    global _last_id
    millis, rest = divmod(max(unix_ns, 0), 1_000_000)
    stamp = ((millis & 0xFFFF_FFFF_FFFF) << 32) | ((rest * 4096 // 1_000_000) << 20)
    with _id_lock:
        if stamp <= _last_id:
            stamp = _last_id + 1
        _last_id = stamp
    ms = stamp >> 32
    sub = (stamp >> 20) & 0xFFF
    counter = stamp & 0xFFFFF
    low = (counter << 42) | random.getrandbits(42)  # 62 bits after the variant
    value = (ms << 80) | (0x7 << 76) | (sub << 64) | (0b10 << 62) | low
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _after_fork_in_child() -> None:
    global _id_lock
    _id_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
