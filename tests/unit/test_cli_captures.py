"""`promptops captures list|show|export` against a real SQLite capture store, and the installed console script."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from promptops.capture import CaptureRecord, CaptureStore, input_hash, uuid7
from promptops.cli import app
from promptops.cli._captures import parse_moment

runner = CliRunner()
PROMPTOPS = Path(sys.executable).parent / "promptops"


def make_record(
    *,
    age: datetime.timedelta,
    function: str = "app.llm:summarize",
    prompt: str | None = "summarize",
    version: int | None = 1,
    inputs: dict[str, Any] | None = None,
    output: Any = "a summary",
    error: tuple[str, str] | None = None,
) -> CaptureRecord:
    # Relative to the moment the record is made, not to the module's import: in a full run a test starts many
    # minutes after collection, and a 20-minute-old record would fall out of `--since 30m`.
    timestamp = datetime.datetime.now(datetime.timezone.utc) - age
    inputs = {"text": "hello world"} if inputs is None else inputs
    return CaptureRecord(
        id=uuid7(int(timestamp.timestamp() * 1e9)),
        timestamp=timestamp,
        function=function,
        prompt_name=prompt,
        prompt_version=version,
        prompt_alias="production" if prompt else None,
        prompt_source="registry" if prompt else None,
        inputs=inputs,
        replayable=True,
        replay_reason=None,
        output=None if error else output,
        error_type=error[0] if error else None,
        error_message=error[1] if error else None,
        latency_ms=12.5,
        first_item_ms=None,
        trace_id="ab" * 16,
        span_id="cd" * 8,
        tags={"team": "search"},
        app_version="1.2.3",
        input_hash=input_hash(inputs),
    )


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, list[CaptureRecord]]:
    """A SQLite capture store holding five records, oldest first: ages 10d, 2d, 5h, 20m, 1m."""
    url = f"sqlite:///{tmp_path / 'store' / 'captures.db'}"
    records = [
        make_record(age=datetime.timedelta(days=10), inputs={"text": "very old"}),
        make_record(age=datetime.timedelta(days=2), version=2, inputs={"text": "two days"}),
        make_record(
            age=datetime.timedelta(hours=5),
            function="app.llm:classify",
            prompt="classify",
            inputs={"ticket": {"id": 7, "body": "[bold]not markup[/bold] " + "x" * 200}},
            output={"label": "billing"},
        ),
        make_record(age=datetime.timedelta(minutes=20), error=("TimeoutError", "model timed out")),
        make_record(age=datetime.timedelta(minutes=1), prompt=None, version=None, function="app.tools:plain"),
    ]
    opened = CaptureStore.open(url)
    try:
        assert opened.write(records) == 5
    finally:
        opened.close()
    return url, records


def run(*args: str, env: dict[str, str | None] | None = None):
    return runner.invoke(app, ["captures", *args], env=env)


def ids_listed(output: str, records: list[CaptureRecord]) -> list[str]:
    """The ids of `records` that appear in a `captures list` table, in table order."""
    found = [(output.index(r.id), r.id) for r in records if r.id in output]
    return [record_id for _, record_id in sorted(found)]


def assert_usage_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------------ parse_moment


def test_parse_moment_durations_and_timestamps() -> None:
    now = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    assert parse_moment("30m", option="--since", now=now) == now - datetime.timedelta(minutes=30)
    assert parse_moment("24h", option="--since", now=now) == now - datetime.timedelta(hours=24)
    assert parse_moment("7d", option="--since", now=now) == now - datetime.timedelta(days=7)
    assert parse_moment("2w", option="--since", now=now) == now - datetime.timedelta(weeks=2)
    assert parse_moment("2026-01-31", option="--since") == datetime.datetime(2026, 1, 31, tzinfo=datetime.timezone.utc)
    with_offset = parse_moment("2026-01-31T12:00:00+02:00", option="--until")
    assert with_offset == datetime.datetime(2026, 1, 31, 10, 0, tzinfo=datetime.timezone.utc)
    assert parse_moment("2026-01-31T12:00:00Z", option="--until").utcoffset() == datetime.timedelta(0)


# ------------------------------------------------------------------------------------------------ list


def test_list_shows_every_column(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    result = run("list", "--store", url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert ids_listed(out, records) == [r.id for r in records]  # oldest first
    for header in ("ID", "TIME (UTC)", "FUNCTION", "PROMPT", "LATENCY", "ERROR", "INPUTS", "OUTPUT"):
        assert header in out
    assert "summarize@1" in out and "summarize@2" in out and "classify@1" in out
    assert "12.5 ms" in out
    assert "TimeoutError" in out
    assert '{"text":"very old"}' in out
    assert '"body":"[bold]' in out  # captured text is printed as is, never as rich markup
    assert "x" * 100 not in out  # previews are short
    assert records[0].timestamp.strftime("%Y-%m-%d %H:%M:%S") in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--function", "app.llm:classify"), [2]),
        (("--prompt", "summarize"), [0, 1, 3]),
        (("--prompt", "summarize", "--version", "2"), [1]),
        (("--since", "24h"), [2, 3, 4]),
        (("--since", "30m"), [3, 4]),
        (("--until", "1d"), [0, 1]),
        (("--since", "7d", "--until", "1h"), [1, 2]),
        (("--limit", "2"), [3, 4]),  # the most recent two
        (("--prompt", "summarize", "-n", "1"), [3]),
        (("--function", "nope:nothing"), []),
    ],
)
def test_list_filters(store: tuple[str, list[CaptureRecord]], args: tuple[str, ...], expected: list[int]) -> None:
    url, records = store
    result = run("list", *args, "--store", url)
    assert result.exit_code == 0, result.output
    assert ids_listed(result.stdout, records) == [records[i].id for i in expected]
    if not expected:
        assert result.stdout.strip() == "no captured calls match"


def test_list_iso_since_and_truncation_note(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)).isoformat()
    result = run("list", "--since", since, "--limit", "1", "--store", url)
    assert result.exit_code == 0, result.output
    assert ids_listed(result.stdout, records) == [records[4].id]
    assert "showing the 1 most recent of 4 matching calls" in result.stdout


def test_list_reads_the_capture_setting(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    result = run("list", env={"PROMPTOPS_CAPTURE": url})
    assert result.exit_code == 0, result.output
    assert ids_listed(result.stdout, records) == [r.id for r in records]


# ------------------------------------------------------------------------------------------------ show


def test_show_prints_the_full_record(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    result = run("show", records[2].id, "--store", url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == records[2].to_dict()
    assert result.stdout.startswith("{\n  ")  # pretty-printed


def test_show_unknown_id(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    assert_usage_error(run("show", "0190-nope", "--store", url), "no captured call with id '0190-nope'", url)


# ------------------------------------------------------------------------------------------------ export


def test_export_round_trip(store: tuple[str, list[CaptureRecord]], tmp_path: Path) -> None:
    url, records = store
    result = run("export", "out/all.jsonl", "--store", url)
    assert result.exit_code == 2  # the folder does not exist: one error line, no partial file
    assert_usage_error(result, "cannot write out/all.jsonl")
    assert not (tmp_path / "out").exists()
    result = run("export", "all.jsonl", "--store", url)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "exported 5 captured calls to all.jsonl"
    lines = (tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [r.to_dict() for r in records]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_export_filters_to_stdout(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    result = run("export", "-", "--prompt", "summarize", "--since", "3d", "--store", url)
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [records[1].to_dict(), records[3].to_dict()]
    assert result.stderr == "exported 2 captured calls to stdout\n"  # as docs/cli.md says; never into the pipe
    result = run("export", "-", "--limit", "1", "--store", url)
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [records[4].id]


def test_export_nothing_matching_writes_an_empty_file(store: tuple[str, list[CaptureRecord]], tmp_path: Path) -> None:
    url, _ = store
    result = run("export", "none.jsonl", "--function", "x:y", "--store", url)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "none.jsonl").read_text(encoding="utf-8") == ""
    assert "exported 0 captured calls" in result.stderr


# ------------------------------------------------------------------------------------------------ errors


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    for args in (("list",), ("show", "x"), ("export", "-"), ("prune", "--older-than", "30d")):
        assert_usage_error(run(*args, "--store", "sqlite:///missing/captures.db"), "no capture store at missing/")
        assert_usage_error(run(*args), "no capture store at", str(tmp_path / ".promptops" / "captures.db"))
    assert list(tmp_path.iterdir()) == []


def test_capture_disabled(store: tuple[str, list[CaptureRecord]]) -> None:
    assert_usage_error(run("list", env={"PROMPTOPS_CAPTURE": "none"}), "capture is disabled", "--store")


@pytest.mark.parametrize("option", ["--since", "--until"])
@pytest.mark.parametrize("value", ["yesterday", "7x", "2026-13-01", ""])
def test_bad_moment(store: tuple[str, list[CaptureRecord]], option: str, value: str) -> None:
    url, _ = store
    for command in (("list",), ("export", "-")):
        assert_usage_error(run(*command, option, value, "--store", url), f"{option} {value!r} is not a duration")


def test_bad_store_url() -> None:
    assert_usage_error(run("list", "--store", "not a url"), "invalid capture store URL 'not a url'")
    assert_usage_error(run("list", "--store", " "), "--store is empty")
    assert_usage_error(run("list", "--store", "nosuchdialect://x/y"), "cannot open the capture store nosuchdialect://")


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("list", "show", "export", "prune"):
        assert command in result.stdout


# ------------------------------------------------------------------------------------------------ prune


def remaining(url: str) -> list[str]:
    opened = CaptureStore.open(url)
    try:
        return [record.id for record in opened.query()]
    finally:
        opened.close()


def test_prune_deletes_what_is_older_than_the_duration(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    result = run("prune", "--older-than", "3d", "--store", url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("would delete 1 captured call started before ")
    assert remaining(url) == [r.id for r in records]
    result = run("prune", "--older-than", "1d", "--store", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deleted 2 captured calls started before ") and result.stdout.endswith(" UTC\n")
    assert remaining(url) == [r.id for r in records[2:]]
    result = run("prune", "--older-than", "600s", "--store", url)  # seconds too: the 20-minute-old call goes
    assert (result.exit_code, result.stdout.split(" started")[0]) == (0, "deleted 2 captured calls")
    assert remaining(url) == [records[4].id]


def test_prune_keeps_the_calls_a_dataset_was_made_from(store: tuple[str, list[CaptureRecord]]) -> None:
    from promptops import datasets

    url, records = store
    made = datasets.from_captures(store=url, function="app.llm:summarize", until=records[2].timestamp)
    assert [record.id for record in made.records] == [records[0].id, records[1].id]
    datasets.create("old-ones", made, store=url)
    result = run("prune", "--older-than", "1h", "--store", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.split(" started")[0] == "deleted 1 captured call"
    assert result.stdout.rstrip().endswith("; kept 2 older ones that saved datasets were made from")
    assert remaining(url) == [records[0].id, records[1].id, records[3].id, records[4].id]
    assert datasets.load("old-ones", store=url).records == made.records


@pytest.mark.parametrize("value", ["30", "30x", "yesterday", "2026-01-31", "-1d", ""])
def test_prune_refuses_a_bad_duration(store: tuple[str, list[CaptureRecord]], value: str) -> None:
    url, records = store
    assert_usage_error(
        run("prune", "--older-than", value, "--store", url),
        f"--older-than {value!r} is not a duration; use a number and a unit, e.g. 90s, 30m, 24h, 7d or 2w",
    )
    assert remaining(url) == [r.id for r in records]


def test_prune_needs_older_than(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    result = run("prune", "--store", url)
    assert result.exit_code == 2 and "--older-than" in result.output


# ------------------------------------------------------------------------------------------------ console script


def test_console_script(store: tuple[str, list[CaptureRecord]], tmp_path: Path) -> None:
    url, records = store
    env = {**os.environ, "PROMPTOPS_CAPTURE": url, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

    def promptops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROMPTOPS), "captures", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
        )

    done = promptops("export", "-", "--function", "app.llm:classify")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [records[2].to_dict()]
    done = promptops("show", "no-such-id")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: no captured call with id 'no-such-id' in {url}; list ids with: promptops captures list"
    ]
