"""Token usage of one call, as the call reports it (issue 13: tokens and cost; issue 14: per rollout arm).

Replay sets `usage_sink` to a fresh `Usage` around each call it makes, and so does `@promptops.track` around
a call whose capture record is kept. `promptops.record_usage()` and the LangChain callback handler add what
they see to it (`report_usage`); when nothing was reported, the usage of the response object the function
returned is read, if it is one (`usage_of`: OpenAI chat completions and responses, Anthropic messages,
LangChain messages), duck-typed, without importing any SDK. Elsewhere the sink is unset and reporting costs
one context-variable read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

__all__ = ["Usage", "UsageSink", "passed_on", "report_usage", "usage_of", "usage_sink"]


@dataclasses.dataclass(slots=True)
class Usage:
    """Tokens a call used, summed over the model calls it reported, and the model that answered.

    Attributes:
        input_tokens: Tokens in the requests.
        output_tokens: Tokens generated.
        model: The model (the last one reported).
        reports: How many model calls were reported.
        provider: Who served the model (the last one reported), when known.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    reports: int = 0
    provider: str | None = None

    def add(
        self, input_tokens: int | None, output_tokens: int | None, model: str | None, provider: str | None = None
    ) -> None:
        """Count one model call."""
        self.input_tokens += max(0, int(input_tokens or 0))
        self.output_tokens += max(0, int(output_tokens or 0))
        if model:
            self.model = model
        if provider:
            self.provider = provider
        self.reports += 1


class UsageSink(Protocol):
    """What `report_usage` adds to: a `Usage` (a replayed call), or a tracked call whose record is kept."""

    def add(
        self, input_tokens: int | None, output_tokens: int | None, model: str | None, provider: str | None = None
    ) -> None:
        """Count one model call."""


usage_sink: ContextVar[UsageSink | None] = ContextVar("promptops_usage", default=None)


def passed_on(token: Token[UsageSink | None], usage: Usage) -> None:
    """Add a nested call's usage to the sink that was in force before it (the enclosing call's), if any.

    Args:
        token: What setting the nested call's sink returned.
        usage: What the nested call reported.
    """
    outer = token.old_value
    if outer is not Token.MISSING and outer is not None:
        outer.add(usage.input_tokens, usage.output_tokens, usage.model, usage.provider)


def report_usage(
    input_tokens: int | None, output_tokens: int | None, model: str | None, provider: str | None = None
) -> None:
    """Add one model call's usage to the call in progress (a replayed call, or a captured tracked call)."""
    sink = usage_sink.get()
    if sink is not None and (input_tokens is not None or output_tokens is not None):
        sink.add(input_tokens, output_tokens, model, provider)


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
    `usage_metadata`; the model from `response.model` or the message's `response_metadata`; the provider from
    the SDK that made the object (`openai`, `anthropic`) or the message's `model_provider`.
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
    metadata = getattr(response, "response_metadata", None)
    if not isinstance(model, str):
        model = _field(metadata, "model_name", "model") if isinstance(metadata, Mapping) else None
    provider = _field(metadata, "model_provider") if isinstance(metadata, Mapping) else None
    if not isinstance(provider, str):
        package = (type(response).__module__ or "").partition(".")[0]
        provider = package if package in _PROVIDER_PACKAGES else None
    found = Usage()
    found.add(input_tokens, output_tokens, model if isinstance(model, str) else None, provider)
    return found


# SDKs whose response objects name their provider by the package that defines them.
_PROVIDER_PACKAGES = frozenset({"openai", "anthropic"})
