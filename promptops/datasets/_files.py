"""Dataset files: JSON Lines and Parquet, read all-or-nothing and written atomically.

JSONL: one JSON object per line, `{"id"?, "inputs": {...}, "output"?, "expected"?, "metadata"?}`; blank lines
are skipped; any other key is refused (a typo such as `"expect"` would otherwise lose data silently).
Parquet: text columns `id`, `inputs`, `output`, `expected`, `metadata`, each value JSON text (so that any JSON
value, `null` and nested ones included, survives the trip); only `inputs` is required.

A malformed file is refused with its line (row) number and the reason, and nothing is returned: importing is all
or nothing. Values nested deeper than `MAX_DEPTH` are refused (issue 11: a hostile file nested 100,000 levels
deep crashed the import with a RecursionError). `write_file` then `read_file` gives back equal records (and so the same fingerprint).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from ..capture import canonical_json
from ._errors import DatasetError, DatasetFormatError
from ._model import Dataset, DatasetRecord, Fingerprint, check_record

__all__ = ["COLUMNS", "MAX_DEPTH", "FileRecords", "read_file", "write_file"]

COLUMNS = ("id", "inputs", "output", "expected", "metadata")
MAX_DEPTH = 100  # nesting levels of one record; far beyond any call's arguments, far below Python's recursion limit
_FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write null or a finite number)")


_decoder: Callable[[str], Any] = json.JSONDecoder(parse_constant=_no_constant).decode


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests lists/objects more than `limit` levels deep (iterative: no recursion to exhaust)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children: list[Any]
        if isinstance(item, dict):
            children = list(item.values())  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        elif isinstance(item, list):
            children = item  # pyright: ignore[reportUnknownVariableType]
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _decode(text: str) -> Any:
    """JSON text to a value; `ValueError` when it is not JSON or nests deeper than `MAX_DEPTH`."""
    try:
        value = _decoder(text)
    except RecursionError:  # the C decoder gives up around Python's recursion limit
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    if _depth_over(value, MAX_DEPTH):
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _format(path: Path) -> str:
    found = _FORMATS.get(path.suffix.lower())
    if found is None:
        kind = f"{path.suffix!r}" if path.suffix else "(no extension)"
        raise DatasetFormatError(
            f"{path}: unknown dataset file type {kind}; use a .jsonl (JSON Lines) or .parquet file", path=str(path)
        )
    return found


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    return "a boolean" if isinstance(value, bool) else "a number"


def _record(data: Any, number: int) -> tuple[DatasetRecord, bytes]:
    """A record from one line's (row's) data, and its canonical JSON (what the fingerprint hashes).

    Raises `ValueError` with the reason when it is not a record.
    """
    if not isinstance(data, dict):
        raise ValueError(f'expected a JSON object such as {{"inputs": {{...}}}}, got {_kind(data)}')
    fields: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
    unknown = [key for key in fields if key not in COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r}; a record has id, inputs, output, expected and metadata (put anything else "
            "under metadata)"
        )
    if "inputs" not in fields or fields["inputs"] is None:
        raise ValueError('no inputs; each record needs "inputs": an object of the target\'s keyword arguments')
    inputs = fields["inputs"]
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs is {_kind(inputs)}; it must be an object of the target's keyword arguments")
    record_id = fields.get("id")
    if record_id is None:
        record_id = str(number)
    elif isinstance(record_id, int) and not isinstance(record_id, bool):
        record_id = str(record_id)
    elif not isinstance(record_id, str):
        raise ValueError(f"id is {_kind(record_id)}; it must be text or a whole number")
    metadata = fields.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise ValueError(f"metadata is {_kind(metadata)}; it must be an object")
    record = DatasetRecord(
        id=record_id,
        inputs=inputs,  # pyright: ignore[reportUnknownArgumentType]
        output=fields.get("output"),
        expected=fields.get("expected"),
        metadata=metadata,  # pyright: ignore[reportUnknownArgumentType]
    )
    try:
        check_record(record)
    except DatasetFormatError as exc:
        raise ValueError(str(exc).removeprefix(f"record {record_id!r}: ")) from None
    try:
        canonical = canonical_json(record.to_dict()).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("holds text that is not valid Unicode (a lone surrogate such as \\ud800)") from None
    return record, canonical


class FileRecords:
    """A dataset file's records, read and checked one at a time, in order (what `read_file()` collects).

    Replay iterates over one of these instead of holding the whole file's records (issue 15). Each iteration reads
    the file again and checks everything `read_file()` checks, raising the same `DatasetFormatError` at the first
    problem; once an iteration has reached the end, `fingerprint` is the dataset's (`Dataset.fingerprint` of the
    same records).

    Args:
        path: A `.jsonl` or `.parquet` file.

    Attributes:
        path: The file.
        format: `jsonl` or `parquet`.
        fingerprint: SHA-256 (hex) over the records' canonical JSON, set by an iteration that reached the end.

    Raises:
        DatasetFormatError: the extension is neither `.jsonl` nor `.parquet`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Read `path`; see the class documentation."""
        self.path = Path(path)
        self.format = _format(self.path)
        self.fingerprint: str | None = None

    @property
    def name(self) -> str:
        """The dataset's name: the file's stem."""
        return self.path.stem

    @property
    def source(self) -> str:
        """`file:<file name>`."""
        return f"file:{self.path.name}"

    @property
    def filters(self) -> dict[str, Any]:
        """Provenance: the file's absolute path and format."""
        return {"file": os.path.abspath(self.path), "format": self.format}

    def __iter__(self) -> Iterator[DatasetRecord]:
        """The records, each checked; see the class documentation.

        Raises:
            DatasetFormatError: a malformed record, a repeated id, or a file without records.
            DatasetError: the file cannot be read.
        """
        try:
            reader = _Reader(self.path, "line" if self.format == "jsonl" else "row")
            rows = _jsonl_rows(self.path, reader) if self.format == "jsonl" else _parquet_rows(self.path, reader)
            for data, number in rows:
                yield reader.add(data, number)
            reader.finish()
        except OSError as exc:
            raise DatasetError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self.fingerprint = reader.fingerprint.hexdigest()


