"""Tokens and cost of a replay (issue 13): the `--max-cost` budget while calls run, the totals afterwards.

Each call's usage comes from what the call reported (`promptops._usage`) and its cost from the price table
(`promptops._prices`). The `tokens` and `cost` metrics themselves are summarised with the others in `_run`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._usage import UsageTotals, sum_usage

if TYPE_CHECKING:
    from ._runner import Call

__all__ = ["Budget", "totals"]


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
    """Tokens and cost summed over the calls that reported usage; the unpriced models named."""
    return sum_usage(
        (call.usage.input_tokens, call.usage.output_tokens, call.usage.model, call.cost)
        for call in calls
        if call.usage is not None
    )
