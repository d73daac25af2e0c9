"""Replay outputs: the JSON document, JUnit XML and the self-contained HTML report, rendered from hand-built results."""

from __future__ import annotations

import dataclasses
import datetime
import html
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from promptops.replay._json import SCHEMA_VERSION, json_text, jsonable, result_to_json, write_result
from promptops.replay._junit import result_to_junit
from promptops.replay._report import PAGE_SIZE, iter_html, render_html
from promptops.replay._report._diff import word_diff
from promptops.replay._result import (
    CandidateResult,
    GateResult,
    MetricSummary,
    RecordResult,
    ReplayResult,
    VersionInfo,
    redaction,
)

XSS = "<script>alert(1)</script>"
STARTED = datetime.datetime(2025, 11, 3, 9, 30, tzinfo=datetime.timezone.utc)


@dataclasses.dataclass
class Summary:
    title: str
    tags: set[str]


def record(rid: str, baseline: Any, candidate: Any, delta: float | None, **kwargs: Any) -> RecordResult:
    scores = {"rougeL": None if delta is None else 1.0 + delta}
    baseline_scores = {"rougeL": None if delta is None else 1.0}
    kwargs.setdefault("inputs", {"text": f"input of {rid}"})
    kwargs.setdefault("latency_ms", 100.0 + len(rid) * 10)
    kwargs.setdefault("baseline_latency_ms", 100.0)
    latency, baseline_latency = kwargs["latency_ms"], kwargs["baseline_latency_ms"]
    scores["latency"], baseline_scores["latency"] = latency, baseline_latency
    kwargs.setdefault("deltas", {}).setdefault("latency", latency - baseline_latency)
    return RecordResult(
        id=rid,
        baseline_output=baseline,
        candidate_output=candidate,
        scores=scores | kwargs.pop("scores", {}),
        baseline_scores=baseline_scores | kwargs.pop("baseline_scores", {}),
        deltas={"rougeL": delta} | kwargs.pop("deltas", {}),
        **kwargs,
    )


def sample_records() -> list[RecordResult]:
    return [
        record("same", "The report is ready.", "The report is ready.", 0.0, trace_id="tr-same"),
        record(
            "cat",
            "The cat sat on the mat.",
            "The dog sat on the mat.",
            -0.25,
            trace_id="tr-cat",
            baseline_trace_id="tr-cat-base",
            reasons={"rougeL": "one word differs"},
            latency_ms=120.0,
            baseline_latency_ms=100.0,
        ),
        record("unicode", "Zürich und 東京 sind groß 🚀", "Zürich und 東京 sind sehr groß 🚀", -0.05),
        record("boom", "A fine answer.", None, -1.0, error="TimeoutError: the model took longer than 30 s"),
        record("nobase", None, "Only the candidate answered.", None),
        record("huge", "word " * 50_000, "word " * 49_000 + "other " * 1_000, -0.02, inputs={"text": "x" * 30_000}),
        record(
            "json",
            {"summary": "short", "score": 3, "tags": ["a", "b"]},
            {"summary": "much longer summary", "score": 4, "tags": ["a"]},
            0.1,
            expected={"summary": "short"},
        ),
        record("xss", "harmless", XSS, -0.5, inputs={"html": XSS, "nested": {"k": [1, 2.5, None]}}),
        record("better", "Old wording here.", "New and improved wording here.", 0.3),
        record("baseerr", None, "The baseline raised.", None, baseline_error="ValueError: bad input"),
    ]


