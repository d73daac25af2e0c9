"""Token usage of one call, as the call reports it (issue 13: tokens and cost; issue 14: per rollout arm).

Replay sets `usage_sink` to a fresh `Usage` around each call it makes, and so does `@promptops.track` around
a call whose capture record is kept (around each step of a captured stream: `StreamUsage`). `promptops.record_usage()` and the LangChain callback handler add what
they see to it (`report_usage`); when nothing was reported, the usage of the response object the function
returned is read, if it is one (`usage_of`: OpenAI chat completions and responses, Anthropic messages,
LangChain messages), duck-typed, without importing any SDK. Elsewhere the sink is unset and reporting costs
one context-variable read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

from ._prices import PRICES_AS_OF

__all__ = [
    "StreamUsage",
    "Usage",
    "UsageCollector",
    "UsageSink",
    "UsageTotals",
    "passed_on",
    "report_usage",
    "sum_usage",
    "usage_line",
    "usage_of",
    "usage_sink",
    "usd",
]


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


class UsageCollector:
    """A usage sink that keeps what is reported to it in `usage`: a tracked call's, a stream's (issue 14).

    Attributes:
        usage: What was reported, `None` until something is.
    """

    __slots__ = ("usage",)

    def __init__(self) -> None:
        """An empty sink."""
        self.usage: Usage | None = None

    def add(
        self, input_tokens: int | None, output_tokens: int | None, model: str | None, provider: str | None = None
    ) -> None:
        """Count one model call."""
        usage = self.usage
        if usage is None:
            usage = self.usage = Usage()
        usage.add(input_tokens, output_tokens, model, provider)


class StreamUsage(UsageCollector):
    """The usage sink of one captured stream (a tracked generator's call; issue 14).

    Set around each step of the stream, so what is reported while the generator runs lands in the stream's record
    and, as it is reported, in the sink of whoever drives that step (an enclosing tracked call), as a nested call's
    usage does (`passed_on`).

    Attributes:
        usage: What the stream reported, `None` until it reports something.
        outer: The sink in force around the step being run (`Token.MISSING`: none), which `_track._enter` stores
            from the token of setting this one, once per step.
    """

    __slots__ = ("outer",)

    def __init__(self) -> None:
        """An empty sink."""
        super().__init__()
        self.outer: Any = None

    def add(
        self, input_tokens: int | None, output_tokens: int | None, model: str | None, provider: str | None = None
    ) -> None:
        """Count one model call for the stream, and for the sink around it."""
        super().add(input_tokens, output_tokens, model, provider)
        outer = self.outer
        if outer is not None and outer is not Token.MISSING:
            outer.add(input_tokens, output_tokens, model, provider)

    def ended(self, last: Any) -> Usage | None:
        """What the stream used: what it reported, else the usage its last item carries, if any.

        That is an OpenAI stream's final chunk with `stream_options={"include_usage": True}`, yielded as it is; the
        usage found there counts for the sink around the stream too.
        """
        if self.usage is None:
            found = usage_of(last)
            if found is not None:
                self.add(found.input_tokens, found.output_tokens, found.model, found.provider)
        return self.usage


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


@dataclasses.dataclass(slots=True)
class UsageTotals:
    """Tokens and cost of a set of calls: one side of a replay (issue 13), one arm of a rollout (issue 14).

    Attributes:
        calls: Calls that reported usage.
        input_tokens: Their input tokens.
        output_tokens: Their output tokens.
        cost: Their cost in USD by the price table; `None` when none of them could be priced.
        unpriced_models: Models of calls the price table has no price for (left out of `cost`).
        prices_as_of: When the shipped default prices were taken (the `prices` setting overrides them).
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    unpriced_models: list[str] = dataclasses.field(default_factory=list[str])
    prices_as_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (the `usage` entries of `ReplayResult.to_json()`)."""
        return dataclasses.asdict(self)


def sum_usage(calls: Iterable[tuple[int, int, str | None, float | None]]) -> UsageTotals:
    """Tokens and cost summed over calls that reported usage; the unpriced models named.

    Args:
        calls: Per call: input tokens, output tokens, model, cost (`None`: the model has no price).
    """
    total = UsageTotals(prices_as_of=PRICES_AS_OF)
    unpriced: set[str] = set()
    for input_tokens, output_tokens, model, cost in calls:
        total.calls += 1
        total.input_tokens += input_tokens
        total.output_tokens += output_tokens
        if cost is not None:
            total.cost = (total.cost or 0.0) + cost
        else:
            unpriced.add(model or "(no model named)")
    total.unpriced_models = sorted(unpriced)
    return total


def usd(value: float) -> str:
    """Dollars with enough digits for a fraction of a cent: `$0.000123`, `$1.23`."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}" if value > 0 else "$0"


def usage_line(usage: Mapping[str, UsageTotals], spent: float | None = None) -> str:
    """One line of tokens and cost per side, what the run spent (if given), and the date of the default prices."""
    parts: list[str] = []
    for side, total in usage.items():
        cost = "" if total.cost is None else f", {usd(total.cost)}"
        unpriced = f" (no price for {', '.join(total.unpriced_models)})" if total.unpriced_models else ""
        parts.append(
            f"{side}: {total.input_tokens:,} in / {total.output_tokens:,} out tokens in {total.calls:,} calls"
            f"{cost}{unpriced}"
        )
    spent_text = "" if spent is None else f"; this run spent {usd(spent)}"
    return "tokens " + "; ".join(parts) + spent_text + f" (default prices of {PRICES_AS_OF})"
