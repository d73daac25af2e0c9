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
    """An expected, environmental export failure (endpoint down, refused, slow, store locked): a WARNING."""


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
    """Counts the OTLP exporter's "Transient error ... retrying" lines as `export_retries` instead of logging them.

    A dead endpoint made OpenTelemetry print one WARNING per retry into the application's stderr (issue 17);
    promptops already reports the batches that finally fail (`export_failures`, a rate-limited warning).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop and count a retry line; let everything else through."""
        if isinstance(record.msg, str) and record.msg.startswith("Transient error"):
            count("export_retries")
            return False
        return True


def quiet_retries(logger_name: str) -> None:
    """Install `RetryNoise` on the named exporter logger, once."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(existing, RetryNoise) for existing in target.filters):
        target.addFilter(RetryNoise())
