"""`promptops.replay.run()` and `promptops replay`: a real tracked function, a real registry, real scorers."""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptops
from promptops import replay
from promptops.capture import CaptureStore
from promptops.cli import app
from promptops.replay import ReplayError
from promptops.replay._json import result_to_json
from promptops.replay._report import render_html
from promptops.testing import capture_spans
from tests.conftest import Registry

TEXTS = [
    "The parcel left the warehouse on Monday and should arrive by Friday at the latest.",
    "My invoice shows a double charge for the March subscription, please refund one of them.",
    "The app crashes whenever I open the settings page on my tablet after the last update.",
    "I love the new dashboard, it makes the weekly report much faster to put together.",
    "Password reset emails never reach my inbox, I checked the spam folder twice already.",
    "Could you add an export to CSV button on the orders page, our accountant needs it monthly.",
    "The delivery driver left the box in the rain and the manual inside is soaked through.",
    "We were billed in dollars although our account is set to euros since last year.",
    "Search results take nearly ten seconds to appear when the filter for region is active.",
    "Thanks for the quick fix yesterday, the sync between phone and laptop works again.",
    "The discount code from the newsletter is rejected at checkout as expired on day one.",
    "Our team of twelve cannot invite the last two members because of a seat limit error.",
]

PRODUCTION = "Summarize the ticket. Ticket: {{ text }}"


class App:
    """A tracked function in a module of its own (replay imports `module:function`), and its prompt's versions."""

    def __init__(self, registry: Registry, name: str, directory: Path, body: str) -> None:
        self.name = name
        self.module = f"replay_app_{uuid.uuid4().hex[:8]}"
        (directory / f"{self.module}.py").write_text(textwrap.dedent(body).replace("PROMPT_NAME", name))
        self.registry = registry
        self.versions: dict[str, int] = {}

    def register(self, label: str, template: str, *, alias: str | None = None) -> int:
        self.versions[label] = self.registry.register(self.name, template, alias=alias)
        return self.versions[label]

    @property
    def target(self) -> str:
        return f"{self.module}:summarize"


ECHO_APP = """
import promptops

@promptops.track(prompt="PROMPT_NAME")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    # A stand-in model that really depends on the prompt: it answers with the formatted prompt.
    if "FAIL" in text:
        raise RuntimeError("the model refused")
    return prompt.format(text=text)
"""


def echo_app(registry: Any, name: str, directory: Path) -> App:
    """The echo app with versions `v1` (@production), `same` (its template again) and `bad` (`TL;DR.`)."""
    application = App(registry, name, directory, ECHO_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("same", PRODUCTION)
    application.register("bad", "TL;DR.")
    return application


@pytest.fixture
def echo(local_registry: Registry, prompt_name: str, tmp_path: Path) -> App:
    return echo_app(local_registry, prompt_name, tmp_path)


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def captured_rows(texts: list[str] = TEXTS) -> list[dict[str, Any]]:
    """Records as production left them: the production prompt's output for each text."""
    return [
        {"inputs": {"text": text}, "output": PRODUCTION.replace("{{ text }}", text), "metadata": {"prompt_version": 1}}
        for text in texts
    ]


def test_identical_candidate_passes_and_regression_fails(echo: App, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows())
    same = replay.run(echo.target, candidate=echo.versions["same"], dataset=data, log_to_mlflow=False)
    assert same.passed, same.summary()
    assert same.metrics["rougeL"].delta == 0 and same.metrics["rougeL"].candidate == pytest.approx(1.0)
    assert len(same.records) == len(TEXTS) and same.skipped == {}
    assert {gate.expr for gate in same.gates} >= {"rougeL noninferior 0.05"}

    bad = replay.run(echo.target, candidate=echo.versions["bad"], dataset=data, log_to_mlflow=False)
    assert not bad.passed
    rouge = bad.metrics["rougeL"]
    assert rouge.candidate is not None and rouge.candidate < 0.2 and rouge.ci_high is not None and rouge.ci_high < -0.5
    failed = [gate for gate in bad.gates if not gate.passed]
    assert [gate.expr for gate in failed] == ["rougeL noninferior 0.05", "bleu noninferior 0.05"]
    with pytest.raises(AssertionError, match="FAILED"):
        bad.assert_passed()


def test_record_values_match_the_scorer_libraries(echo: App, tmp_path: Path) -> None:
    from rouge_score import rouge_scorer

    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:4]))
    result = replay.run(echo.target, candidate=echo.versions["bad"], dataset=data, log_to_mlflow=False, repeats=0)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for record in result.records:
        expected = scorer.score(record.baseline_output, record.candidate_output)["rougeL"].fmeasure
        assert record.scores["rougeL"] == pytest.approx(expected)
        assert record.baseline_scores["rougeL"] == pytest.approx(1.0)  # no re-runs: the reference against itself