def sample_result(records: list[RecordResult] | None = None, **kwargs: Any) -> ReplayResult:
    values: dict[str, Any] = {
        "target": "myapp.llm:summarize",
        "prompt_name": "summarize",
        "candidate": VersionInfo("5", 5, "Summarize briefly:\n{{ text }}\nBe concise."),
        "baseline": VersionInfo("captured", None, "Summarize:\n{{ text }}\nBe concise.", [3, 4]),
        "dataset": "summarize-nov",
        "scorers": ["rougeL", "latency"],
        "gates": [
            GateResult("rougeL.delta >= -0.05", False, -0.21, "-0.21 < -0.05"),
            GateResult("latency.p95_ratio <= 1.3", True, 1.1, "1.1 <= 1.3"),
        ],
        "metrics": {
            "rougeL": MetricSummary("rougeL", True, 8, 1.0, 0.79, -0.21, -0.4, -0.05, p50=0.9, p95=1.1, ratio=0.79),
            "latency": MetricSummary(
                "latency", False, 8, 100.0, 120.0, 20.0, float("nan"), float("inf"), p95_ratio=1.1, noise=None
            ),
        },
        "records": sample_records() if records is None else records,
        "passed": False,
        "skipped": {"non_replayable": 3, "truncated": 1},
        "repeats": 3,
        "workers": 8,
        "started_at": STARTED,
        "duration_s": 12.5,
        "mlflow_run_id": "0123abcd",
    }
    values.update(kwargs)
    return ReplayResult(**values)


# ------------------------------------------------------------------------------------------------------ JSON


def test_json_document_has_the_stable_schema() -> None:
    result = sample_result()
    data = result_to_json(result)
    assert set(data) >= {
        "schema_version", "passed", "candidate", "baseline", "gates", "metrics", "records", "target",
        "prompt_name", "dataset", "scorers", "skipped", "repeats", "workers", "interrupted", "started_at",
        "duration_s", "mlflow_run_id",
    }  # fmt: skip
    assert data["schema_version"] == SCHEMA_VERSION == 2  # 2: several candidates (`candidates`, `best`)
    assert data["passed"] is False
    assert data["candidate"] == {"label": "5", "version": 5, "template": result.candidate.template, "versions": []}
    assert data["baseline"]["versions"] == [3, 4]
    assert data["gates"][0] == {
        "expr": "rougeL.delta >= -0.05",
        "passed": False,
        "value": -0.21,
        "detail": "-0.21 < -0.05",
    }
    summary_fields = {field.name for field in dataclasses.fields(MetricSummary)}
    for metric in data["metrics"].values():
        assert set(metric) >= {"baseline", "candidate", "delta", "ci_low", "ci_high"} | summary_fields
    assert data["metrics"]["rougeL"]["delta"] == -0.21
    record_fields = {field.name for field in dataclasses.fields(RecordResult)}
    for item in data["records"]:
        assert set(item) >= {"id", "inputs", "baseline_output", "candidate_output", "scores", "error"} | record_fields
    assert [item["id"] for item in data["records"]] == [item.id for item in result.records]  # dataset order
    assert data["records"][1]["scores"] == {"rougeL": 0.75, "latency": 120.0}
    assert data["skipped"] == {"non_replayable": 3, "truncated": 1}
    assert datetime.datetime.fromisoformat(data["started_at"]) == STARTED
    assert data["mlflow_run_id"] == "0123abcd"


def test_json_is_strict_non_finite_numbers_become_null() -> None:
    records = sample_records()
    records[0].scores["latency"] = float("nan")
    records[0].deltas["latency"] = float("-inf")
    data = result_to_json(sample_result(records, duration_s=float("inf")))
    text = json.dumps(data, allow_nan=False)  # raises on NaN / Infinity
    assert data["metrics"]["latency"]["ci_low"] is None
    assert data["metrics"]["latency"]["ci_high"] is None
    assert data["records"][0]["scores"]["latency"] is None
    assert data["records"][0]["deltas"]["latency"] is None
    assert data["duration_s"] is None
    assert json.loads(text) == data


def test_json_text_round_trips_and_keeps_unicode() -> None:
    result = sample_result()
    text = json_text(result)
    assert "東京" in text and "🚀" in text
    assert json.loads(text) == result_to_json(result)
    assert "\n" not in json_text(result, indent=None).rstrip("\n")


def test_json_converts_outputs_that_are_not_json_data() -> None:
    odd = {
        1: Summary("t", {"b", "a"}),
        None: (1, 2),
        "when": datetime.date(2025, 1, 2),
        "bytes": b"hi",
        "nan": [float("nan")],
    }
    converted = jsonable(odd)
    assert converted == {
        "1": {"title": "t", "tags": ["a", "b"]},
        "null": [1, 2],
        "when": "2025-01-02",
        "bytes": "hi",
        "nan": [None],
    }
    records = [record("odd", odd, Summary("x", set()), 0.0)]
    data = result_to_json(sample_result(records, started_at=datetime.datetime(2025, 1, 1, 12, 0)))
    json.dumps(data, allow_nan=False)
    assert data["records"][0]["candidate_output"] == {"title": "x", "tags": []}
    assert data["started_at"] == "2025-01-01T12:00:00+00:00"  # naive times are the model's UTC


