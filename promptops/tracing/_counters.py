"""Span export counters, the expected-failure exception and rate-limited warnings.

The exporters (`_mlflow`) and the processor (`_provider`) both use these; neither imports the other for them
(issue 16 untied the `_provider` <-> `_mlflow` import cycle this way). Standard library only.
"""

from __future__ import annotations

import logging
import os
import threading
import time

__all__ = ["ExportFailed", "RateLimitedWarning", "RetryNoise", "add", "count", "snapshot"]

logger = logging.getLogger("promptops")

WARNING_INTERVAL = 60.0  # seconds between two warnings about the same kind of export trouble
NAMES = (
    "spans_exported",
    "spans_dropped",
    "spans_failed",
    "export_failures",
    "export_retries",
    "prompt_links",
    "prompt_links_failed",
)


class ExportFailed(Exception):
    """An expected, environmental export failure (endpoint down, refused, slow, store locked): a WARNING.

    Attributes:
        locked: The store stayed locked by other writers for the whole retry budget.
        failed: How many of the batch's spans were not delivered (`None`: all of them).
        timed_out: No answer within the timeout: the server may still have stored the request.
    """

    def __init__(
        self, message: str, *, locked: bool = False, failed: int | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.locked = locked
        self.failed = failed
        self.timed_out = timed_out


_lock = threading.Lock()
_counts: dict[str, int] = dict.fromkeys(NAMES, 0)


def count(name: str, value: int = 1) -> None:
    """Add `value` to the counter `name` (see `promptops.tracing.stats()`)."""
    with _lock:
        _counts[name] += value


def add(**values: int) -> dict[str, int]:
    """Add to several counters at once; returns the counters' new totals."""
    with _lock:
        for name, value in values.items():
            _counts[name] += value
        return dict(_counts)


def snapshot() -> dict[str, int]:
    """The counters now."""
    with _lock:
        return dict(_counts)


def _reinit_lock_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy locked forever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_lock_in_child)


class RateLimitedWarning:
    """Log a WARNING at most once per `interval` seconds, saying how often it happened since the last one."""

    def __init__(self, interval: float = WARNING_INTERVAL) -> None:
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        """Log `message % args` now, or count it if a warning was logged less than `interval` ago."""
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            message += " (%d similar warnings in the last %.0fs)"
            args = (*args, suppressed, self._interval)
        logger.warning(message, *args)


class RetryNoise(logging.Filter):
    """Keeps the OTLP exporter's own lines about a failing endpoint out of the application's logs (issue 17).

    A dead endpoint made OpenTelemetry print a WARNING per retry ("Transient error ... retrying in 1.02s") and an
    ERROR per lost batch ("Failed to export span batch ...") into the application's stderr. promptops reports
    both itself: retries as `export_retries`, a lost batch as `export_failures`/`spans_failed` with one
    rate-limited warning. The error each line names is kept (`last_error`) for those reports.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop (and count) a retry or batch-failure line; let everything else through."""
        global last_error
        message = record.msg
        if not isinstance(message, str):
            return True
        if message.startswith("Transient error"):
            count("export_retries")
        elif not message.startswith("Failed to export"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        if message.startswith("Transient error") and args:
            last_error = f"{args[0]}"[:300]
        elif "code: %s, reason: %s" in message and len(args) >= 3:
            last_error = f"HTTP {args[1]}: {args[2]}"[:300] if args[1] else f"{args[2]}"[:300]
        return False


# The error the OTLP exporter last reported (through its log lines, see RetryNoise); "" when none since the
# current export started (CountingExporter clears it).
last_error = ""


def quiet_retries(logger_name: str) -> None:
    """Install `RetryNoise` on the named exporter logger, once."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(existing, RetryNoise) for existing in target.filters):
        target.addFilter(RetryNoise())