def test_version_baseline_reruns_and_noise_floor(echo: App, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", [{"inputs": {"text": text}} for text in TEXTS])
    result = replay.run(
        echo.target, candidate=echo.versions["same"], baseline=echo.versions["v1"], dataset=data, repeats=2,
        log_to_mlflow=False,
    )  # fmt: skip
    assert result.passed
    assert result.baseline.version == echo.versions["v1"] and result.baseline.label == str(echo.versions["v1"])
    assert result.metrics["rougeL"].noise == 0  # a deterministic model does not drift
    # per record: the candidate, the reference and two re-runs (equal jobs once collapsed the re-runs into one)
    assert result.calls == len(TEXTS) * 4
    assert all(
        record.baseline_output == PRODUCTION.replace("{{ text }}", record.inputs["text"]) for record in result.records
    )
    production = replay.run(
        echo.target, candidate="production", baseline="production", dataset=data, log_to_mlflow=False
    )
    assert production.baseline.version == production.candidate.version == echo.versions["v1"]


def test_skips_and_errors_are_counted_not_fatal(echo: App, tmp_path: Path) -> None:
    rows = captured_rows(TEXTS[:5])
    rows.append({"inputs": {"text": "<object at 0x1>"}, "metadata": {"replayable": False, "replay_reason": "repr"}})
    rows.append({"inputs": {"txt": "a typo in the parameter"}, "output": "x"})
    rows.append({"inputs": {"text": "FAIL on this one"}, "output": "Summarize the ticket. Ticket: FAIL on this one"})
    data = write_dataset(tmp_path / "tickets.jsonl", rows)
    result = replay.run(echo.target, candidate=echo.versions["same"], dataset=data, log_to_mlflow=False)
    assert result.skipped == {"non_replayable": 1, "inputs_do_not_fit": 1}
    failing = [record for record in result.records if record.error is not None]
    assert [record.error for record in failing] == ["RuntimeError: the model refused"]
    assert failing[0].scores["errors"] == 1.0 and failing[0].scores["rougeL"] == 0.0
    assert result.metrics["errors"].rate == pytest.approx(1 / 6)


def test_replay_calls_are_traced_as_replay_and_never_captured(echo: App, tmp_path: Path) -> None:
    promptops.configure(capture="sqlite:///captures.db")
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:3]))
    with capture_spans() as spans:
        result = replay.run(echo.target, candidate=echo.versions["same"], dataset=data, log_to_mlflow=False)
    assert promptops.flush(timeout=10)
    assert list(CaptureStore.open("sqlite:///captures.db").query()) == []
    tracked = [span for span in spans.finished() if span.name == "summarize"]
    assert len(tracked) == 6  # candidate and one baseline re-run per record
    assert all(span.attributes is not None and span.attributes["promptops.replay"] is True for span in tracked)
    trace_ids = {format(span.context.trace_id, "032x") for span in tracked if span.context is not None}
    assert {record.trace_id for record in result.records} <= trace_ids

    # Positive control: the same function called outside a replay is captured and not marked as a replay.
    with capture_spans() as spans:
        sys.modules[echo.module].summarize(TEXTS[0])
    assert promptops.flush(timeout=10)
    assert [record.inputs for record in CaptureStore.open("sqlite:///captures.db").query()] == [{"text": TEXTS[0]}]
    (span,) = [span for span in spans.finished() if span.name == "summarize"]
    assert span.attributes is not None and span.attributes.get("promptops.replay", False) is False


ASYNC_APP = """
import asyncio
import dataclasses
import promptops

@dataclasses.dataclass
class Ticket:
    text: str
    priority: int = 1

@promptops.track(prompt="PROMPT_NAME")
async def summarize(ticket: Ticket, *, prompt: promptops.Prompt) -> str:
    assert isinstance(ticket, Ticket), type(ticket)
    await asyncio.sleep(0.01)
    return prompt.format(text=ticket.text) + "!" * ticket.priority
"""


