"""The promptops internals this package reuses, in one place.

Spans and captures of LangChain runs must look exactly like those of `@promptops.track`: same attribute names,
same redaction and size limits, same exception events, same capture writer. promptops-langchain is released in
step with promptops (`promptops>=0.1,<0.2`), so it may lean on these; nothing else in the package imports a
private promptops module.
"""

from __future__ import annotations

from typing import Any

from promptops import Settings
from promptops._errors import log_internal_error  # pyright: ignore[reportPrivateUsage]
from promptops._redact import redactor_for  # pyright: ignore[reportPrivateUsage]
from promptops._serialize import dumps_for_span  # pyright: ignore[reportPrivateUsage]
from promptops._span import (  # pyright: ignore[reportPrivateUsage]
    FUNCTION,
    GEN_AI_FINISH_REASONS,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OPERATION,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    INPUTS,
    OUTPUT,
    REPLAY,
    STREAM_FIRST_ITEM_MS,
    STREAM_ITEMS,
    prompt_identity_attributes,
    record_exception,
)
from promptops._usage import Usage, report_usage  # pyright: ignore[reportPrivateUsage]

__all__ = [
    "FUNCTION",
    "GEN_AI_FINISH_REASONS",
    "GEN_AI_INPUT_TOKENS",
    "GEN_AI_OPERATION",
    "GEN_AI_OUTPUT_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_RESPONSE_MODEL",
    "INPUTS",
    "OUTPUT",
    "REPLAY",
    "STREAM_FIRST_ITEM_MS",
    "STREAM_ITEMS",
    "Usage",
    "dump",
    "log_internal_error",
    "prompt_identity_attributes",
    "record_exception",
    "report_usage",
]


def dump(settings: Settings, value: Any) -> str:
    """A value as span attribute text: JSON, redacted with the settings' rules, at most `max_value_chars` long."""
    return dumps_for_span(value, max_chars=settings.max_value_chars, redactor=redactor_for(settings))