# ----------------------------------------------------------------------------------------------------- JUnit


def parse_junit(text: str) -> ET.Element:
    root = ET.fromstring(text.encode("utf-8"))
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def test_lone_surrogates_do_not_break_writing_the_files() -> None:
    records = [record("bad\ud800id", "fine", "broken \udc00 text", -0.1, inputs={"k\ud801": "v\udfff"})]
    result = sample_result(records, gates=[GateResult("rougeL.mean >= 0.5", False, 0.1, "bad \ud800")])
    page = render_html(result)
    page.encode("utf-8")
    assert "broken \ufffd text" in page
    text = json_text(result)
    assert json.loads(text.encode("utf-8"))["records"][0]["inputs"] == {"k\ufffd": "v\ufffd"}
    parse_junit(result_to_junit(result))


def test_junit_has_a_test_case_per_gate_and_fails_the_failed_ones() -> None:
    result = sample_result()
    suite = parse_junit(result_to_junit(result))
    assert suite.get("name") == "promptops replay myapp.llm:summarize"
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [
        "gate: rougeL.delta >= -0.05",
        "gate: latency.p95_ratio <= 1.3",
        "run completed",
    ]
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "0"
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message") == "-0.21 < -0.05"
    assert cases[1].find("failure") is None and cases[2].find("failure") is None
    properties = {prop.get("name"): prop.get("value") for prop in suite.iter("property")}
    assert properties["candidate"] == "5"
    assert properties["baseline"] == "captured (versions 3, 4)"
    assert properties["dataset"] == "summarize-nov"
    assert properties["records"] == str(len(result.records))


def test_junit_interrupted_run_fails_run_completed() -> None:
    gates = [GateResult("rougeL.mean >= 0.5", True, 0.8, "0.8 >= 0.5")]
    result = sample_result(gates=gates, interrupted=True, passed=False, duration_s=float("inf"))
    suite = parse_junit(result_to_junit(result))
    assert suite.get("time") == "0.000"
    assert suite.get("failures") == "1"
    completed = suite.findall("testcase")[-1]
    assert completed.get("name") == "run completed"
    failure = completed.find("failure")
    assert failure is not None and "interrupted" in (failure.get("message") or "")


def test_junit_passing_run_and_hostile_text_stay_valid_xml() -> None:
    gates = [GateResult('semantic.mean >= 0.8 <&"\x01>', True, 0.9, "ok \x00\x1b </testcase>")]
    text = result_to_junit(sample_result(gates=gates, passed=True, target="<app>:f&g", dataset="d\x07"))
    suite = parse_junit(text)
    assert suite.get("failures") == "0"
    assert suite.get("name") == "promptops replay <app>:f&g"
    assert suite.findall("testcase")[0].get("name") == 'gate: semantic.mean >= 0.8 <&"\ufffd>'


# ------------------------------------------------------------------------------------------------------ HTML


