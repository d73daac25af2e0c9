"""Process-wide lifecycle: `flush()`, `shutdown()` and `stats()` over everything running in the background."""

from __future__ import annotations

import time
from typing import Any

from . import capture, prompts, tracing
from ._errors import internal_error_count
from ._redact import redaction_failures

__all__ = ["flush", "shutdown", "stats"]


def flush(timeout: float = 5.0) -> bool:
    """Wait until background work finishes: prompt fetches in flight, spans waiting for export, captured calls.

    Args:
        timeout: Seconds to wait at most.

    Returns:
        `True` if everything finished, `False` if the deadline passed first.
    """
    deadline = time.monotonic() + timeout
    current = prompts._resolver  # pyright: ignore[reportPrivateUsage] - don't create one just to flush it
    finished = current.wait(timeout) if current is not None else True
    # Spans: exported within what is left of the same deadline, even against a dead endpoint.
    finished = tracing.flush(max(deadline - time.monotonic(), 0.0)) and finished
    # Captured calls: written within what is left, even against a dead store.
    return capture.flush(max(deadline - time.monotonic(), 0.0)) and finished


def shutdown(timeout: float = 5.0) -> bool:
    """Flush, then release connections. promptops keeps working after it: the next call reconnects.

    Args:
        timeout: Seconds to wait at most.

    Returns:
        `True` if everything finished within the deadline.
    """
    deadline = time.monotonic() + timeout
    finished = flush(timeout)
    current = prompts._resolver  # pyright: ignore[reportPrivateUsage]
    if current is not None:
        current.close()
    finished = tracing.shutdown(max(deadline - time.monotonic(), 0.0)) and finished
    return capture.shutdown(max(deadline - time.monotonic(), 0.0)) and finished


def stats() -> dict[str, Any]:
    """Counters for monitoring and tests: registry fetches, internal errors, redaction failures, span export, capture.

    See `tracing.stats` and `capture.stats` for what each counter means.
    """
    current = prompts._resolver  # pyright: ignore[reportPrivateUsage]
    return {
        "registry_fetches": current.fetches if current is not None else 0,
        "internal_errors": internal_error_count(),
        "redaction_failures": redaction_failures(),  # values masked because a rule raised (fail closed)
        **tracing.stats(),
        **capture.stats(),
    }
