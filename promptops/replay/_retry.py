"""Which failures of a call are the provider's (retry them) and how long to wait: issue 13.

A replay makes thousands of calls, and the first thing a real provider answers is HTTP 429. A *transient*
failure (rate limit, overload, 5xx, timeout, a dropped connection) says nothing about the prompt: the call is
retried with exponential backoff and full jitter, waiting what the provider asked for when it said
(`retry-after-ms`, `Retry-After` in seconds or as a date). One that still fails after its retries is an
*infrastructure error*, kept out of the quality metrics; anything else the function raises (a parsing error, a
validation error) is the model's error, scored as today.

Recognised without importing any of them (a class is only looked up once its module is already loaded, which
it is whenever one of its exceptions exists): `openai` and `anthropic` (connection and timeout errors, and any
status error with status 408, 409, 429 or 5xx, Anthropic's 529 included), `httpx`/`httpx2` (status errors with
those statuses, timeouts, network and protocol errors), LangChain's wrappers (`ModelRateLimitError`,
`ModelConnectionError`, `ModelTimeoutError`, and anything chained to one of the above), the builtin
`ConnectionError` and `TimeoutError`, and whatever the user's `retry_on` predicate accepts.
"""

from __future__ import annotations

import email.utils
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["RetryPolicy", "error_text", "is_infrastructure", "is_rate_limit", "is_transient", "retry_after"]

TRANSIENT_STATUSES: Final = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_CHAIN_DEPTH: Final = 6  # causes followed from a wrapper (LangChain, the user's own `raise ... from exc`)
# Class names looked up in a module only when it is already in sys.modules.
_TRANSIENT_CLASSES: Final = {
    "openai": ("APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError"),
    "anthropic": ("APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError", "OverloadedError"),
    "httpx": ("TimeoutException", "NetworkError", "RemoteProtocolError"),
    "httpx2": ("TimeoutException", "NetworkError", "RemoteProtocolError"),
    "langchain_core.exceptions": ("ModelRateLimitError", "ModelConnectionError", "ModelTimeoutError"),
}
_RATE_LIMIT_CLASSES: Final = {
    "openai": ("RateLimitError",),
    "anthropic": ("RateLimitError",),
    "langchain_core.exceptions": ("ModelRateLimitError",),
}


def _classes(table: dict[str, tuple[str, ...]]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module_name, names in table.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from (explicitly or while handling), nearest first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < _CHAIN_DEPTH and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def error_text(exc: BaseException) -> str:
    """`module.Type: first line of the message` (builtins without their module)."""
    message = str(exc).strip().splitlines()
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {message[0]}" if message else name


def status_code(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (`exc.status_code`, or `exc.response.status_code`), if any."""
    for holder in (exc, getattr(exc, "response", None)):
        value = getattr(holder, "status_code", None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is the provider's and worth retrying (rate limit, overload, 5xx, timeout, connection)."""
    transient = _classes(_TRANSIENT_CLASSES)
    for item in _chain(exc):
        if isinstance(item, (ConnectionError, TimeoutError)) or (transient and isinstance(item, transient)):
            return True
        status = status_code(item)
        if status is not None and status in TRANSIENT_STATUSES:
            return True
    return False


def is_infrastructure(exc: BaseException) -> bool:
    """A failure that says nothing about the prompt: transient, or refused credentials (401, 403), not retried."""
    return is_transient(exc) or any(status_code(item) in (401, 403) for item in _chain(exc))


def is_rate_limit(exc: BaseException) -> bool:
    """Whether a failure says "too many requests" (429, or a rate-limit class): concurrency should back off."""
    limits = _classes(_RATE_LIMIT_CLASSES)
    return any(status_code(item) == 429 or (limits and isinstance(item, limits)) for item in _chain(exc))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked to wait (`retry-after-ms`, then `Retry-After` as seconds or a date), if it said."""
    for item in _chain(exc):
        headers: Any = getattr(getattr(item, "response", None), "headers", None)
        if headers is None or not hasattr(headers, "get"):
            continue
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value) * scale
            except (TypeError, ValueError):
                parsed = email.utils.parsedate_tz(str(value))
                if parsed is None:
                    continue
                seconds = email.utils.mktime_tz(parsed) - time.time()
            if math.isfinite(seconds):
                return max(0.0, seconds)
    return None


class RetryPolicy:
    """How one call is retried: which failures, how many attempts, how long to wait between them.

    Args:
        retry_on: Also retry what this predicate accepts.
        attempts: Attempts in all, the first included, for failures other than rate limits.
        rate_limit_attempts: Attempts in all while the provider answers with rate limits: it is up and asking
            to slow down, which the adaptive concurrency does, so a call keeps its place longer.
        initial_s: First backoff when the provider gave no `Retry-After`; doubles each attempt, with jitter.
        max_wait_s: Longest single wait (a `Retry-After` beyond it is cut to it).
    """

    def __init__(
        self,
        retry_on: Callable[[BaseException], bool] | None = None,
        *,
        attempts: int = 6,
        rate_limit_attempts: int = 30,
        initial_s: float = 0.5,
        max_wait_s: float = 30.0,
    ) -> None:
        """Create a policy; see the class documentation for the arguments."""
        self.retry_on = retry_on
        self.attempts = attempts
        self.rate_limit_attempts = rate_limit_attempts
        self.initial_s = initial_s
        self.max_wait_s = max_wait_s

    def retryable(self, exc: BaseException) -> bool:
        """Whether to try again after `exc` (never for Ctrl-C or a `SystemExit`)."""
        if not isinstance(exc, Exception):
            return False
        if is_transient(exc):
            return True
        if self.retry_on is None:
            return False
        try:
            return bool(self.retry_on(exc))
        except Exception:  # a broken predicate must not turn a model error into a crash of the run
            return False

    def wait(self, exc: BaseException, attempt: int, stop: threading.Event) -> float | None:
        """After failed attempt number `attempt` (1 for the first): the seconds to wait before the next one.

        `None` means give up and keep `exc` as the call's outcome: it is not retryable, the circuit has opened
        (`stop` is set), or the attempts are spent (`rate_limit_attempts` while the provider answers with rate
        limits, else `attempts`). The wait is what the provider asked for (`retry_after()`, at most `max_wait_s`),
        else full jitter: a random wait up to `initial_s * 2**(attempt - 1)` (at most `max_wait_s`), so the
        retries of a burst do not arrive together again.

        Args:
            exc: What the attempt raised.
            attempt: Its number, from 1.
            stop: Set when no retry should start any more (the circuit breaker).

        Returns:
            Seconds to wait, or `None`.
        """
        if not self.retryable(exc) or stop.is_set():
            return None
        if attempt >= (self.rate_limit_attempts if is_rate_limit(exc) else self.attempts):
            return None
        asked = retry_after(exc)
        if asked is not None:
            return min(asked, self.max_wait_s)
        return random.uniform(0.0, min(self.initial_s * 2.0 ** (attempt - 1), self.max_wait_s))