class TagBalance(HTMLParser):
    """Fails on a closing tag that does not match the open one: catches unbalanced markup we generate."""

    VOID = frozenset({"meta", "br", "input", "hr", "img", "link", "line", "rect"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.remote: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "action", "srcset", "xlink:href"} and value and re.match(r"\s*(\w+:|//)", value):
                self.remote.append(value)
        if tag == "script":
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def check_markup(page: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.stack == ["html"] or parser.stack == [], parser.stack[-5:]
    return parser


def section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}"')
    return page[start : page.index("</section>", start)]


def all_records(page: str, name: str = "records") -> list[str]:
    """Every record's HTML in a records section: the first page as it loads, then the script's data, in order."""
    part = section(page, name)
    listed = part[part.index('<div class="reclist"') :].split("</script>")[0].split('<p class="muted small nojs">')[0]
    shown = ['<details class="rec' + item for item in listed.split('<details class="rec')[1:]]
    shown = [item[: item.rindex("</details>") + len("</details>")] for item in shown]
    pages = re.findall(r'<script type="application/json" class="recpage">(.*?)</script>', part, re.S)
    return shown + [item for page in pages for item in json.loads(page)]


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(sample_result())


def test_html_verdict_comes_first_with_the_failed_gate_and_why(page: str) -> None:
    verdict = page[page.index("<body>") : page.index('<section id="facts">')]
    assert '<header class="verdict fail"><div class="big">FAIL</div>' in verdict
    assert "<code>rougeL.delta &gt;= -0.05</code>" in verdict and "-0.21 &lt; -0.05" in verdict
    assert "1 of 2 gates passed" in verdict and "10 records · 1 error ·" in verdict
    assert verdict.index("rougeL.delta") < verdict.index("latency.p95_ratio")  # failed gates listed first
    assert "<title>FAIL · promptops replay · myapp.llm:summarize</title>" in page
    passing = render_html(sample_result(passed=True, gates=[]))
    assert '<div class="big">PASS</div>' in passing and "no gates set" in passing


def test_html_run_facts(page: str) -> None:
    facts = section(page, "facts")
    for text in [
        "myapp.llm:summarize",
        "summarize-nov",
        "v5",
        "captured (v3, v4)",
        "non_replayable: 3",
        "truncated: 1",
    ]:
        assert text in facts
    assert "candidate 1 (10.0%) · baseline 1" in facts  # errors
    assert "<dt>Baseline repeats</dt><dd>3 per record</dd>" in facts and "12.5 s" in facts and "0123abcd" in facts
    assert "2025-11-03 09:30:00 UTC" in facts


def test_html_metric_table_and_distribution_plots(page: str) -> None:
    metrics = section(page, "metrics")
    assert "<code>rougeL</code>" in metrics and "<code>latency</code>" in metrics
    assert '<td class="num delta worse">-0.210<div class="ci">[-0.400, -0.050]</div></td>' in metrics
    # latency's CI is not finite: its delta is shown but not claimed significant
    assert "+20.00" in metrics and "[NaN, +∞]" in metrics
    assert '<div class="fail" title="-0.21 &lt; -0.05">✗ <code>rougeL.delta &gt;= -0.05</code></div>' in metrics
    assert '<div class="ok" title="1.1 &lt;= 1.3">✓ <code>latency.p95_ratio &lt;= 1.3</code></div>' in metrics
    assert metrics.count("<svg") == 4  # values and deltas, per metric
    assert metrics.count("<rect") > 4


def test_html_gates_are_matched_to_their_metric() -> None:
    gates = [
        GateResult("rougeL noninferior 0.03", True, -0.01, "lower bound -0.01 > -0.03"),
        GateResult("rougeL@expected.mean >= 0.5", False, 0.4, "0.4 < 0.5"),
    ]
    metrics = {
        "rougeL": MetricSummary("rougeL", True, 2, 1.0, 0.9, -0.1, -0.2, 0.0),
        "rougeL@expected": MetricSummary("rougeL@expected", True, 2, 0.5, 0.4, -0.1, -0.2, 0.0),
    }
    rows = section(render_html(sample_result(gates=gates, metrics=metrics)), "metrics").split("<tr>")
    rouge = next(row for row in rows if row.startswith('<th scope="row"><code>rougeL</code>'))
    expected = next(row for row in rows if row.startswith('<th scope="row"><code>rougeL@expected</code>'))
    assert "rougeL noninferior 0.03" in rouge and "rougeL@expected" not in rouge
    assert "✗ <code>rougeL@expected.mean &gt;= 0.5</code>" in expected and "noninferior" not in expected


def test_html_histogram_counts_the_values() -> None:
    records = [record(str(i), "a", "b", -0.5 if i < 3 else 0.0) for i in range(10)]
    page = render_html(
        sample_result(records, metrics={"rougeL": MetricSummary("rougeL", True, 10, 1.0, 0.85, -0.15, -0.3, 0.0)})
    )
    plots = section(page, "metrics")
    # 0/1-like values are plotted per distinct value: 3 candidate values at 0.5, 7 at 1, 10 baseline at 1
    assert "<title>v5: 3 at 0.500</title>" in plots
    assert "<title>v5: 7 at 1</title>" in plots
    assert "<title>captured (v3, v4): 10 at 1</title>" in plots
    assert "<title>delta: 3 at -0.500</title>" in plots


def test_html_prompt_template_diff() -> None:
    page = render_html(sample_result())
    prompt = section(page, "prompt")
    assert "<td>Summarize <ins>briefly</ins>:</td>" in prompt  # a word-level highlight inside the changed line
    assert '<tr class="del">' in prompt and '<tr class="add">' in prompt
    assert "Be concise." in prompt and "1 line removed" in prompt and "1 line added" in prompt

    unknown = section(render_html(sample_result(baseline=VersionInfo("captured", None, None, [3, 4]))), "prompt")
    assert "baseline template is not known" in unknown and "span versions 3, 4" in unknown
    assert "Summarize briefly:" in unknown
    neither = render_html(sample_result(candidate=VersionInfo("5"), baseline=VersionInfo("captured")))
    assert "Neither template is known" in section(neither, "prompt")
    chat = json.dumps(
        [{"role": "system", "content": "Be brief.\nUse bullets."}, {"role": "user", "content": "{{ text }}"}]
    )
    same = section(
        render_html(sample_result(candidate=VersionInfo("5", 5, chat), baseline=VersionInfo("4", 4, chat))), "prompt"
    )
    assert "templates are identical" in same and "[system]\nBe brief.\nUse bullets.\n\n[user]" in same


def test_html_word_level_output_diff(page: str) -> None:
    records = section(page, "records")
    assert "The <del>cat </del>sat on the mat." in records
    assert "The <ins>dog </ins>sat on the mat." in records
    assert "sind <ins>sehr </ins>groß 🚀" in records
    assert '<span class="none">call raised</span>' in records  # candidate raised: no output
    assert '<span class="none">no output</span>' in records  # no baseline output
    assert records.count('<span class="none">call raised</span>') == 2  # and the baseline raised
    assert "TimeoutError: the model took longer than 30 s" in records
    assert "one word differs" in records  # a scorer's reason
    # JSON outputs are diffed as indented JSON
    assert "&quot;summary&quot;: &quot;<del>short</del>&quot;," in records
    assert "&quot;summary&quot;: &quot;<ins>much longer summary</ins>&quot;," in records


def test_html_marks_errors_and_changed_outputs_for_the_filters(page: str) -> None:
    flags = re.findall(r'<details class="rec[^"]*"( data-err="1")?( data-chg="1")?><summary><span class="rank">\d+</span>'
                       r'<span class="rid">(.*?)</span>', page)  # fmt: skip
    by_id = {rid: (bool(err), bool(chg)) for err, chg, rid in flags}
    assert by_id["boom"] == (True, True)
    assert by_id["same"] == (False, False)  # identical outputs, although latency differs
    assert by_id["cat"] == (False, True)
    assert by_id["nobase"] == (False, True)
    assert sum(err for err, _ in by_id.values()) == 1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("a, " * 1300, "b, " * 1300),  # few distinct tokens: minutes for plain difflib, bounded here
        ("x." * 2000, "x," * 2000),
        ("<td>1</td>" * 400, "<td>2</td>" * 400),
        ("head " + "word " * 800 + "tail", "head " + "word " * 799 + "tail"),
        ("", "only new"),
    ],
)
def test_word_diff_of_repetitive_texts_keeps_both_texts(old: str, new: str) -> None:
    left, right = word_diff(old, new)
    assert html.unescape(re.sub(r"</?del>", "", left)) == old
    assert html.unescape(re.sub(r"</?ins>", "", right)) == new
    assert "<ins>" not in left and "<del>" not in right