def test_async_target_with_dataclass_inputs(local_registry: Registry, prompt_name: str, tmp_path: Path) -> None:
    application = App(local_registry, prompt_name, tmp_path, ASYNC_APP)
    application.register("v1", PRODUCTION, alias="production")
    rows = [
        {"inputs": {"ticket": {"text": text, "priority": 2}}, "output": PRODUCTION.replace("{{ text }}", text) + "!!"}
        for text in TEXTS
    ]
    data = write_dataset(tmp_path / "tickets.jsonl", rows)
    result = replay.run(application.target, candidate=1, dataset=data, workers=4, log_to_mlflow=False)
    assert result.passed and not any(record.error for record in result.records), result.summary()
    assert result.metrics["exact_match" if "exact_match" in result.metrics else "rougeL"].candidate == pytest.approx(
        1.0
    )


FLAKY_APP = """
import collections
import promptops

attempts = collections.Counter()


class Unavailable(Exception):
    \"\"\"What an HTTP client raises for a 503 that asks to retry after 1 ms.\"\"\"

    def __init__(self) -> None:
        super().__init__("503 Service Unavailable")
        self.response = type("Response", (), {"status_code": 503, "headers": {"retry-after-ms": "1"}})()


def answer(text: str, prompt: promptops.Prompt) -> str:
    attempts[text] += 1
    if text.startswith("down") or (text.startswith("flaky") and attempts[text] <= 2):
        raise Unavailable()
    if text.startswith("broken"):
        raise ValueError("the model's answer does not parse")
    return prompt.format(text=text)


@promptops.track(prompt="PROMPT_NAME")
DEF summarize(text: str, *, prompt: promptops.Prompt) -> str:
    return answer(text, prompt)
"""


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_sync_and_async_targets_retry_alike(
    local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Issue 13: one retry loop serves both paths; each is held to the same attempts, retries and outcomes.
    application = App(local_registry, prompt_name, tmp_path, FLAKY_APP.replace("DEF", kind))
    application.register("v1", PRODUCTION, alias="production")
    texts = ["flaky: twice unavailable", "down: always unavailable", "broken: the model's error", "fine: answers"]
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(texts))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = replay.run(application.target, candidate=1, dataset=data, repeats=0, workers=2, log_to_mlflow=False)
    attempts = importlib.import_module(application.module).attempts
    assert dict(attempts) == {texts[0]: 3, texts[1]: 6, texts[2]: 1, texts[3]: 1}  # 6: RetryPolicy.attempts
    assert result.retries == 2 + 5 and result.rate_limited == 0
    assert result.infrastructure_errors == 1 and result.skipped == {"infrastructure_error": 1}
    errors = {record.inputs["text"]: record.error for record in result.records}
    assert errors == {texts[0]: None, texts[2]: "ValueError: the model's answer does not parse", texts[3]: None}


def test_expected_outputs_add_reference_metrics(echo: App, tmp_path: Path) -> None:
    rows = captured_rows(TEXTS[:6])
    for row in rows:
        row["expected"] = row["inputs"]["text"]
    data = write_dataset(tmp_path / "tickets.jsonl", rows)
    result = replay.run(
        echo.target, candidate=echo.versions["bad"], dataset=data, gates=["rougeL@expected noninferior 0.1"],
        log_to_mlflow=False,
    )  # fmt: skip
    reference = result.metrics["rougeL@expected"]
    assert reference.baseline is not None and reference.baseline > 0.7  # the production prompt repeats the text
    assert reference.candidate is not None and reference.candidate < 0.1
    assert not result.passed


