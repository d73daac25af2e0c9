"""Several candidates in one replay (issue 13, item 7): one shared baseline, one Holm family across them all, a
comparison matrix, exit 0 only when every candidate passes."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptops import replay
from promptops.cli import app
from promptops.replay._gates import evaluate, evaluate_many, parse_gates
from promptops.replay._json import SCHEMA_VERSION
from promptops.replay._stats import summarize
from tests.conftest import Registry
from tests.unit.test_replay import PRODUCTION, TEXTS, App, write_dataset

COUNTING_APP = """
import collections

import promptops

CALLS = collections.Counter()


@promptops.track(prompt="PROMPT_NAME")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    CALLS[prompt.version] += 1
    return prompt.format(text=text)
"""


@pytest.fixture
def counting(local_registry: Registry, prompt_name: str, tmp_path: Path) -> App:
    application = App(local_registry, prompt_name, tmp_path, COUNTING_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("same", PRODUCTION)
    application.register("bad", "TL;DR.")
    application.register("close", "Summarize the ticket briefly. Ticket: {{ text }}")
    return application


def dataset(tmp_path: Path) -> str:
    return write_dataset(tmp_path / "tickets.jsonl", [{"inputs": {"text": text}} for text in TEXTS])


def test_the_baseline_runs_once_for_every_candidate_and_each_is_judged(counting: App, tmp_path: Path) -> None:
    versions = counting.versions
    result = replay.run(
        counting.target, candidate=[versions["same"], versions["bad"]], baseline=str(versions["v1"]),
        dataset=dataset(tmp_path), log_to_mlflow=False, fresh=True,
    )  # fmt: skip
    calls = importlib.import_module(counting.module).CALLS
    assert calls == {versions["v1"]: 2 * len(TEXTS), versions["same"]: len(TEXTS), versions["bad"]: len(TEXTS)}
    assert result.calls == 4 * len(TEXTS)  # not 6: the reference and the re-run are shared
    same, bad = result.candidates
    assert (same.label, same.version, bad.label, bad.version) == (
        str(versions["same"]), versions["same"], str(versions["bad"]), versions["bad"]
    )  # fmt: skip
    assert same.passed and not bad.passed and not result.passed  # every candidate must pass
    assert result.best == same.label
    # the single-candidate fields are the first candidate's
    assert result.candidate.version == versions["same"] and result.gates == same.gates
    assert result.metrics == same.metrics and result.records == same.records
    assert bad.metrics["rougeL"].delta is not None and bad.metrics["rougeL"].delta < -0.5
    # one family for Holm: the non-inferiority gates of both candidates
    assert all("Holm p" in gate.detail for gate in same.gates + bad.gates if "noninferior" in gate.expr)
    sys.modules.pop(counting.module, None)


def test_json_matrix_and_exit_code_from_the_cli(counting: App, tmp_path: Path) -> None:
    versions = counting.versions
    out = tmp_path / "out.json"
    arguments = [
        "replay", counting.target, "--candidate", str(versions["close"]), "--candidate", str(versions["same"]),
        "--baseline", str(versions["v1"]), "--dataset", dataset(tmp_path), "--no-mlflow", "--json", str(out),
        "--report", str(tmp_path / "report.html"), "--gate", "rougeL.mean >= 0.6",
    ]  # fmt: skip
    outcome = CliRunner().invoke(app, arguments)
    document = json.loads(out.read_text())
    assert outcome.exit_code == 0, outcome.output
    assert document["schema_version"] == SCHEMA_VERSION == 2
    labels = [entry["label"] for entry in document["candidates"]]
    assert labels == [str(versions["close"]), str(versions["same"])]
    assert all(set(entry) >= {"label", "version", "passed", "metrics", "gates"} for entry in document["candidates"])
    first = document["candidates"][0]
    assert document["metrics"] == first["metrics"] and document["gates"] == first["gates"]
    assert document["candidate"]["version"] == first["version"] == versions["close"]
    assert document["best"] == str(versions["same"])  # rougeL 1.0 against the baseline beats the shorter prompt
    assert f"best passing candidate: {versions['same']}" in outcome.output
    html = (tmp_path / "report.html").read_text()
    assert 'id="candidates"' in html and html.count('class="best"') == 1
    # a failing candidate fails the run, whichever position it has
    failing = [*arguments[:6], "--candidate", str(versions["bad"]), *arguments[6:]]
    outcome = CliRunner().invoke(app, failing)
    document = json.loads(out.read_text())
    assert outcome.exit_code == 1 and not document["passed"]
    assert [entry["passed"] for entry in document["candidates"]] == [True, True, False]


def test_one_holm_family_across_candidates_is_the_same_as_one_run_with_every_gate() -> None:
    gates = parse_gates(["score noninferior 0.05", "score.mean >= 0.5"])
    deltas = {"a": [0.01, -0.02, 0.03, -0.01, 0.0, 0.02] * 5, "b": [-0.03, -0.05, 0.0, -0.04, -0.02, 0.01] * 5}
    sides = {}
    for name, values in deltas.items():
        summary, sample = summarize("score", [0.8] * len(values), [0.8 + d for d in values], higher_is_better=True)
        sides[name] = ({"score": summary}, {"score": sample})
    joint = evaluate_many(gates, [sides["a"], sides["b"]])
    renamed = parse_gates(["a noninferior 0.05", "a.mean >= 0.5", "b noninferior 0.05", "b.mean >= 0.5"])
    merged_summaries = {name: side[0]["score"] for name, side in sides.items()}
    merged_samples = {name: side[1]["score"] for name, side in sides.items()}
    single = evaluate(renamed, merged_summaries, merged_samples)
    strip = [(result.passed, result.value, result.detail) for result in single]
    assert [(r.passed, r.value, r.detail) for r in joint[0] + joint[1]] == strip
    alone = evaluate(gates, *sides["b"])  # without the other candidate the family is smaller
    assert alone[0].value != joint[1][0].value or alone[0].detail != joint[1][0].detail


def test_every_candidate_gets_its_own_report_detail_and_junit_suite(counting: App, tmp_path: Path) -> None:
    # Issue 13 item 6: not only the first candidate's records, gates and metrics.
    import re
    import xml.etree.ElementTree as ET

    versions = counting.versions
    same, bad = str(versions["same"]), str(versions["bad"])
    outcome = CliRunner().invoke(app, [
        "replay", counting.target, "--candidate", same, "--candidate", bad, "--baseline", str(versions["v1"]),
        "--dataset", dataset(tmp_path), "--no-mlflow", "--report", "report.html", "--junit", "junit.xml",
        "--gate", "rougeL.mean >= 0.6",
    ])  # fmt: skip
    assert outcome.exit_code == 1, outcome.output
    html = (tmp_path / "report.html").read_text()
    first = html[html.index('<section id="records"') : html.index('<div class="cand" id="candidate-1">')]
    second = html[html.index('<div class="cand" id="candidate-1">') :]
    assert f'Candidate v{bad}: <span class="worse">FAIL</span>' in second
    assert '<section id="metrics-1"' in second and '<section id="records-1" class="records">' in second
    assert first.count('<details class="rec') == second.count('<details class="rec') == len(TEXTS)
    assert "TL;DR." in second and "TL;DR." not in first  # each section shows its own candidate's outputs
    assert re.search(r"<li class=\"gate fail\"><span class=\"mk\">✗</span><code>rougeL.mean &gt;= 0.6</code>", second)
    assert '<a href="#candidate-1">' in html  # the matrix links to each candidate's part

    suites = ET.parse(tmp_path / "junit.xml").getroot().findall("testsuite")
    assert [suite.get("name") for suite in suites] == [
        f"promptops replay {counting.target} candidate {same}",
        f"promptops replay {counting.target} candidate {bad}",
    ]
    failures = [[case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
                for suite in suites]  # fmt: skip
    assert failures == [[], ["gate: rougeL.mean >= 0.6"]]
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.get("failures") == "1" and root.get("tests") == str(sum(len(s.findall("testcase")) for s in suites))