def test_html_escapes_everything_user_derived() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    records = [
        record(hostile, XSS, XSS + " now", -0.1, inputs={XSS: XSS}, error=XSS, reasons={"rougeL": XSS}, trace_id=XSS),
    ]
    result = sample_result(
        records,
        target=XSS,
        prompt_name=XSS,
        dataset=XSS,
        scorers=[XSS],
        gates=[GateResult(XSS, False, None, XSS)],
        candidate=VersionInfo(XSS, None, XSS + "</pre>"),
        baseline=VersionInfo(hostile, None, "x"),
        skipped={XSS: 1},
        mlflow_run_id=XSS,
    )
    page = render_html(result)
    assert XSS not in page and hostile not in page
    assert html.escape(XSS) in page
    parser = check_markup(page)
    assert parser.scripts == 1  # only ours
    assert not parser.remote


def test_html_loads_nothing_from_the_network(page: str) -> None:
    parser = check_markup(page)
    assert not parser.remote
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # the browser refuses any load, should a future change add one


def test_html_records_are_ordered_by_largest_change(page: str) -> None:
    ids = re.findall(r'<span class="rid">(.*?)</span>', page)
    assert ids == ["boom", "xss", "cat", "unicode", "huge", "same", "json", "better", "nobase", "baseerr"]
    # lower-is-better key metric: the largest increase first
    records = [
        record("slower", "a", "a", 0.0, deltas={"latency": 50.0}),
        record("faster", "a", "a", 0.0, deltas={"latency": -50.0}),
        record("flat", "a", "a", 0.0, deltas={"latency": 0.0}),
    ]
    page = render_html(sample_result(records, scorers=["latency", "rougeL"]))
    assert re.findall(r'<span class="rid">(.*?)</span>', page) == ["slower", "flat", "faster"]


