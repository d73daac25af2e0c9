"""Flow control shared by every call of a replay: adaptive concurrency, a rate cap, a circuit breaker (issue 13).

`--workers` is a ceiling. Each rate limit halves the calls allowed in flight (at most once per half second, so
one burst of 429s counts once); each success adds `1/limit`, about one more call per round of successes: AIMD,
the way TCP shares a link. `--rps` spaces call starts evenly. When failed attempts pile up with no success in
between (the provider is down, the key is wrong) the breaker opens: no new call starts, retries stop waiting,
and the run ends with "could not measure" instead of waiting out every retry of every record.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Final

from ._retry import error_text

__all__ = ["Flow"]

_DECREASE_EVERY_S: Final = 0.5
_POLL_S: Final = 0.005  # how often an async call waiting for a slot looks again


class Flow:
    """Slots, pacing and counters for one run; thread-safe, and usable from async calls on one loop.

    Args:
        ceiling: At most this many calls in flight (`--workers`).
        rps: At most this many call starts per second (`None`: no cap).
        breaker_after: Open the circuit after this many failed attempts in a row with no success between them
            (default: 4 x ceiling, at least 20).

    Attributes:
        limit: Calls currently allowed in flight (between 1 and `ceiling`).
        in_flight: Calls running now.
        retries: Attempts retried so far.
        rate_limited: Attempts answered with a rate limit.
        lowest_limit: The lowest `limit` reached.
        reason: Why the circuit opened, once it has.
    """

    def __init__(self, ceiling: int, *, rps: float | None = None, breaker_after: int | None = None) -> None:
        """Create the flow control of one run; see the class documentation for the arguments."""
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.lowest_limit = ceiling
        self.rps = rps
        self.breaker_after = breaker_after if breaker_after is not None else max(20, 4 * ceiling)
        self.in_flight = 0
        self.retries = 0
        self.rate_limited = 0
        self.reason: str | None = None
        self._streak = 0
        self._last_decrease = 0.0
        self._next_start = 0.0
        self._opened = threading.Event()
        self._condition = threading.Condition()

    @property
    def opened(self) -> threading.Event:
        """Set when the circuit breaker opens."""
        return self._opened

    @property
    def open(self) -> bool:
        """The circuit breaker has opened: stop starting calls and stop retrying."""
        return self._opened.is_set()

    # -- slots ---------------------------------------------------------------------------------------------------

    def _take(self) -> float | None:
        """Take a slot if one is free: the seconds to wait for the rate cap; `None` when none is free."""
        if self.in_flight >= max(1, int(self.limit)):
            return None
        self.in_flight += 1
        if self.rps is None:
            return 0.0
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + 1.0 / self.rps
        return start - now

    def acquire(self) -> bool:
        """Wait for a slot (and the rate cap); `False` when the circuit opened meanwhile."""
        with self._condition:
            while True:
                if self.open:
                    return False
                delay = self._take()
                if delay is not None:
                    break
                self._condition.wait(0.1)
        if delay > 0:
            self._opened.wait(delay)
        return not self.open

    async def aacquire(self) -> bool:
        """`acquire()` for async calls: waits without blocking the loop."""
        while True:
            if self.open:
                return False
            with self._condition:
                delay = self._take()
            if delay is not None:
                break
            await asyncio.sleep(_POLL_S)
        if delay > 0:
            await self.asleep(delay)
        return not self.open

    def release(self) -> None:
        """Give a slot back."""
        with self._condition:
            self.in_flight -= 1
            self._condition.notify()

    # -- outcomes ------------------------------------------------------------------------------------------------

    def succeeded(self) -> None:
        """A call succeeded: the failure streak ends, and one more call may be allowed in flight."""
        with self._condition:
            self._streak = 0
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            self._condition.notify_all()

    def failed(self, exc: BaseException | str, *, rate_limit: bool, retried: bool) -> None:
        """An attempt failed on the provider's side (a rate limit, an overload, a dropped connection, ...).

        `exc` may be given as its `error_text()` (a Ray worker reports it so: provider exceptions need not pickle).
        """
        with self._condition:
            self.retries += retried
            if rate_limit:
                self.rate_limited += 1
                now = time.monotonic()
                if now - self._last_decrease >= _DECREASE_EVERY_S:
                    self._last_decrease = now
                    self.limit = max(1.0, self.limit / 2)
                    self.lowest_limit = min(self.lowest_limit, int(self.limit))
            self._streak += 1
            if self._streak >= self.breaker_after and not self.open:
                self.reason = (
                    f"{self._streak} failed attempts in a row without one success (the provider is down, or the key "
                    f"or the URL is wrong?); last: {exc if isinstance(exc, str) else error_text(exc)}"
                )
                self._opened.set()
                self._condition.notify_all()

    # -- waiting -------------------------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Sleep between retries; wakes at once when the circuit opens."""
        self._opened.wait(seconds)

    async def asleep(self, seconds: float) -> None:
        """`sleep()` for async calls."""
        deadline = time.monotonic() + seconds
        while not self.open:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))
