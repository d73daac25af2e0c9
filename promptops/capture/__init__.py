"""Capture: every tracked call as a replayable record, written in the background to SQLite or PostgreSQL.

* `CallCapture` is built once per decorated function; its `submit()` is the only thing the wrapped call does
  for capture (a few checks and a queue append; see `promptops.capture._capture`).
* A background writer per store drains the bounded queue in batches (`promptops.capture._writer`); `flush()`,
  `shutdown()` and `stats()` are wired into `promptops.flush()`, `promptops.shutdown()` and `promptops.stats()`.
* `CaptureStore` reads and writes a store through SQLAlchemy Core (`promptops.capture._store`); importing
  this package does not import SQLAlchemy: the writer thread and `CaptureStore` do, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._capture import CallCapture
from ._record import CaptureRecord, canonical_json, input_hash, uuid7
from ._writer import DROP_REASONS, flush, shutdown, stats

if TYPE_CHECKING:
    from ._store import SCHEMA_VERSION, CaptureSchemaError, CaptureStore

__all__ = [
    "DROP_REASONS",
    "SCHEMA_VERSION",
    "CallCapture",
    "CaptureRecord",
    "CaptureSchemaError",
    "CaptureStore",
    "canonical_json",
    "flush",
    "input_hash",
    "shutdown",
    "stats",
    "uuid7",
]

_LAZY = {"CaptureStore", "CaptureSchemaError", "SCHEMA_VERSION"}


def __getattr__(name: str) -> Any:
    # The store imports SQLAlchemy: only when asked for.
    if name in _LAZY:
        from . import _store

        return getattr(_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