def test_html_trace_ids_are_shown_and_linked_when_a_url_is_known(page: str) -> None:
    assert "<code>tr-cat</code>" in page and "<code>tr-cat-base</code>" in page
    assert "<a href" not in section(page, "records")
    linked = render_html(sample_result(), trace_url=lambda tid: f"https://mlflow.example/#/traces/{tid}?a=1&b=2")
    assert '<a href="https://mlflow.example/#/traces/tr-cat?a=1&amp;b=2"' in linked
    unsafe = render_html(sample_result(), trace_url=lambda tid: f"javascript:alert('{tid}')")
    assert "javascript:" not in unsafe and "<code>tr-cat</code>" in unsafe


def test_html_huge_outputs_and_inputs_are_cut(page: str) -> None:
    assert len(page) < 300_000
    assert "more characters (the JSON output has the full text)" in page
    assert "Show all inputs (" in page
    check_markup(page)


def test_html_stays_small_for_thousands_of_records() -> None:
    sentence = "The quarterly report shows revenue growth of {n} percent across all regions, driven by demand. "
    records = [
        record(
            f"cap-{i:05d}",
            sentence.format(n=i % 17) * 4,
            sentence.format(n=(i * 7) % 17) * 4 + ("Extra line." if i % 3 else ""),
            -((i * 37) % 101) / 100,
            inputs={"text": sentence * 3, "user": {"id": i, "locale": "de-CH"}},
            trace_id=f"{i:032x}",
            latency_ms=100.0 + i % 50,
            baseline_latency_ms=100.0,
            scores={"latency": 100.0 + i % 50},
            baseline_scores={"latency": 100.0},
            deltas={"latency": float(i % 50)},
        )
        for i in range(2_000)
    ]
    page = render_html(sample_result(records))
    assert len(page.encode()) < 4_000_000
    assert page.count('<details class="rec') == PAGE_SIZE  # the first page is in the document
    assert page.count('class="recpage"') == 19  # the other 1,900, a page of data each
    listed = all_records(page)
    assert len(listed) == 2_000  # every record listed
    assert sum(item.startswith('<details class="rec det') for item in listed) == 200  # full diffs: the largest
    ids = [found.group(1) for item in listed if (found := re.search(r'<span class="rid">(.*?)</span>', item))]
    deltas = {item.id: item.deltas["rougeL"] for item in records}
    assert [deltas[rid] for rid in ids] == sorted(deltas.values())
    for item in listed:
        check_markup(item)
    check_markup(page)


def test_html_handles_an_empty_run() -> None:
    result = sample_result([], metrics={}, gates=[], scorers=[], passed=True, interrupted=False, skipped={})
    page = render_html(result)
    assert "No metrics were computed." in page and "No records." in page
    check_markup(page)
    interrupted = render_html(sample_result(interrupted=True, duration_s=float("nan")))
    assert "The run was interrupted before every record finished" in interrupted


