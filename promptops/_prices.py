"""Model prices: what a call's tokens cost, per model, in USD per million input and output tokens (issue 13).

A small table of common models ships as the default (`DEFAULT_PRICES`, list prices as of `PRICES_AS_OF`);
the `prices` setting (`configure(prices=...)`, `PROMPTOPS_PRICES`, `[tool.promptops.prices]`) adds models or
replaces their prices. Replay uses it for the `cost` metric and `--max-cost`; the rollout status may use it too,
which is why it lives here, stdlib only, and not under `replay/` (which brings numpy and the scorers).

A model name is looked up as given, then without a `provider/` prefix, then by the longest table entry it starts
with followed by `-` or `@`, so dated snapshots (`gpt-4o-mini-2024-07-18`, `claude-3-5-haiku-20241022`) find
their family's price.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "Price", "PriceTable", "parse_prices"]


class Price(NamedTuple):
    """What a model charges, in USD per million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost in USD of a call with these token counts."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


PRICES_AS_OF: Final = "2025-11"
"""When `DEFAULT_PRICES` were taken from the providers' published list prices (standard tier, no batch or
cache discounts). On 2026-12-06 every entry that MLflow 3.17.2's bundled model catalog lists for the provider itself
(18 of 23) agreed with it; a test keeps that check. Prices change: override the ones you use with the `prices`
setting."""

DEFAULT_PRICES: Final[Mapping[str, Price]] = {
    # OpenAI
    "gpt-5": Price(1.25, 10.0),
    "gpt-5-mini": Price(0.25, 2.0),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.0, 8.0),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.0),
    "gpt-4o-mini": Price(0.15, 0.60),
    "o3": Price(2.0, 8.0),
    "o4-mini": Price(1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-3-7-sonnet": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    "claude-3-haiku": Price(0.25, 1.25),
    # Google
    "gemini-2.5-pro": Price(1.25, 10.0),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
    "gemini-2.0-flash": Price(0.10, 0.40),
}


def _amount(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a number of USD per million tokens, 0 or more; got {value!r}")
    return float(value)


def parse_prices(value: object) -> dict[str, Price]:
    """The `prices` setting: model name to `{"input": USD, "output": USD}` per million tokens (or `[input, output]`).

    Args:
        value: A mapping (from `configure()` or pyproject), or JSON text (from the environment).

    Returns:
        Model name to `Price`.

    Raises:
        ValueError: the shape or a number is wrong; the message shows the expected form.
    """
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, Mapping):
        raise ValueError(f'expected model name to {{"input": USD, "output": USD}} per million tokens, got {value!r}')
    items: Mapping[object, object] = value  # pyright: ignore[reportUnknownVariableType]
    prices: dict[str, Price] = {}
    for model, price in items.items():
        name = str(model).strip()
        if isinstance(price, Mapping):
            entry: Mapping[object, object] = price  # pyright: ignore[reportUnknownVariableType]
            if set(entry) != {"input", "output"}:
                raise ValueError(f'price of {name!r}: give exactly "input" and "output" (USD per million tokens)')
            pair: tuple[object, object] = (entry["input"], entry["output"])
        elif isinstance(price, list | tuple) and len(price) == 2:  # pyright: ignore[reportUnknownArgumentType]
            listed: list[object] = list(price)  # pyright: ignore[reportUnknownArgumentType]
            pair = (listed[0], listed[1])
        else:
            raise ValueError(f'price of {name!r}: expected {{"input": USD, "output": USD}} or [input, output]')
        prices[name] = Price(
            _amount(pair[0], f"input price of {name!r}"), _amount(pair[1], f"output price of {name!r}")
        )
    return prices


class PriceTable:
    """The shipped prices with the `prices` setting on top; looks a model up and prices a call.

    ```python
    from promptops._prices import PriceTable

    table = PriceTable({"my-model": (1.0, 2.0)})
    assert table.cost("my-model", 1_000, 500) == 0.002
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    ```

    Args:
        overrides: Model name to `Price` (or an `(input, output)` pair), e.g. the `prices` setting.
    """

    def __init__(self, overrides: Mapping[str, Price | tuple[float, float]] | None = None) -> None:
        """Build a table; see the class documentation."""
        self.prices: dict[str, Price] = {**DEFAULT_PRICES, **{k: Price(*v) for k, v in (overrides or {}).items()}}
        self._by_length = sorted(self.prices, key=len, reverse=True)
        self._found: dict[str, Price | None] = {}

    def price(self, model: str | None) -> Price | None:
        """The price of a model, or `None` when the table has no entry for it."""
        if not model:
            return None
        if model in self._found:
            return self._found[model]
        found = self.prices.get(model)
        if found is None:
            bare = model.rsplit("/", 1)[-1]
            found = self.prices.get(bare)
            if found is None:
                family = next((name for name in self._by_length if bare.startswith((name + "-", name + "@"))), None)
                found = self.prices[family] if family is not None else None
        self._found[model] = found
        return found

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """The cost in USD of a call; `None` when the model has no price."""
        price = self.price(model)
        return None if price is None else price.cost(input_tokens, output_tokens)
