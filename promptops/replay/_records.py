"""The records a replay runs on, kept on disk and read back by position, not held in memory (issue 15).

A replay reads its dataset once, before the first call: it checks each record (replayable, inputs that fit the
target) and writes the ones it will run to a `Spool`, keeping in memory per record only its handle and the prompt
version it was captured on (what the plan needs). The calls, the call store's keys and the scoring read a record
back when they need it, roughly in dataset order. A dataset file is read a record at a time (`FileRecords`), so
the whole file is never in memory; a dataset loaded from the store or from captures is dropped once spooled; a
`Dataset` the caller passed is theirs, and is read in place.
"""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._spool import ByPosition, Spool

if TYPE_CHECKING:
    from ..datasets import DatasetRecord
    from ._target import Target

__all__ = ["Inputs", "Records", "Source", "collect"]

_UNKNOWN = -1  # no captured prompt version (`DatasetRecord.prompt_version` is None)


@dataclasses.dataclass(slots=True)
class Source:
    """A dataset as replay reads it: its name, its records (iterated once), and its fingerprint once read.

    Attributes:
        name: The dataset's name.
        records: Its records, in order.
        fingerprint: SHA-256 over its records (`Dataset.fingerprint`); `None` until `records` was iterated
            to its end, for a file.
        spool: Whether replay keeps the records on disk (it read them itself) or reads them in place (the
            caller's `Dataset`, in memory anyway).
    """

    name: str
    records: Iterable[DatasetRecord]
    fingerprint: str | None
    spool: bool

    def read_fingerprint(self) -> str:
        """The fingerprint (after `records` was iterated, for a file)."""
        found = self.fingerprint if self.fingerprint is not None else getattr(self.records, "fingerprint", None)
        assert isinstance(found, str), "the dataset's fingerprint is known once its records were read"
        return found


class Records(ByPosition["DatasetRecord"]):
    """The records a replay runs, by position: on disk (a `Spool`) or a list of the caller's records.

    Attributes:
        versions: Per record, the prompt version it was captured on (`-1`: unknown).
        has_expected: Some record has an `expected` output.
        has_capture: Some record holds what production answered (an output, or the error it raised).
    """

    def __init__(self, spool: bool) -> None:
        """Empty; `spool`: kept on disk (else in a list)."""
        self._spool = Spool() if spool else None
        self._handles = array.array("q")
        self._kept: list[DatasetRecord] = []
        self.versions = array.array("q")
        self.has_expected = False
        self.has_capture = False
        self._last: tuple[int, DatasetRecord] | None = None  # the record read last: a call reads its inputs twice

    def append(self, record: DatasetRecord) -> None:
        """Add a record at the end."""
        if self._spool is not None:
            self._handles.append(self._spool.write(record))
        else:
            self._kept.append(record)
        version = record.prompt_version
        self.versions.append(_UNKNOWN if version is None else version)
        self.has_expected = self.has_expected or record.expected is not None
        self.has_capture = self.has_capture or record.output is not None or record.error is not None

    def version(self, position: int) -> int | None:
        """The prompt version record `position` was captured on, when known."""
        found = self.versions[position]
        return None if found == _UNKNOWN else found

    def _read(self, position: int) -> DatasetRecord:
        if self._spool is None:
            return self._kept[position]
        last = self._last
        if last is not None and last[0] == position:
            return last[1]
        record: DatasetRecord = self._spool.read(self._handles[position])
        self._last = (position, record)
        return record

    def __len__(self) -> int:
        return len(self.versions)


class Inputs(ByPosition[dict[str, Any]]):
    """The records' inputs, by position (what the runner calls the target with), read from `Records`."""

    def __init__(self, records: Records) -> None:
        """A view of `records`."""
        self._records = records

    def _read(self, position: int) -> dict[str, Any]:
        return self._records[position].inputs

    def __len__(self) -> int:
        return len(self._records)


def collect(target: Target, source: Source) -> tuple[Records, dict[str, int], int]:
    """The records of `source` the target can be called with; the others counted by reason; how many were read."""
    skipped: dict[str, int] = {}
    records = Records(source.spool)
    read = 0
    for record in source.records:
        read += 1
        if not record.replayable:
            skipped["non_replayable"] = skipped.get("non_replayable", 0) + 1
            continue
        try:
            target.arguments(record.inputs)
        except Exception:
            skipped["inputs_do_not_fit"] = skipped.get("inputs_do_not_fit", 0) + 1
            continue
        records.append(record)
    return records, skipped, read