# ------------------------------------------------------------------------------------------------- redaction


def test_every_report_goes_through_the_same_redaction_as_spans_and_captures(tmp_path: Path) -> None:
    # Issue 11: a candidate's fresh output, an error and a dataset imported from a file were shown raw.
    key = "sk-CANARYreport0123456789abcdef"
    secret_record = record(
        "secret",
        f"mail jane.canary@example.com {key}",
        {"answer": "ok", "api_key": "plain-canary-value"},
        -0.1,
        inputs={"password": "pw-canary-input", "text": f"password=inline-canary and {key}"},
        error=f"RuntimeError: upstream refused {key}",
        baseline_error="ValueError: Authorization: Bearer CANARYbearer0123",
        expected=f"expected {key}",
    )
    secret_record.reasons["rougeL"] = f"differs at {key}"
    result = sample_result([secret_record])
    documents = {
        "json": json.dumps(result.to_json(tmp_path / "r.json")) + (tmp_path / "r.json").read_text(),
        "html": result.to_html(tmp_path / "r.html"),
        "junit": result.to_junit(tmp_path / "r.xml"),
    }
    for kind, text in documents.items():
        for canary in ("CANARYreport", "jane.canary", "plain-canary-value", "pw-canary-input", "inline-canary",
                       "CANARYbearer"):  # fmt: skip
            assert canary not in text, (kind, canary)
    assert result.records[0].candidate_output["api_key"] == "plain-canary-value"  # the result itself is untouched
    assert result.redacted().records[0].scores == result.records[0].scores

    # Several candidates (issue 13): the second one's records are shown too (HTML, MLflow table), redacted alike.
    clean = [record("clean", "fine", "fine", 0.0)]
    first = CandidateResult("5", 5, None, False, result.metrics, result.gates, clean)
    second = CandidateResult("6", 6, None, False, result.metrics, result.gates, [secret_record])
    several = sample_result(clean, candidates=[first, second])
    shown = several.redacted()
    assert shown.records is shown.candidates[0].records  # the first candidate's, redacted once
    page = several.to_html()
    assert '<section id="records-1" class="records">' in page and "upstream refused" in page
    for canary in ("CANARYreport", "jane.canary", "plain-canary-value", "pw-canary-input", "CANARYbearer"):
        assert canary not in page, canary
        assert canary not in json.dumps(shown.candidates[1].records[0].to_dict()), canary


def test_html_paged_records_data_stays_inert_whatever_the_text() -> None:
    # Records past the first page are JSON inside <script type="application/json">: no user text may end it.
    hostile = ["</script><script>alert(1)</script>", "<!--<script>", "</SCRIPT >", "a</b"]
    records = [record(f"{hostile[i % 4]} #{i}", f"old {i}", f"new {i}", -i / 1000) for i in range(PAGE_SIZE + 50)]
    page = render_html(sample_result(records))
    parser = check_markup(page)
    assert parser.scripts == 3  # the index, one page of data and ours: nothing a record smuggled in
    listed = all_records(page)
    assert len(listed) == PAGE_SIZE + 50
    found = re.search(r'class="recindex">(.*?)</script>', page, re.S)
    assert found is not None
    data = json.loads(found.group(1))
    # worst change first: the 50 smallest changes are the last page, i = 49 .. 0, searchable by id
    assert all(records[i].id.lower() in item[0] for item, i in zip(data, range(49, -1, -1), strict=True))
    assert [item[1] for item in data] == [2] * 50  # changed output, no error: what the filters read
    assert "</script><script>alert" not in page  # in the data it is text: <\/script><script>alert


# ----------------------------------------------------------------------------------- written a record at a time


