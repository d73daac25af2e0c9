"""Process-wide lifecycle: `flush()`, `shutdown()` and `stats()` over everything running in the background.

Also the exit paths `atexit` does not see (issue 10), armed when a capture writer starts (and again in a
forked child):

* **SIGTERM** (gunicorn, Kubernetes, systemd stop processes with it): when the application has not installed
  a handler of its own, promptops installs one that flushes for at most `SIGTERM_TIMEOUT` seconds, then
  restores the default disposition and sends the signal again, so the process terminates as it would have
  (exit status -15). When the application's handler came first, ours flushes and then calls it. A handler
  installed after ours replaces it (the application decides); an ignored SIGTERM stays ignored. Only the main
  thread can install a handler: a writer started in another thread arms it at the next start in the main one.
* **multiprocessing children** (fork `Process` and `Pool` workers) end with `os._exit()`, which skips
  `atexit`: a `multiprocessing.util.Finalize` runs the flush on their exit path instead (re-armed after each
  fork, since a child's finalizers are cleared when it starts). Only when multiprocessing is in use.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from . import capture, prompts, tracing
from ._errors import internal_error_count, log_internal_error
from ._redact import redaction_failures

__all__ = ["flush", "shutdown", "stats"]

SIGTERM_TIMEOUT = 3.0  # seconds a SIGTERM waits for the flush before the process goes on terminating
CHILD_EXIT_TIMEOUT = 5.0  # the flush at a multiprocessing child's exit (as the atexit one)


def flush(timeout: float = 5.0) -> bool:
    """Wait until background work finishes: prompt fetches, spans waiting for export, captured calls, feedback.

    A SIGTERM that arrives while the main thread is in `flush()` (or `shutdown()`, or the exit flush of a
    multiprocessing child) lets that flush finish within its own deadline, then terminates the process.

    Args:
        timeout: Seconds to wait at most.

    Returns:
        `True` if everything finished, `False` if the deadline passed first.
    """
    global _flushing
    if threading.current_thread() is not threading.main_thread():
        return _flush(timeout)
    _flushing += 1
    try:
        return _flush(timeout)
    finally:
        _flushing -= 1
        if not _flushing and _term_pending:
            _terminate(signal.SIGTERM, None)


def _flush(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    current = prompts._resolver  # pyright: ignore[reportPrivateUsage] - don't create one just to flush it
    finished = current.wait(timeout) if current is not None else True
    # Spans: exported within what is left of the same deadline, even against a dead endpoint.
    finished = tracing.flush(max(deadline - time.monotonic(), 0.0)) and finished
    # Captured calls: written within what is left, even against a dead store.
    finished = capture.flush(max(deadline - time.monotonic(), 0.0)) and finished
    # Feedback last: an assessment needs its trace exported, a capture id its record written. None was given if
    # its module was never imported (imported with the first `promptops.feedback()`; issue 16).
    feedback = sys.modules.get("promptops.rollout._feedback")
    if feedback is None:
        return finished
    return feedback.flush_feedback(max(deadline - time.monotonic(), 0.0)) and finished


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


# -- exit paths atexit misses (issue 10) ------------------------------------------------------------------------

_Handler = Any  # signal.Handlers | Callable[[int, FrameType | None], Any] | int | None
_previous: _Handler = None  # the SIGTERM handler ours replaced (we chain to it)
_installed_pid = 0  # the process our handler was installed in (a forked child inherits it: still ours)
_finalizer_pid = 0
# Flushes running in the main thread. A signal handler runs in the main thread between two bytecodes, possibly
# while a flush there holds a lock (an Event's, a writer's): a second flush from the handler would wait for that
# lock forever. So a SIGTERM that interrupts a flush only marks termination as pending; the flush ends it.
_flushing = 0
_term_pending = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Flush (bounded), then do what SIGTERM did before: the application's handler, or terminate."""
    global _flushing, _term_pending
    if _flushing:
        _term_pending = True
        return
    _flushing += 1
    try:
        _flush(SIGTERM_TIMEOUT)
    except Exception:  # never keep a process from terminating
        log_internal_error("flush on SIGTERM")
    finally:
        _flushing -= 1
    _terminate(signum, frame)


def _terminate(signum: int, frame: FrameType | None) -> None:
    """What SIGTERM did before promptops: the application's handler, or the default action."""
    global _term_pending
    _term_pending = False
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # the default action: the process ends, killed by the signal


def _install_sigterm() -> None:
    global _previous, _installed_pid
    if _installed_pid or threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_IGN or current is None:  # ignored, or a handler not installed from Python
        _installed_pid = os.getpid()
        return
    _previous = None if current is signal.SIG_DFL else current
    signal.signal(signal.SIGTERM, _on_sigterm)
    _installed_pid = os.getpid()


def _arm_child_exit() -> None:
    """In a multiprocessing child: flush on its exit path (`os._exit()` after `util._exit_function()`)."""
    global _finalizer_pid
    util: Any = sys.modules.get("multiprocessing.util")
    if util is None or _finalizer_pid == os.getpid():
        return
    _finalizer_pid = os.getpid()
    util.Finalize(None, _flush_at_exit, exitpriority=10)
    # A child started by multiprocessing clears its finalizers after the fork hooks ran: arm again then.
    util.register_after_fork(_arm_after_fork, _rearm)


def _flush_at_exit() -> None:
    try:
        flush(CHILD_EXIT_TIMEOUT)
    except Exception:  # pragma: no cover - never fail a process's exit
        pass


class _Anchor:
    """A weak-referenceable object for `multiprocessing.util.register_after_fork`."""


_arm_after_fork = _Anchor()


def _rearm(_anchor: _Anchor) -> None:
    global _finalizer_pid
    _finalizer_pid = 0
    _arm_child_exit()


def _arm() -> None:
    """When a capture writer starts: arrange the flush on SIGTERM and on a multiprocessing child's exit."""
    _install_sigterm()
    _arm_child_exit()


capture._writer.on_start.append(_arm)  # pyright: ignore[reportPrivateUsage]
