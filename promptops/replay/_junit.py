"""JUnit XML for a replay (`promptops replay --junit FILE`), so CI systems show gates as tests.

One `<testsuite>` per replay, one `<testcase>` per gate (a `<failure>` with the gate's detail when it did not
hold), and a `run completed` test case that fails when the run was interrupted: CI then shows exactly which
promotion criterion failed, in the same place as the unit tests. A replay of several candidates has a
`<testsuite>` per candidate (`promptops replay TARGET candidate LABEL`), each with its own gates and metrics.
"""

from __future__ import annotations

import datetime
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._result import CandidateResult, GateResult, MetricSummary, RecordResult, ReplayResult, VersionInfo


__all__ = ["result_to_junit"]

# XML 1.0 cannot carry these even escaped (a parser rejects `&#1;`): drop them from user-derived text.
_INVALID_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: object) -> str:
    return _INVALID_XML.sub("\ufffd", str(value))


def _side(info: VersionInfo | CandidateResult) -> str:
    if info.version is not None and str(info.version) != info.label:
        return f"{info.label} (version {info.version})"
    versions = getattr(info, "versions", [])
    if info.version is None and versions:
        return f"{info.label} (versions {', '.join(str(version) for version in versions)})"
    return info.label


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _metric_line(summary: MetricSummary) -> str:
    ci = f" [{_number(summary.ci_low)}, {_number(summary.ci_high)}]" if summary.ci_low is not None else ""
    return (
        f"{summary.name}: baseline {_number(summary.baseline)}, candidate {_number(summary.candidate)}, "
        f"delta {_number(summary.delta)}{ci} (n={summary.n})"
    )


def _sub(parent: ET.Element, tag: str, attributes: dict[str, str] | None = None) -> ET.Element:
    return ET.SubElement(parent, tag, {key: _text(value) for key, value in (attributes or {}).items()})


# One testsuite's content: candidate label (None: the only one), side, gates, metrics, records, verdict.
_Arm = tuple[
    "str | None",
    "VersionInfo | CandidateResult",
    "list[GateResult]",
    "dict[str, MetricSummary]",
    "Sequence[RecordResult]",
    bool,
]


def result_to_junit(result: ReplayResult) -> str:
    """JUnit XML for a replay: a test case per gate and one for the run's completion.

    Args:
        result: The replay's result.

    Returns:
        An XML document (with declaration) whose root `<testsuites>` holds one
        `<testsuite name="promptops replay TARGET">`, or with several candidates one
        `<testsuite name="promptops replay TARGET candidate LABEL">` per candidate, in the order given.
    """
    incomplete = result.interrupted or result.stopped is not None
    arms: list[_Arm] = [(c.label, c, c.gates, c.metrics, c.records, c.passed) for c in result.candidates]
    if len(arms) < 2:  # one suite, named as before several candidates existed
        arms = [(None, result.candidate, result.gates, result.metrics, result.records, result.passed)]
    tests = sum(len(gates) + 1 for _, _, gates, _, _, _ in arms)
    failures = sum(sum(1 for gate in gates if not gate.passed) + incomplete for _, _, gates, _, _, _ in arms)
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0", "skipped": "0"}
    seconds = result.duration_s
    duration = f"{seconds:.3f}" if math.isfinite(seconds) and seconds > 0 else "0.000"
    root = ET.Element("testsuites", {"name": "promptops replay", **counts, "time": duration})
    for label, side, gates, metrics, records, passed in arms:
        _suite(root, result, label, side, gates, list(metrics.values()), records, passed, duration)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(
    root: ET.Element,
    result: ReplayResult,
    label: str | None,
    side: VersionInfo | CandidateResult,
    gates: list[GateResult],
    metrics: list[MetricSummary],
    records: Sequence[RecordResult],
    passed: bool,
    duration: str,
) -> None:
    """One candidate's `<testsuite>`: its gates, the run's completion, its metrics."""
    classname = _text(f"promptops.replay.{result.prompt_name or result.target}")
    if label is not None:
        classname += _text(f".candidate_{label}")
    incomplete = result.interrupted or result.stopped is not None
    failures = sum(1 for gate in gates if not gate.passed) + (1 if incomplete else 0)
    started_at = result.started_at
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=datetime.timezone.utc)
    counts = {"tests": str(len(gates) + 1), "failures": str(failures), "errors": "0", "skipped": "0"}
    name = f"promptops replay {result.target}" + (f" candidate {label}" if label is not None else "")
    suite = _sub(
        root,
        "testsuite",
        {"name": name, **counts, "time": duration, "timestamp": started_at.isoformat(timespec="seconds")},
    )
    properties = _sub(suite, "properties")
    count = len(records)
    errors = sum(1 for record in records if record.error is not None)
    for key, value in (
        ("target", result.target),
        ("prompt_name", result.prompt_name),
        ("candidate", _side(side)),
        ("baseline", _side(result.baseline)),
        ("dataset", result.dataset),
        ("scorers", ", ".join(result.scorers)),
        ("records", str(count)),
        ("errors", str(errors)),
        ("skipped", ", ".join(f"{reason}={number}" for reason, number in result.skipped.items()) or "0"),
        ("repeats", str(result.repeats)),
        ("passed", "true" if passed else "false"),
        ("mlflow_run_id", result.mlflow_run_id or ""),
    ):
        _sub(properties, "property", {"name": key, "value": value})

    for gate in gates:
        case = _sub(suite, "testcase", {"classname": classname, "name": f"gate: {gate.expr}", "time": "0"})
        if not gate.passed:
            failure = _sub(case, "failure", {"message": gate.detail or "gate failed", "type": "GateFailed"})
            failure.text = _text(f"gate {gate.expr!r} failed: {gate.detail} (value: {_number(gate.value)})")
        else:
            _sub(case, "system-out").text = _text(gate.detail)

    case = _sub(suite, "testcase", {"classname": classname, "name": "run completed", "time": duration})
    if incomplete:
        why = "the run was interrupted" if result.interrupted else str(result.stopped)
        message = f"{why}: results cover the {count} records that finished"
        _sub(case, "failure", {"message": message, "type": "Interrupted"}).text = _text(message)

    summary = [
        f"candidate {_side(side)} vs baseline {_side(result.baseline)} on {result.dataset}: "
        f"{count} records, {errors} errors",
        *(_metric_line(summary) for summary in metrics),
    ]
    _sub(suite, "system-out").text = _text("\n".join(summary))