def whole_json(result: ReplayResult, indent: int | None = 2) -> str:
    """The JSON file as it was encoded before it was streamed: the whole redacted document, dumped at once."""
    return json.dumps(result_to_json(result.redacted()), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def secret_records() -> list[RecordResult]:
    key = "sk-CANARYstream0123456789abcdef"
    return [
        *sample_records(),
        record(
            "secret",
            f"mail jane.canary@example.com {key}",
            {"answer": "ok", "api_key": "plain-canary-value", "nested": [{"token": "t-canary"}, float("nan")]},
            -0.1,
            inputs={"password": "pw-canary-input", "text": f"password=inline-canary and {key}\nline two"},
            error=f"RuntimeError: upstream refused {key}",
            baseline_error="ValueError: Authorization: Bearer CANARYbearer0123",
            expected=f"expected {key}",
            reasons={"rougeL": f"differs at {key}"},
        ),
        record("surrogate", "bad \ud800 text", Summary("title \udfff", {"x"}), 0.05),
    ]


class Counted:
    """The reports' redaction, counting the records it has redacted so far."""

    def __init__(self) -> None:
        self.redact = redaction()
        self.count = 0

    def __call__(self, item: RecordResult) -> RecordResult:
        self.count += 1
        return self.redact(item)


def test_json_written_a_record_at_a_time_is_the_whole_text_encoding(tmp_path: Path) -> None:
    # Issue 15: the file is written record by record, each redacted as it is written; the text must not change.
    result = sample_result(secret_records())
    for indent in (2, None, 0, 4):
        out = io.StringIO()
        write_result(result, out, shown=redaction(), indent=indent)
        assert out.getvalue() == whole_json(result, indent), indent
    assert "CANARY" not in whole_json(result) and "plain-canary-value" not in whole_json(result)
    empty = sample_result([], metrics={}, gates=[], skipped={})
    for indent in (2, None):
        out = io.StringIO()
        write_result(empty, out, shown=redaction(), indent=indent)
        assert out.getvalue() == whole_json(empty, indent)
    result.to_json(tmp_path / "deep" / "r.json")
    assert (tmp_path / "deep" / "r.json").read_text(encoding="utf-8") == whole_json(result)

    # A record at a time: each record's text is written right after that record was redacted, not after all were.
    counted = Counted()
    redacted_at: list[int] = []

    class Out(io.StringIO):
        def write(self, text: str, /) -> int:
            if '"id": ' in text:
                redacted_at.append(counted.count)
            return super().write(text)

    write_result(result, Out(), shown=counted)
    assert redacted_at == list(range(1, len(result.records) + 1))


def test_html_rendered_a_record_at_a_time_is_the_whole_page() -> None:
    # Issue 15: the report is written in pieces, each record redacted as it is rendered, the pages past the first
    # spooled; the page is the one rendered from a redacted copy of every record at once.
    many = [
        record(f"r{i:04d}", f"old text {i} jane.canary@example.com", f"new text {i}", -((i * 37) % 101) / 100)
        for i in range(2 * PAGE_SIZE + 37)
    ]
    records = secret_records() + many  # the first page, a full page of data past it, and a part of one
    first = CandidateResult("5", 5, None, False, {}, [], records)
    second = CandidateResult("6", 6, None, False, {}, [], list(reversed(records[: PAGE_SIZE + 3])))
    result = sample_result(records, candidates=[first, second])
    counted = Counted()
    pieces: list[tuple[int, str]] = []
    for piece in iter_html(result, shown=counted):
        pieces.append((counted.count, piece))
    streamed = "".join(piece for _, piece in pieces)
    footer = re.compile(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC")  # the minute it was generated
    assert footer.sub("", streamed) == footer.sub("", render_html(result.redacted()))
    assert "jane.canary" not in streamed and "CANARY" not in streamed

    # Every record once, in order, across the first page and the spooled pages, for both candidates.
    whole = render_html(result.redacted(), page_size=10**6)
    for name in ("records", "records-1"):
        listed = all_records(streamed, name)
        assert listed == all_records(whole, name)
    assert len(all_records(streamed)) == len(records) and len(all_records(streamed, "records-1")) == PAGE_SIZE + 3
    assert len(records) - PAGE_SIZE == PAGE_SIZE + 49 and section(streamed, "records").count('class="recpage"') == 2

    # The first page's records are yielded as each is rendered; the pages past it once the index is written.
    first_page = [count for count, piece in pieces if piece.startswith('<details class="rec')]
    assert first_page[:PAGE_SIZE] == list(range(1, PAGE_SIZE + 1))
