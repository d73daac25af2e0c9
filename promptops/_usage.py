"""Token usage of one replayed call, as the call reports it (issue 13: tokens and cost).

Replay sets `usage_sink` to a fresh `Usage` around each call it makes. `promptops.record_usage()` and the
LangChain callback handler add what they see to it (`report_usage`); when nothing was reported, replay reads
the usage of the response object the function returned, if it is one (`usage_of`: OpenAI chat completions and
responses, Anthropic messages, LangChain messages), duck-typed, without importing any SDK. Outside a replay
the sink is unset and reporting costs one context-variable read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["Usage", "report_usage", "usage_of", "usage_sink"]


@dataclasses.dataclass(slots=True)
class Usage:
    """Tokens a call used, summed over the model calls it reported, and the model that answered.

    Attributes:
        input_tokens: Tokens in the requests.
        output_tokens: Tokens generated.
        model: The model (the last one reported).
        reports: How many model calls were reported.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    reports: int = 0

    def add(self, input_tokens: int | None, output_tokens: int | None, model: str | None) -> None:
        """Count one model call."""
        self.input_tokens += max(0, int(input_tokens or 0))
        self.output_tokens += max(0, int(output_tokens or 0))
        if model:
            self.model = model
        self.reports += 1


usage_sink: ContextVar[Usage | None] = ContextVar("promptops_usage", default=None)


def report_usage(input_tokens: int | None, output_tokens: int | None, model: str | None) -> None:
    """Add one model call's usage to the replayed call in progress (nothing outside a replay)."""
    sink = usage_sink.get()
    if sink is not None and (input_tokens is not None or output_tokens is not None):
        sink.add(input_tokens, output_tokens, model)


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _field(holder: Any, *names: str) -> Any:
    for name in names:
        if isinstance(holder, Mapping):
            mapping: Mapping[str, Any] = holder  # pyright: ignore[reportUnknownVariableType]
            value = mapping.get(name)
        else:
            value = getattr(holder, name, None)
        if value is not None:
            return value
    return None


def usage_of(response: Any) -> Usage | None:
    """The usage a provider's response object carries, or `None` when it is not one.

    Reads `response.usage` with `prompt_tokens`/`completion_tokens` (OpenAI chat completions) or
    `input_tokens`/`output_tokens` (OpenAI responses, Anthropic messages), and a LangChain message's
    `usage_metadata`; the model from `response.model` or the message's `response_metadata`.
    """
    if response is None or isinstance(response, str | bytes | int | float | bool | list | tuple | dict):
        return None
    usage = getattr(response, "usage_metadata", None) or getattr(response, "usage", None)
    if usage is None:
        return None
    input_tokens = _number(_field(usage, "input_tokens", "prompt_tokens"))
    output_tokens = _number(_field(usage, "output_tokens", "completion_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    model = getattr(response, "model", None)
    if not isinstance(model, str):
        metadata = getattr(response, "response_metadata", None)
        model = _field(metadata, "model_name", "model") if isinstance(metadata, Mapping) else None
    found = Usage()
    found.add(input_tokens, output_tokens, model if isinstance(model, str) else None)
    return found
