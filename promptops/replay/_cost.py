"""Tokens and cost of a replay (issue 13): the `--max-cost` budget while calls run, the totals afterwards.

Each call's usage comes from what the call reported (`promptops._usage`) and its cost from the price table
(`promptops._prices`). The `tokens` and `cost` metrics themselves are summarised with the others in `_run`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._prices import PRICES_AS_OF
from ._result import UsageTotals

if TYPE_CHECKING:
    from ._runner import Call

__all__ = ["Budget", "totals", "usage_line", "usd"]


class Budget:
    """The `--max-cost` limit of one run.

    A call starts only while the spend so far, the calls in flight at the mean cost of the calls finished so far,
    and this one stay within the limit.

    Before the first call finishes there is no estimate: the first calls (at most `--workers`, the flow control's
    ceiling) start. A call that succeeds without a known cost (no usage reported, or a model the price table
    does not have) stops the run: the limit cannot be kept without knowing what calls cost.

    Args:
        limit: USD; `None`: no limit (every call is admitted, the spend is still counted).

    Attributes:
        spent: USD of the calls finished so far in this run.
        stopped: Why no more calls start, once the limit stopped the run.
    """

    def __init__(self, limit: float | None) -> None:
        """Create a budget; see the class documentation."""
        self.limit = limit
        self.spent = 0.0
        self.stopped: str | None = None
        self._priced = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Whether one more call may start (counted in flight until `finished()`)."""
        with self._lock:
            if self.stopped is not None:
                return False
            if self.limit is not None and self._priced:
                estimate = self.spent / self._priced
                if self.spent + (self._in_flight + 1) * estimate > self.limit:
                    self.stopped = (
                        f"stopped at the cost limit: ${self.spent:.4f} spent, and the next call (about "
                        f"${estimate:.4f} each) would take the estimate past --max-cost ${self.limit:g}"
                    )
                    return False
            self._in_flight += 1
            return True

    def abandoned(self, calls: int = 1) -> None:
        """Calls admitted earlier will not finish (a Ray worker died under them): no longer counted in flight."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - calls)

    def finished(self, call: Call) -> None:
        """A call admitted earlier finished."""
        with self._lock:
            self._in_flight -= 1
            if call.cost is not None:
                self.spent += call.cost
                self._priced += 1
            elif self.limit is not None and call.error is None and self.stopped is None:
                model = call.usage.model if call.usage is not None else None
                self.stopped = (
                    "--max-cost cannot be kept: a call reported no token usage (call promptops.record_usage() in "
                    "the function, or return the provider's response)"
                    if call.usage is None
                    else f"--max-cost cannot be kept: model {model!r} has no price (add it to the prices setting)"
                )


def totals(calls: Iterable[Call]) -> UsageTotals:
    """Tokens and cost summed over calls; the unpriced models named."""
    total = UsageTotals(prices_as_of=PRICES_AS_OF)
    unpriced: set[str] = set()
    for call in calls:
        if call.usage is None:
            continue
        total.calls += 1
        total.input_tokens += call.usage.input_tokens
        total.output_tokens += call.usage.output_tokens
        if call.cost is not None:
            total.cost = (total.cost or 0.0) + call.cost
        else:
            unpriced.add(call.usage.model or "(no model named)")
    total.unpriced_models = sorted(unpriced)
    return total


def usd(value: float) -> str:
    """Dollars with enough digits for a fraction of a cent: `$0.000123`, `$1.23`."""
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}" if value > 0 else "$0"


def usage_line(usage: Mapping[str, UsageTotals], spent: float | None) -> str:
    """One line of tokens and cost per side, what the run spent, and the date of the default prices."""
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