class _Reader:
    """Checks records and that ids are unique, words every problem as `path: line N: reason`, hashes the records."""

    def __init__(self, path: Path, unit: str) -> None:
        self.path = path
        self.unit = unit
        self.count = 0
        self.fingerprint = Fingerprint()
        self._ids: dict[str, int] = {}

    def fail(self, number: int, reason: str) -> DatasetFormatError:
        return DatasetFormatError(f"{self.path}: {self.unit} {number}: {reason}", path=str(self.path), line=number)

    def add(self, data: Any, number: int) -> DatasetRecord:
        try:
            record, canonical = _record(data, number)
        except ValueError as exc:
            raise self.fail(number, str(exc)) from None
        first = self._ids.setdefault(record.id, number)
        if first != number:
            raise self.fail(number, f"id {record.id!r} is already used on {self.unit} {first}; ids must be unique")
        self.count += 1
        self.fingerprint.add(canonical)
        return record

    def finish(self) -> None:
        if not self.count:
            raise DatasetFormatError(
                f"{self.path}: the file holds no records; write one record per {self.unit}, e.g. "
                '{"inputs": {"text": "..."}, "expected": "..."}',
                path=str(self.path),
            )


def _jsonl_rows(path: Path, reader: _Reader) -> Iterator[tuple[Any, int]]:
    """Each non-blank line's JSON value and its line number."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise reader.fail(number, f"not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not text.strip():
                continue
            try:
                data = _decode(text)
            except ValueError as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                column = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
                raise reader.fail(number, f"not valid JSON: {reason}{column}") from None
            yield data, number


def _pyarrow() -> tuple[Any, Any]:
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise DatasetError("Parquet files need pyarrow: pip install pyarrow (or use a .jsonl file)") from None


def _unreadable(path: Path, exc: Exception) -> DatasetFormatError:
    detail = str(exc).strip().splitlines()
    return DatasetFormatError(
        f"{path}: not a readable Parquet file ({detail[0] if detail else type(exc).__name__})", path=str(path)
    )


_PARQUET_BATCH = 1024  # rows decoded at a time


def _parquet_rows(path: Path, reader: _Reader) -> Iterator[tuple[Any, int]]:
    """Each row's values (JSON text decoded, nulls left out) and its row number, a batch of rows at a time."""
    pa, pq = _pyarrow()
    try:
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
    except OSError:
        raise
    except Exception as exc:  # pyarrow.ArrowInvalid and friends: not a Parquet file, or a damaged one
        raise _unreadable(path, exc) from None
    with contextlib.closing(file):
        names: list[str] = list(schema.names)
        for name in names:
            if name not in COLUMNS:
                raise DatasetFormatError(
                    f"{path}: unknown column {name!r}; a dataset file has the columns id, inputs, output, expected "
                    "and metadata (put anything else under metadata)",
                    path=str(path),
                )
        if "inputs" not in names:
            raise DatasetFormatError(
                f"{path}: no inputs column; each row needs its inputs as JSON text", path=str(path)
            )
        for name in names:
            kind = schema.field(name).type
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
            if not text and not (name == "id" and pa.types.is_integer(kind)):
                raise DatasetFormatError(
                    f"{path}: column {name!r} holds {kind}, not text; each value must be JSON text (files written by "
                    "promptops datasets export are)",
                    path=str(path),
                )
        number = 0
        batches = file.iter_batches(batch_size=_PARQUET_BATCH)
        while True:
            try:
                batch = next(batches, None)
            except OSError:
                raise
            except Exception as exc:  # a damaged row group
                raise _unreadable(path, exc) from None
            if batch is None:
                return
            columns = {name: batch.column(name).to_pylist() for name in names}
            for index in range(batch.num_rows):
                number += 1
                data: dict[str, Any] = {}
                for name, values in columns.items():
                    value = values[index]
                    if value is None:
                        continue
                    if name == "id":
                        data["id"] = value
                        continue
                    try:
                        data[name] = _decode(value)
                    except ValueError as exc:
                        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                        raise reader.fail(number, f"{name} is not valid JSON text: {reason}") from None
                yield data, number