def test_captured_traffic_is_the_default_dataset(echo: App, monkeypatch: pytest.MonkeyPatch) -> None:
    promptops.configure(capture="sqlite:///captures.db")
    monkeypatch.syspath_prepend(".")
    module = importlib.import_module(echo.module)
    for text in TEXTS:
        module.summarize(text)
    assert promptops.flush(timeout=10)
    result = replay.run(echo.target, candidate=echo.versions["bad"], since="1h", limit=5, log_to_mlflow=False)
    assert len(result.records) == 5 and not result.passed
    assert [record.inputs["text"] for record in result.records] == TEXTS[-5:]
    assert result.baseline.versions == [echo.versions["v1"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "no_such_module:f"}, "cannot import 'no_such_module'"),
        ({"target": "{module}:summarise"}, "did you mean 'summarize'"),
        ({"target": "{module}"}, "is not module:function"),
        ({"scorers": ["rogueL"]}, "unknown scorer 'rogueL'"),
        ({"gates": ["rougeL >= 0.5"]}, "rougeL >= 0.5"),
        ({"gates": ["semantics.mean >= 0.5"]}, "semantics"),
        ({"candidate": 99}, "--candidate 99"),
        ({"dataset": "missing.jsonl"}, "no dataset file missing.jsonl"),
    ],
)
def test_bad_input_is_one_clear_error_before_any_call(
    echo: App, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(["FAIL if this is ever called"]))
    options: dict[str, Any] = {"candidate": echo.versions["same"], "dataset": data, "log_to_mlflow": False}
    options.update(kwargs)
    target = str(options.pop("target", echo.target)).replace("{module}", echo.module)
    with capture_spans() as spans, pytest.raises(promptops.PromptopsError, match=message.replace("(", r"\(")) as caught:
        replay.run(target, **options)
    assert "\n" not in str(caught.value)
    assert [span.name for span in spans.finished() if span.name == "summarize"] == []  # refused before any call
    assert isinstance(caught.value, (ReplayError, promptops.PromptopsError))


def test_mlflow_run_holds_params_metrics_records_and_report(echo: App, tmp_path: Path) -> None:
    check_logged_run(echo, tmp_path)


