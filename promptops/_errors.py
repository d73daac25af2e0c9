"""Exceptions users can catch, and the one place internal errors are reported.

promptops runs inside other people's applications: a bug of ours must never raise into the wrapped call.
Internal errors go to `log_internal_error()`, which logs them (once per call site and type, to keep a hot
loop from flooding logs) and counts them; the test suite fails any test in which one was logged.
"""

from __future__ import annotations

import logging
import threading

__all__ = [
    "ConfigError",
    "PromptFormatError",
    "PromptNotFoundError",
    "PromptUnavailableError",
    "PromptopsError",
    "log_internal_error",
]

logger = logging.getLogger("promptops")


class PromptopsError(Exception):
    """Base class of every error promptops raises on purpose."""


class ConfigError(PromptopsError, ValueError):
    """A setting has a value promptops cannot use. The message names the setting and where it came from."""


class PromptUnavailableError(PromptopsError):
    """No copy of a prompt could be had: not from the registry, the memory cache, disk, nor `fallback=`.

    Attributes:
        name: The prompt name.
        selector: What was asked for, e.g. `alias 'production'` or `version 3`.
        uri: The registry URI that was tried.
    """

    def __init__(self, message: str, *, name: str, selector: str, uri: str) -> None:
        super().__init__(message)
        self.name = name
        self.selector = selector
        self.uri = uri


class PromptNotFoundError(PromptUnavailableError):
    """The registry answered, and it has no such prompt, version or alias."""


class PromptFormatError(PromptopsError, KeyError):
    """`Prompt.format()` was called without some of the template's variables."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


_stats_lock = threading.Lock()
_internal_error_count = 0
_seen: set[tuple[str, type[BaseException]]] = set()


def log_internal_error(where: str, exc: BaseException | None = None) -> None:
    """Report a promptops bug or unexpected failure without raising. Call from an `except` block.

    Args:
        where: A short name for the call site, e.g. `"resolve"`.
        exc: The exception, if not the one being handled.
    """
    global _internal_error_count
    try:
        with _stats_lock:
            _internal_error_count += 1
            key = (where, type(exc) if exc is not None else BaseException)
            first = key not in _seen
            _seen.add(key)
        if first:
            logger.error("promptops internal error in %s (the wrapped call is unaffected)", where, exc_info=exc or True)
        else:
            logger.debug("promptops internal error in %s (repeated)", where, exc_info=exc or True)
    except Exception:  # pragma: no cover - logging itself failed; nothing more we can safely do
        pass


def internal_error_count() -> int:
    """How many internal errors were reported in this process."""
    return _internal_error_count


def reset_internal_errors() -> None:
    """Zero the internal error count (tests use this)."""
    global _internal_error_count
    with _stats_lock:
        _internal_error_count = 0
        _seen.clear()