def read_file(path: str | os.PathLike[str]) -> Dataset:
    """A dataset from a `.jsonl` or `.parquet` file (not saved: pass it to `create()` to keep it).

    Records without an `id` get their 1-based line (row) number as id.

    Args:
        path: The file.

    Returns:
        The dataset: named after the file's stem, `source` `"file:<file name>"`, `filters` the file's path.

    Raises:
        DatasetFormatError: an unknown extension, an empty file, or a malformed record (the message names the
            line or row and the reason; nothing is imported).
        DatasetError: the file cannot be read.
    """
    file = FileRecords(path)
    records = tuple(file)
    return Dataset(
        name=file.name,
        records=records,
        source=file.source,
        created_at=datetime.datetime.now(datetime.timezone.utc),
        filters=file.filters,
        fingerprint=file.fingerprint or "",
    )


@contextlib.contextmanager
def _atomic(path: Path) -> Generator[Path]:
    """A temporary file next to `path` that replaces it when the block succeeds (else is removed)."""
    try:
        with atomic_path(path) as partial:
            yield partial
    except OSError as exc:
        raise DatasetError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_file(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write a dataset's records to a `.jsonl` or `.parquet` file (replaced if it exists; all or nothing).

    JSONL: one `{"id", "inputs", "output", "expected", "metadata"}` object per line. Parquet: those columns, each
    value JSON text. `read_file` gives the records back unchanged.

    Args:
        dataset: The dataset.
        path: The file; its extension chooses the format.

    Raises:
        DatasetFormatError: the extension is neither `.jsonl` nor `.parquet`.
        DatasetError: the file cannot be written (nothing was).
    """
    file = Path(path)
    fmt = _format(file)
    if fmt == "parquet":
        pa, pq = _pyarrow()
    else:
        pa = pq = None
    with _atomic(file) as partial:
        if fmt == "jsonl":
            with partial.open("w", encoding="utf-8", newline="\n") as out:
                for record in dataset.records:
                    out.write(_encode(record.to_dict()) + "\n")
        else:
            assert pa is not None and pq is not None
            records = dataset.records
            columns = {
                "id": pa.array([record.id for record in records], type=pa.string()),
                **{
                    name: pa.array([_encode(getattr(record, name)) for record in records], type=pa.string())
                    for name in COLUMNS[1:]
                },
            }
            with partial.open("wb") as out:  # opened here: a missing folder is an OSError like JSONL's
                pq.write_table(pa.table(columns), out)