def check_logged_run(application: App, directory: Path) -> None:
    """A failing replay of `application`'s "bad" version logs its run to the registry's tracking store."""
    from mlflow import MlflowClient

    data = write_dataset(directory / "tickets.jsonl", captured_rows(TEXTS[:4]))
    result = replay.run(application.target, candidate=application.versions["bad"], dataset=data)
    assert result.mlflow_run_id is not None and not result.passed
    client = MlflowClient(tracking_uri=application.registry.uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["candidate_version"] == str(application.versions["bad"])
    assert run.data.tags["promptops.replay.verdict"] == "failed"
    assert run.data.metrics["rougeL.delta"] == pytest.approx(result.metrics["rougeL"].delta)
    artifacts = {artifact.path for artifact in client.list_artifacts(result.mlflow_run_id)}
    assert {"replay_records.json", "replay_report.html"} <= artifacts


def test_files_written_a_record_at_a_time_are_the_whole_redacted_documents(echo: App, tmp_path: Path) -> None:
    # Issue 15: replay writes its JSON, its report and its run's records table record by record, redacting each
    # as it goes. The files are what encoding a redacted copy of the whole result gives, and hold no secret.
    import pandas
    import pandas.testing
    from mlflow import MlflowClient

    texts = [f"{text} Reach me at jane.canary{i}@example.com" for i, text in enumerate(TEXTS[:5])]
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(texts))
    written, report = tmp_path / "out" / "result.json", tmp_path / "report.html"
    result = replay.run(
        echo.target, candidate=echo.versions["same"], dataset=data, json_path=str(written), report=str(report)
    )
    assert result.mlflow_run_id is not None
    assert "jane.canary0@example.com" in result.records[0].inputs["text"]  # the result keeps the real values
    text = written.read_text(encoding="utf-8")
    assert text == json.dumps(result_to_json(result.redacted()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    footer = re.compile(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC")  # the minute it was generated
    page = report.read_text(encoding="utf-8")
    assert footer.sub("", page) == footer.sub("", render_html(result.redacted()))
    client = MlflowClient(tracking_uri=echo.registry.uri)
    logged = Path(client.download_artifacts(result.mlflow_run_id, "replay_report.html", str(tmp_path / "logged")))
    assert logged.read_text(encoding="utf-8") == page
    table = Path(client.download_artifacts(result.mlflow_run_id, "replay_records.json", str(tmp_path / "logged")))
    assert len(json.loads(table.read_text(encoding="utf-8"))["data"]) == 5
    for shown in (text, page, table.read_text(encoding="utf-8")):
        assert "jane.canary" not in shown and "Reach me at" in shown

    # The records table, written a row at a time, reads back as the table MLflow's own log_table() writes.
    names = list(result.metrics)
    columns: dict[str, list[Any]] = {"candidate": [], "id": [], "inputs": [], "baseline_output": [],
                                     "candidate_output": [], "error": [], "trace_id": []}  # fmt: skip
    for name in names:
        columns[name], columns[f"{name}.delta"] = [], []
    for item in result.redacted().records:
        for key, value in (("candidate", str(echo.versions["same"])), ("id", item.id),
                           ("inputs", json.dumps(item.inputs, ensure_ascii=False)), ("baseline_output", item.baseline_output),
                           ("candidate_output", item.candidate_output), ("error", item.error), ("trace_id", item.trace_id)):  # fmt: skip
            columns[key].append(value)
        for name in names:
            columns[name].append(item.scores.get(name))
            columns[f"{name}.delta"].append(item.deltas.get(name))
    client.log_table(result.mlflow_run_id, data=columns, artifact_file="expected.json")
    expected = Path(client.download_artifacts(result.mlflow_run_id, "expected.json", str(tmp_path / "logged")))
    # As load_table() reads each run's table (it finds the runs through the global tracking URI: not set here).
    pandas.testing.assert_frame_equal(
        pandas.read_json(table, orient="split"), pandas.read_json(expected, orient="split")
    )
    logged = json.loads(client.get_run(result.mlflow_run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "replay_records.json", "type": "table"} in logged  # what the UI lists as a table


def test_interrupt_keeps_finished_records(echo: App, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows())
    finished = 0

    def progress(calls: int, records: int) -> Any:
        def tick(count: int) -> None:
            nonlocal finished
            finished += count
            if finished == 8:
                raise KeyboardInterrupt  # as Ctrl-C in the waiting thread

        return tick

    result = replay.run(
        echo.target, candidate=echo.versions["same"], dataset=data, workers=1, progress=progress, log_to_mlflow=False
    )
    assert result.interrupted and not result.passed
    assert 1 <= len(result.records) < len(TEXTS)
    assert result.skipped["interrupted"] == len(TEXTS) - len(result.records)


# --------------------------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes_and_output_files(echo: App, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:6]))
    runner = CliRunner()
    common = ["replay", echo.target, "--dataset", data, "--no-mlflow"]
    passed = runner.invoke(app, [*common, "--candidate", str(echo.versions["same"]), "--json", "out/result.json"])
    assert passed.exit_code == 0, passed.output
    assert "PASSED" in passed.output and "rougeL" in passed.output
    document = json.loads((tmp_path / "out" / "result.json").read_text())
    assert document["passed"] is True and set(document["metrics"]["rougeL"]) >= {"baseline", "candidate", "delta"}
    assert len(document["records"]) == 6

    failed = runner.invoke(
        app,
        [*common, "--candidate", str(echo.versions["bad"]), "--junit", "junit.xml", "--report", "report.html",
         "--gate", "rougeL.mean >= 0.9"],
    )  # fmt: skip
    assert failed.exit_code == 1, failed.output
    assert "FAILED" in failed.output
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert len(suite.findall(".//failure")) == 1
    assert "FAIL" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gate", "rougeL.mean >> 1"], "gate"),
        (["--scorer", "nope"], "unknown scorer 'nope'"),
        (["--dataset", "no-such-dataset", "--store", "sqlite:///captures.db"], "no-such-dataset"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(echo: App, extra: list[str], message: str) -> None:
    promptops.configure(capture="sqlite:///captures.db")
    CaptureStore.open("sqlite:///captures.db").close()
    arguments = ["replay", echo.target, "--candidate", "1", "--no-mlflow"]
    if "--dataset" not in extra:
        arguments += ["--dataset", write_dataset(Path("d.jsonl"), captured_rows(TEXTS[:2]))]
    result = CliRunner().invoke(app, [*arguments, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1


def test_pytest_fixture_reports_the_failed_gates(echo: App, tmp_path: Path, pytester: pytest.Pytester) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:6]))
    pytester.syspathinsert(tmp_path)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_regressions=f"""
        def test_same(promptops_replay):
            result = promptops_replay("{echo.target}", candidate={echo.versions["same"]}, dataset=r"{data}")
            assert result.passed

        def test_bad(promptops_replay):
            promptops_replay("{echo.target}", candidate={echo.versions["bad"]}, dataset=r"{data}")
        """
    )
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1, failed=1)
    text = outcome.stdout.str()
    assert "promptops replay FAILED" in text and "FAIL  " in text and "rougeL: baseline 1" in text


def test_a_semantic_model_that_cannot_load_is_refused_before_any_call(echo: App, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:2]))
    with capture_spans() as spans, pytest.raises(promptops.PromptopsError, match="semantic") as caught:
        replay.run(
            echo.target, candidate=echo.versions["same"], dataset=data, scorers=["semantic:no-such-model-anywhere"],
            log_to_mlflow=False,
        )  # fmt: skip
    assert "\n" not in str(caught.value)
    assert spans.finished() == []  # not one call of the target was made


