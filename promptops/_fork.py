"""Forks wait for work a child must not inherit half done: imports, and promptops' client set-ups (issue 10).

A thread that imports a module holds that module's import lock, and one that builds an MLflow client holds
MLflow's store lock: a child forked meanwhile, from another thread, inherits those locks held by a thread it does
not have, so importing the module or building an MLflow client there waits for good. promptops makes such work
happen behind the application's back: the first prompt fetch (or rollout read) imports its registry client on a
background thread (MLflow takes seconds) and builds it, a capture writer's thread imports SQLAlchemy and the
driver, and the first tracked call imports what it needs on the caller's thread. So a fork waits (at most
`FORK_WAIT` seconds) until no other thread is in the middle of an import (importlib's module locks, each with
its `owner` thread; on a Python without them this part waits for nothing) and no work begun with `begin()` (or
`fork_waits()`) is still running; none begins until the fork is done.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Generator
from typing import Any

__all__ = ["FORK_WAIT", "begin", "end", "fork_waits"]

FORK_WAIT = 60.0  # seconds; the capture writer waits as long for a SQLite batch being written (capture._writer)

_condition = threading.Condition()
_active = 0  # work begun and not ended


def begin() -> None:
    """Work a forked child must not inherit half done starts (waits while a fork is in progress)."""
    global _active
    with _condition:
        _active += 1


def end() -> None:
    """That work is done (in any thread: a thread's start-up may begin in the thread that starts it)."""
    global _active
    with _condition:
        _active -= 1
        _condition.notify_all()


@contextlib.contextmanager
def fork_waits() -> Generator[None]:
    """`begin()` and `end()` around the block: forks wait for it."""
    begin()
    try:
        yield
    finally:
        end()


def _importing(current: int) -> bool:
    """Whether a thread other than `current` is in the middle of an import (it owns a module's import lock)."""
    locks: Any = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None)
    try:
        for ref in list(locks.values()) if locks is not None else ():
            owner = getattr(ref(), "owner", None)
            if owner is not None and owner != current:
                return True
    except Exception:  # another Python's importlib: nothing to wait for here
        return False
    return False


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT
    current = threading.get_ident()
    _condition.acquire()  # held until the fork is done: no such work begins meanwhile
    while (_active or _importing(current)) and (left := deadline - time.monotonic()) > 0:
        _condition.wait(min(left, 0.005))  # end() wakes it; an import's end is polled


def _after_fork_in_parent() -> None:
    _condition.release()


def _after_fork_in_child() -> None:
    global _condition, _active
    _condition = threading.Condition()  # the parent's threads did not come along
    _active = 0


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
