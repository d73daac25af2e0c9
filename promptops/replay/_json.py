"""The JSON document of a replay (`promptops replay --json FILE`, `ReplayResult.to_json()`).

The schema is a public contract that CI tools parse (DESIGN.md); keys may be added, never renamed or removed,
and `schema_version` changes when a key changes meaning. The document is strict JSON: NaN and infinities
(which `json.dumps` would write as bare `NaN`, rejected by most parsers) become `null`, and outputs that are
not JSON data (pydantic models, dataclasses, ...) are converted the way captures convert them.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import math
import numbers
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, TextIO

from .._serialize import to_jsonable

if TYPE_CHECKING:
    from ._result import CandidateResult, GateResult, MetricSummary, RecordResult, ReplayResult, VersionInfo

__all__ = ["SCHEMA_VERSION", "json_text", "jsonable", "result_to_json", "write_json", "write_result"]

SCHEMA_VERSION: Final = 2
"""Version of the document's schema; bumped when a key changes meaning (adding keys does not bump it).

2: several candidates in one run: `passed` means every candidate passed; `candidates` lists each (`label`,
`version`, `passed`, `metrics`, `gates`) and `best` names the best passing one; `candidate`, `gates`,
`metrics` and `records` are the first candidate's, as in version 1.
"""

_GATE_KEYS: Final = ("expr", "passed", "value", "detail")
_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def jsonable(value: Any) -> Any:
    """Strict JSON data for a value: non-finite floats become `None`, other objects are converted.

    Args:
        value: JSON data as stored (usually), or whatever a target returned.

    Returns:
        Dicts with string keys, lists, strings, finite numbers, booleans and `None`.
    """
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or bool subclass would otherwise be written by its repr
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        items: dict[Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
        return {_key(key): jsonable(item) for key, item in items.items()}
    if isinstance(value, (list, tuple)):
        sequence: list[Any] | tuple[Any, ...] = value  # pyright: ignore[reportUnknownVariableType]
        return [jsonable(item) for item in sequence]
    if isinstance(value, numbers.Integral):  # numpy integers
        return int(value)
    if isinstance(value, numbers.Real):  # numpy floats, Decimal-free reals
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    # Anything else (pydantic models, dataclasses, sets, bytes, ...) the way captures record it; strings are
    # not truncated here: the document is the complete record of the run.
    return jsonable(to_jsonable(value, max_chars=sys.maxsize))


def _text(text: str) -> str:
    # A lone surrogate (from a target's output) cannot be written as UTF-8: the file would fail to save.
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _text(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int | float):
        return json.dumps(key) if math.isfinite(key) else str(key)
    return str(key)


def _fields(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    # Field by field rather than `dataclasses.asdict`: that deep-copies every output, and fails on objects
    # that cannot be copied; new fields of the result model appear in the document without a change here.
    return {
        field.name: jsonable(getattr(obj, field.name)) for field in dataclasses.fields(obj) if field.name not in skip
    }


def _version(info: VersionInfo) -> dict[str, Any]:
    return _fields(info)


def _gate(gate: GateResult) -> dict[str, Any]:
    data = {key: jsonable(getattr(gate, key)) for key in _GATE_KEYS}
    data.update(_fields(gate, skip=_GATE_KEYS))
    return data


def _metric(summary: MetricSummary) -> dict[str, Any]:
    return _fields(summary)


def _candidate(candidate: CandidateResult) -> dict[str, Any]:
    return {
        "label": candidate.label,
        "version": candidate.version,
        "passed": bool(candidate.passed),
        "metrics": {str(name): _metric(summary) for name, summary in candidate.metrics.items()},
        "gates": [_gate(gate) for gate in candidate.gates],
    }


def _record(record: RecordResult) -> dict[str, Any]:
    return _fields(record)


def result_to_json(
    result: ReplayResult, *, shown: Callable[[RecordResult], RecordResult] | None = None
) -> dict[str, Any]:
    """The JSON document of a replay, as data.

    Args:
        result: The replay's result.
        shown: Applied to each record before it is converted (`redaction()`: what the reports show).

    Returns:
        `{"schema_version", "passed", "target", "prompt_name", "candidate", "baseline", "dataset",
        "dataset_fingerprint", "scorers", "gates", "metrics", "records", "skipped", "repeats", "workers",
        "interrupted", "started_at", "duration_s", "mlflow_run_id", "calls", "reused", "infrastructure_errors",
        "retries", "rate_limited", "lowest_concurrency", "could_not_measure", "usage", "spent", "stopped",
        "candidates", "best"}`; `json.dumps(..., allow_nan=False)` accepts it.
    """
    return _document(result, [_record(record) for record in _each(result, shown)])


def _each(result: ReplayResult, shown: Callable[[RecordResult], RecordResult] | None) -> Iterator[RecordResult]:
    return iter(result.records) if shown is None else map(shown, result.records)


def _document(result: ReplayResult, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    started_at = result.started_at
    if started_at.tzinfo is None:  # the model promises UTC; say so explicitly in the text
        started_at = started_at.replace(tzinfo=datetime.timezone.utc)
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": bool(result.passed),
        "target": result.target,
        "prompt_name": result.prompt_name,
        "candidate": _version(result.candidate),
        "baseline": _version(result.baseline),
        "dataset": result.dataset,
        "dataset_fingerprint": result.dataset_fingerprint,
        "scorers": list(result.scorers),
        "gates": [_gate(gate) for gate in result.gates],
        "metrics": {str(name): _metric(summary) for name, summary in result.metrics.items()},
        "records": records,
        "skipped": {str(reason): int(count) for reason, count in result.skipped.items()},
        "repeats": result.repeats,
        "workers": result.workers,
        "interrupted": bool(result.interrupted),
        "started_at": started_at.isoformat(),
        "duration_s": jsonable(result.duration_s),
        "mlflow_run_id": result.mlflow_run_id,
        # issue 13: what the provider did to the run, and whether it could be measured at all
        "calls": result.calls,
        "reused": result.reused,
        "infrastructure_errors": result.infrastructure_errors,
        "retries": result.retries,
        "rate_limited": result.rate_limited,
        "lowest_concurrency": result.lowest_concurrency,
        "could_not_measure": result.could_not_measure,
        # issue 13: tokens and cost per side, what this run spent, and whether --max-cost stopped it
        "usage": {str(side): _fields(total) for side, total in result.usage.items()},
        "spent": jsonable(result.spent),
        "stopped": result.stopped,
        # schema 2: several candidates
        "candidates": [_candidate(candidate) for candidate in result.candidates],
        "best": result.best,
    }


def write_result(
    result: ReplayResult,
    out: TextIO,
    *,
    shown: Callable[[RecordResult], RecordResult] | None = None,
    indent: int | None = 2,
) -> None:
    """Write the JSON document of a replay (what `--json FILE` holds), one record at a time.

    The text is `json_text()`'s, byte for byte, but neither it nor the document is ever whole in memory: each
    record is redacted (`shown`), converted, encoded and written, then dropped (issue 15).

    Args:
        result: The replay's result.
        out: Where the text goes.
        shown: Applied to each record before it is converted (`redaction()`: what the reports show).
        indent: Indentation of the text; `None` for the most compact form.
    """
    write_json(_document(result, map(_record, _each(result, shown))), out, indent=indent)


def write_json(document: dict[str, Any], out: TextIO, *, indent: int | None = 2) -> None:
    """Write a replay's JSON document, as `json.dumps(document, indent=indent, ...)` would, plus a newline.

    `document["records"]` may be any iterable (a generator: each record is encoded and written as it comes). Both
    texts are the same because JSON text never holds a raw newline inside a string: an item's own encoding,
    with its lines indented one level further, is what the whole-document encoding writes for it.

    Args:
        document: The document (`result_to_json()`'s keys, records possibly lazy).
        out: Where the text goes.
        indent: Indentation of the text; `None` for the most compact form.
    """
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=indent).encode
    if indent is None:
        opening, separator, closing = "", ", ", ""
        nested = opening, separator, closing
    else:
        pad = " " * indent
        opening, separator, closing = "\n" + pad, ",\n" + pad, "\n"
        nested = "\n" + pad * 2, ",\n" + pad * 2, "\n" + pad

    def shifted(text: str, depth: int) -> str:
        return text if indent is None else text.replace("\n", "\n" + " " * (indent * depth))

    out.write("{")
    for position, (key, value) in enumerate(document.items()):
        out.write((separator if position else opening) + encode(key) + ": ")
        if key != "records":
            out.write(shifted(encode(value), 1))
            continue
        count = 0
        for count, record in enumerate(value, 1):
            out.write(("[" + nested[0] if count == 1 else nested[1]) + shifted(encode(record), 2))
        out.write(nested[2] + "]" if count else "[]")
    out.write(closing + "}\n")


def json_text(result: ReplayResult, *, indent: int | None = 2) -> str:
    """The JSON document of a replay, as text (what `--json FILE` writes).

    Args:
        result: The replay's result.
        indent: Indentation of the text; `None` for the most compact form.

    Returns:
        Strict JSON text (UTF-8 characters kept as they are, ending with a newline).
    """
    out = io.StringIO()
    write_result(result, out, indent=indent)
    return out.getvalue()