# ---------------------------------------------------------------------------------------------------- settings


def test_settings_object_and_keywords_are_the_same_replay(echo: App, tmp_path: Path, promptops_replay: Any) -> None:
    from promptops.replay import ReplaySettings

    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(TEXTS[:4]))
    by_keywords = replay.run(echo.target, candidate=echo.versions["bad"], dataset=data, log_to_mlflow=False, repeats=0)
    settings = ReplaySettings(candidate=echo.versions["same"], dataset=data, log_to_mlflow=False)
    # keywords apply on top of the settings: the candidate and the repeats are overridden here
    by_settings = replay.run(echo.target, settings, candidate=echo.versions["bad"], repeats=0)
    assert not by_settings.passed and by_settings.repeats == 0
    assert {name: m.delta for name, m in by_settings.metrics.items() if name != "latency"} == {
        name: m.delta for name, m in by_keywords.metrics.items() if name != "latency"
    }
    assert settings.candidate == echo.versions["same"]  # frozen: run() did not change the caller's object
    # the pytest fixture takes the same object
    assert promptops_replay(echo.target, settings).passed


def test_unknown_option_or_missing_candidate_is_a_type_error_naming_it(echo: App) -> None:
    with pytest.raises(TypeError, match="unknown replay option 'worker'.*workers"):
        replay.run(echo.target, candidate=1, worker=4)
    with pytest.raises(TypeError, match="needs a candidate"):
        replay.run(echo.target, workers=4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"repeats": -1}, "repeats must be 0 or more"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"executor": "dask"}, "unknown executor 'dask'"),
        ({"candidate": []}, "no candidate"),
    ],
)
def test_settings_are_checked_before_the_target_is_loaded(options: dict[str, Any], message: str) -> None:
    options = {"candidate": 2, **options}
    with pytest.raises(ReplayError, match=message):
        replay.run("no_such_module_is_imported:f", **options)


def test_golden_set_without_outputs_is_judged_against_expected_by_default(echo: App, tmp_path: Path) -> None:
    # issue 17: inputs and expected only, as a hand-written golden set; nothing was captured
    rows = [{"inputs": {"text": text}, "expected": PRODUCTION.replace("{{ text }}", text)} for text in TEXTS]
    data = write_dataset(tmp_path / "golden.jsonl", rows)
    same = replay.run(echo.target, candidate=echo.versions["same"], dataset=data, log_to_mlflow=False)
    assert same.passed, same.summary()
    assert same.baseline.label == "production"  # run now: there is no captured output to compare with
    assert same.metrics["rougeL@expected"].baseline == pytest.approx(1.0)  # the baseline is scored too
    assert same.metrics["rougeL"].candidate == pytest.approx(1.0)  # plain metrics have values, not "—"
    assert {gate.expr.split()[0] for gate in same.gates} == {"rougeL@expected", "bleu@expected", "errors.delta_ci_low"}
    bad = replay.run(echo.target, candidate=echo.versions["bad"], dataset=data, log_to_mlflow=False)
    assert not bad.passed and bad.metrics["rougeL@expected"].delta is not None
    assert bad.metrics["rougeL@expected"].delta < -0.5


def test_a_file_a_stored_dataset_and_a_dataset_object_replay_alike(echo: App, tmp_path: Path) -> None:
    """Replay reads a file a record at a time, spools a stored dataset, reads a `Dataset` in place (issue 15)."""
    from promptops import datasets

    path = write_dataset(tmp_path / "tickets.jsonl", captured_rows())
    dataset = datasets.read_file(path)
    datasets.create("tickets-stored", dataset)
    results = [
        replay.run(echo.target, candidate=echo.versions["bad"], dataset=source, log_to_mlflow=False)
        for source in (path, "tickets-stored", dataset)
    ]
    for result in results:
        assert result.dataset_fingerprint == dataset.fingerprint
        assert [(r.id, r.inputs, r.baseline_output) for r in result.records] == [
            (r.id, r.inputs, r.output) for r in dataset.records
        ]
        assert result.metrics["rougeL"].to_dict() == results[0].metrics["rougeL"].to_dict()
    assert [result.dataset for result in results] == ["tickets", "tickets-stored", "tickets"]
