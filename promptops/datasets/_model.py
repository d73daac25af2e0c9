"""`DatasetRecord` and `Dataset`: what replay runs on, and the fingerprint that identifies a dataset's content."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..capture import canonical_json
from ._errors import DatasetError, DatasetFormatError

__all__ = ["Dataset", "DatasetInfo", "DatasetRecord", "Fingerprint", "check_name", "compute_fingerprint", "free_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_NUMBERED = re.compile(r"^(.+)-(\d{1,6})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetRecord:
    """One example of a dataset: the inputs to call the target with, and what is known about its output.

    Attributes:
        id: The capture id for records from captures; else the file's `id`, or the 1-based line (row) number.
        inputs: The target's keyword arguments, as JSON data.
        output: The baseline output: what the captured call returned (`None` when unknown or when it raised).
        expected: An expected (reference) output, when someone provided one.
        metadata: Anything else, as JSON data. Records from captures carry the capture's fields: `function`,
            `prompt_name`, `prompt_version`, `prompt_alias`, `prompt_source`, `latency_ms`, `first_item_ms`,
            `error_type`, `error_message`, `trace_id`, `span_id`, `timestamp` (ISO 8601), `app_version`,
            `tags`, `input_hash`, `redacted`, `replayable` and `replay_reason`.
    """

    id: str
    inputs: dict[str, Any]
    output: Any = None
    expected: Any = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])

    @property
    def replayable(self) -> bool:
        """Whether the inputs can be passed to the target as they are (`metadata["replayable"]`, default true)."""
        return self.metadata.get("replayable", True) is not False

    @property
    def replay_reason(self) -> str | None:
        """Why the record is not replayable, when it is not."""
        reason = self.metadata.get("replay_reason")
        return reason if isinstance(reason, str) else None

    @property
    def latency_ms(self) -> float | None:
        """The captured call's wall time in milliseconds, when known."""
        value = self.metadata.get("latency_ms")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def trace_id(self) -> str | None:
        """The captured call's OpenTelemetry trace id (32 hex digits), when known."""
        value = self.metadata.get("trace_id")
        return value if isinstance(value, str) else None

    @property
    def prompt_version(self) -> int | None:
        """The prompt version the captured call used, when known (`0`: a `fallback=` template)."""
        value = self.metadata.get("prompt_version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def error(self) -> str | None:
        """`Type: message` when the captured call raised (just `Type` without a message), else `None`."""
        error_type = self.metadata.get("error_type")
        if not isinstance(error_type, str):
            return None
        message = self.metadata.get("error_message")
        return f"{error_type}: {message}" if isinstance(message, str) and message else error_type

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data: `{"id", "inputs", "output", "expected", "metadata"}` (one JSONL line)."""
        return {
            "id": self.id,
            "inputs": self.inputs,
            "output": self.output,
            "expected": self.expected,
            "metadata": self.metadata,
        }


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A stored dataset's description, without its records (what `list_datasets()` returns).

    Attributes:
        name: The dataset's name.
        source: Where its records came from: `captures`, `file:<file name>` or `mlflow:<MLflow dataset name>`.
        created_at: When it was saved (UTC).
        count: How many records it holds.
        fingerprint: SHA-256 (hex) over its records' canonical JSON.
        filters: How it was made (the options of `from_captures`, the file, the MLflow dataset).
    """

    name: str
    source: str
    created_at: datetime.datetime
    count: int
    fingerprint: str
    filters: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A named, immutable list of records, with its provenance.

    Build one with `from_captures()`, `read_file()` or `pull()`, save it with `create()`, get it back with
    `load()`. Constructing one checks every record (JSON data only, unique ids) and computes the fingerprint.

    ```python
    from promptops.datasets import Dataset, DatasetRecord

    dataset = Dataset("greetings", [DatasetRecord("1", {"name": "Ada"}, output="Hello, Ada!")])
    assert len(dataset) == 1 and dataset.records[0].inputs == {"name": "Ada"}
    assert len(dataset.fingerprint) == 64
    ```

    Attributes:
        name: The dataset's name.
        records: The records, in order (a list given is stored as a tuple).
        source: Where the records came from: `captures`, `file:<file name>`, `mlflow:<MLflow dataset name>`.
        created_at: When the dataset was made (UTC); for a stored dataset, when it was saved.
        filters: Provenance: the options it was made with (capture filters, sampling, the file, ...).
        fingerprint: SHA-256 (hex) over the records' canonical JSON: equal for equal content, whatever the
            name or the time, so a replay result names exactly what it ran on. Computed; when one is given it
            must match the records.

    Raises:
        DatasetFormatError: a record is not JSON data, or two records share an id.
        DatasetError: a given fingerprint does not match the records.
    """

    name: str
    records: tuple[DatasetRecord, ...]
    source: str = ""
    created_at: datetime.datetime = dataclasses.field(default_factory=_utcnow)
    filters: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    fingerprint: str = ""

    def __post_init__(self) -> None:
        """Check the records and compute the fingerprint."""
        records = tuple(self.records)
        object.__setattr__(self, "records", records)
        actual = compute_fingerprint(records)
        if self.fingerprint and self.fingerprint != actual:
            raise DatasetError(
                f"dataset {self.name!r}: its records do not match its fingerprint {self.fingerprint[:12]} "
                f"(they hash to {actual[:12]}); the stored copy was changed outside promptops: delete it and "
                "create it again"
            )
        object.__setattr__(self, "fingerprint", actual)

    def __len__(self) -> int:
        """The number of records."""
        return len(self.records)

    def __iter__(self) -> Iterator[DatasetRecord]:
        """The records, in order."""
        return iter(self.records)

    @property
    def info(self) -> DatasetInfo:
        """The dataset's description without its records."""
        return DatasetInfo(self.name, self.source, self.created_at, len(self.records), self.fingerprint, self.filters)


def _describe(value: Any) -> str:
    return type(value).__name__


def check_json(value: Any, where: str) -> None:
    """Raise `DatasetFormatError` unless `value` is JSON data that survives a round trip unchanged.

    Objects need text keys (JSON would turn `1` into `"1"`), numbers must be finite (JSON has no NaN).

    Args:
        value: The value.
        where: What it is, for the message (`"record 'a7': inputs.text"`).
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if item is None or isinstance(item, (str, bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise DatasetFormatError(f"{path} is {item!r}, which JSON cannot hold; use null or a finite number")
            continue
        if isinstance(item, Mapping):
            for key, child in item.items():  # pyright: ignore[reportUnknownVariableType]
                if not isinstance(key, str):
                    raise DatasetFormatError(
                        f"{path} has the key {key!r} ({_describe(key)}); JSON object keys are text: convert it"
                    )
                stack.append((child, f"{path}.{key}"))  # pyright: ignore[reportUnknownArgumentType]
            continue
        if isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
            continue
        raise DatasetFormatError(f"{path} is a {_describe(item)}, not JSON data; convert it to text, a number, ...")


def check_record(record: Any) -> None:
    """Raise `DatasetFormatError` unless `record` is a valid `DatasetRecord` (JSON data, a usable id)."""
    if not isinstance(record, DatasetRecord):
        raise DatasetFormatError(f"a dataset holds DatasetRecord values, not {_describe(record)}")
    if not isinstance(record.id, str) or not record.id or _CONTROL.search(record.id):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise DatasetFormatError(
            f"record id {record.id!r} is not usable; ids are non-empty text without control characters"
        )
    where = f"record {record.id!r}"
    if not isinstance(record.inputs, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise DatasetFormatError(f"{where}: inputs is a {_describe(record.inputs)}; it must be an object (a dict)")
    if not isinstance(record.metadata, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise DatasetFormatError(f"{where}: metadata is a {_describe(record.metadata)}; it must be an object (a dict)")
    check_json(record.inputs, f"{where}: inputs")
    check_json(record.output, f"{where}: output")
    check_json(record.expected, f"{where}: expected")
    check_json(record.metadata, f"{where}: metadata")


class Fingerprint:
    """A dataset's fingerprint built a record at a time: SHA-256 over each record's canonical JSON, one per line.

    The one recipe: `compute_fingerprint` and a dataset file read a record at a time (`FileRecords`) both use it, so
    a file replayed as it is read and the same records as a `Dataset` have the same fingerprint.
    """

    def __init__(self) -> None:
        """Nothing added yet."""
        self._digest = hashlib.sha256()

    def add(self, canonical: bytes) -> None:
        """Add the next record, as its canonical JSON (UTF-8)."""
        self._digest.update(canonical)
        self._digest.update(b"\n")

    def hexdigest(self) -> str:
        """The fingerprint of the records added so far (64 hex digits)."""
        return self._digest.hexdigest()


def compute_fingerprint(records: Iterable[DatasetRecord]) -> str:
    """SHA-256 (hex) over the records' canonical JSON, one per line, in order; checks each record on the way.

    Args:
        records: The records.

    Returns:
        64 hex digits.

    Raises:
        DatasetFormatError: a record is not JSON data, or two share an id.
    """
    fingerprint = Fingerprint()
    seen: set[str] = set()
    for record in records:
        check_record(record)
        if record.id in seen:
            raise DatasetFormatError(f"two records have the id {record.id!r}; ids must be unique within a dataset")
        seen.add(record.id)
        try:
            canonical = canonical_json(record.to_dict()).encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetFormatError(
                f"record {record.id!r} holds text that is not valid Unicode (a lone surrogate such as \\ud800); "
                "remove or replace it"
            ) from None
        fingerprint.add(canonical)
    return fingerprint.hexdigest()


def check_name(name: str, *, what: str = "dataset name", hint: str = "") -> str:
    """Return `name` if it can name a dataset, else raise `DatasetError`.

    Names are 1-200 characters: letters, digits, `.`, `_` and `-`, starting with a letter or digit.

    Args:
        name: The name.
        what: What the name is, for the message.
        hint: Appended to the message (e.g. which option to pass).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise DatasetError(
            f"{what} {name!r} is not valid: use 1-200 letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit{hint}"
        )
    return name


def free_name(name: str, taken: Iterable[str]) -> str:
    """A name like `name` that is not taken: `summarize-nov` → `summarize-nov-2` (or `-3`, ... if that is taken).

    A name that is itself a numbered copy of a taken name (`summarize-nov-2` while `summarize-nov` exists)
    continues the series (`summarize-nov-3`) rather than growing another suffix; other names ending in digits
    (`summarize-2026-01`) just get one (`summarize-2026-01-2`).

    Args:
        name: The name that is taken.
        taken: Every name in use.

    Returns:
        The first free name of the series.
    """
    used = set(taken)
    match = _NUMBERED.match(name)
    if match and match.group(1) in used:
        stem, number = match.group(1), int(match.group(2)) + 1
    else:
        stem, number = name, 2
    while True:
        suffix = f"-{number}"
        candidate = stem[: 200 - len(suffix)] + suffix
        if candidate not in used:
            return candidate
        number += 1
