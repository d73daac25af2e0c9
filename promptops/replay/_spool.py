"""A replay's per-record results kept on disk, not in memory (issue 15): written once, read back by position.

A 20,000-record replay's results (inputs, outputs, scores) held in memory were most of what grew with the run. The
runner writes each record's result here as soon as it is scored, and `ReplayResult.records` reads them back one
at a time, in dataset order, when an output or the caller asks. The file is a temporary file, unlinked at once:
it goes away with the process, or when the result is collected.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, overload

from ._result import RecordResult

__all__ = ["ByPosition", "Spool", "SpooledRecords"]

T = TypeVar("T")


class Spool:
    """Values pickled one after another to an unlinked temporary file; `write()` gives the handle `read()` takes.

    A value pickle cannot write (an output object of the target's own kind) is kept in memory instead.
    """

    def __init__(self) -> None:
        """An empty spool."""
        self._file = tempfile.TemporaryFile(prefix="promptops-replay-")  # closed by the finalizer below
        self._lock = threading.Lock()
        self._kept: dict[int, Any] = {}
        # Closed when the spool is collected (the result that reads it was dropped), without a ResourceWarning.
        self._close = weakref.finalize(self, self._file.close)

    def write(self, value: Any) -> int:
        """Store `value`; the handle to read it back with."""
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # not picklable: kept as it is, under a negative handle
            handle = -1 - len(self._kept)
            self._kept[handle] = value
            return handle
        with self._lock:
            offset = self._file.seek(0, 2)
            self._file.write(len(data).to_bytes(8, "little"))
            self._file.write(data)
        return offset

    def read(self, handle: int) -> Any:
        """The value written under `handle` (a fresh copy each time, unless it was kept in memory)."""
        if handle < 0:
            return self._kept[handle]
        with self._lock:
            self._file.flush()
        # pread: no shared file position to race on (threads, or a process forked after the run)
        fd = self._file.fileno()
        size = int.from_bytes(os.pread(fd, 8, handle), "little")
        return pickle.loads(os.pread(fd, size, handle + 8))  # our own file, written by this process


class ByPosition(Sequence[T]):
    """A read-only sequence whose items are read one at a time by position (`_read`); a slice reads each of its own."""

    def _read(self, position: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        positions = range(len(self))
        if isinstance(index, slice):
            return [self._read(position) for position in positions[index]]
        return self._read(positions[index])

    def __iter__(self) -> Iterator[T]:
        return (self._read(position) for position in range(len(self)))


class SpooledRecords(ByPosition[RecordResult]):
    """Per-record results read from a `Spool` on demand, in dataset order (`ReplayResult.records`).

    Compares equal to a list of the same records; pickles as that list.

    Args:
        spool: Where the records are.
        handles: Each record's handle, in dataset order.
        complete: Applied to each record as it is read (adds what was known only once every record was scored).
    """

    def __init__(
        self, spool: Spool, handles: Sequence[int], complete: Callable[[int, RecordResult], None] | None = None
    ) -> None:
        """Read records from `spool`; see the class documentation."""
        self._spool = spool
        self._handles = handles
        self._complete = complete

    def _read(self, position: int) -> RecordResult:
        record: RecordResult = self._spool.read(self._handles[position])
        if self._complete is not None:
            self._complete(position, record)
        return record

    def __len__(self) -> int:
        return len(self._handles)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        items: Sequence[object] = other  # pyright: ignore[reportUnknownVariableType]
        return len(self) == len(items) and all(mine == theirs for mine, theirs in zip(self, items))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __repr__(self) -> str:
        return f"<{len(self)} replay records on disk>"
