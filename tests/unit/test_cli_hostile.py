"""Hostile CLI input (issue 11): one-line errors with exit 2, and no terminal escape sequence from data printed."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptops import datasets
from promptops.capture import CaptureStore
from promptops.cli import app
from promptops.cli._text import json_text, visible
from promptops.datasets import Dataset, DatasetRecord
from promptops.datasets._files import MAX_DEPTH
from tests.conftest import Registry

from .test_cli_captures import make_record
from .test_datasets_cli import assert_usage_error

runner = CliRunner()

# An OSC title change, a colour, an 8-bit CSI clearing the screen, a bidi override and a DEL.
HOSTILE = "ok\x1b]0;pwned\x07\x1b[31mred\x9b2J\u202eevil\x7f"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\x7f")


def assert_no_raw_controls(text: str) -> None:
    found = [char for char in RAW if char in text]
    assert not found, (found, text)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("target", ["../../etc:passwd", "/etc:passwd", "app.llm:../x", "a b:c", "app:1fn"])
def test_replay_of_a_path_is_a_one_line_error(target: str) -> None:
    result = runner.invoke(app, ["replay", target, "--candidate", "2"])
    assert_usage_error(result, "is not a Python", "module:function")


def write_jsonl(path: Path, depth: int) -> Path:
    path.write_text('{"inputs": {"q": ' + "[" * depth + "]" * depth + "}}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deeply_nested_jsonl_is_a_one_line_error(tmp_path: Path, depth: int) -> None:
    file = write_jsonl(tmp_path / "deep.jsonl", depth)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(app, ["datasets", "import", str(file), "--store", url])
    assert_usage_error(result, "deep.jsonl: line 1", f"nested more than {MAX_DEPTH} levels deep")


def test_nesting_up_to_the_limit_is_imported(tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "nested.jsonl", MAX_DEPTH - 2)  # the record and its inputs are two levels
    url = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(app, ["datasets", "import", str(file), "--store", url])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert datasets.load("nested", store=url).records[0].inputs["q"] == json.loads("[" * 98 + "]" * 98)


def test_deeply_nested_parquet_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = tmp_path / "deep.parquet"
    pq.write_table(pa.table({"inputs": pa.array(['{"q": ' + "[" * 5000 + "]" * 5000 + "}"])}), file)
    result = runner.invoke(app, ["datasets", "import", str(file), "--store", f"sqlite:///{tmp_path / 'c.db'}"])
    assert_usage_error(result, "deep.parquet: row 1", "nested more than")


# ------------------------------------------------------------------------------------ escape sequences in data


def test_visible_escapes_controls_and_keeps_text() -> None:
    assert visible(HOSTILE) == "ok\\x1b]0;pwned\\x07\\x1b[31mred\\x9b2J\\u202eevil\\x7f"
    assert visible("a\nb\tc") == "a\\nb\\tc"
    assert visible("a\nb\tc", keep_lines=True) == "a\nb\tc"
    assert visible("naïve — 日本語 ✓") == "naïve — 日本語 ✓"


def test_json_text_is_the_same_json_without_raw_controls() -> None:
    value = {"k": HOSTILE, "n": [1, "é"]}
    text = json_text(value, indent=2)
    assert_no_raw_controls(text)
    assert json.loads(text) == value
    assert "é" in text  # still not ASCII-escaped


def captured_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'captures.db'}"
    store = CaptureStore.open(url)
    try:
        store.write([make_record(age=datetime.timedelta(minutes=1), inputs={"text": HOSTILE}, output=HOSTILE)])
    finally:
        store.close()
    return url


def test_captures_list_show_and_export_print_no_escape_sequences(tmp_path: Path) -> None:
    url = captured_store(tmp_path)
    listed = runner.invoke(app, ["captures", "list", "--store", url])
    assert listed.exit_code == 0, listed.stderr
    assert_no_raw_controls(listed.stdout)
    assert "ok\\x1b]0;pwned" in listed.stdout
    record_id = listed.stdout.splitlines()[1].split()[0]
    shown = runner.invoke(app, ["captures", "show", record_id, "--store", url])
    assert shown.exit_code == 0, shown.stderr
    assert_no_raw_controls(shown.stdout)
    assert json.loads(shown.stdout)["output"] == HOSTILE  # lossless: JSON escapes
    exported = runner.invoke(app, ["captures", "export", "-", "--store", url])
    assert_no_raw_controls(exported.stdout)
    assert json.loads(exported.stdout)["output"] == HOSTILE


def test_datasets_show_and_export_print_no_escape_sequences(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    record = DatasetRecord("case-1", {"q": HOSTILE}, output=HOSTILE, expected=HOSTILE, metadata={"k": HOSTILE})
    datasets.create("cases", Dataset("x", [record], source="file:x\x1b]0;t\x07.jsonl"), store=url)
    shown = runner.invoke(app, ["datasets", "show", "cases", "--store", url])
    assert shown.exit_code == 0, shown.stderr
    assert_no_raw_controls(shown.stdout)
    assert "file:x\\x1b]0;t\\x07.jsonl" in shown.stdout
    exported = runner.invoke(app, ["datasets", "export", "cases", "-", "--store", url])
    assert_no_raw_controls(exported.stdout)
    assert json.loads(exported.stdout)["output"] == HOSTILE


def test_prompts_show_list_and_diff_print_no_escape_sequences(registry: Registry, prompt_name: str) -> None:
    registry.register(prompt_name, "line one\n" + HOSTILE + " {{ x }}", commit_message=HOSTILE)
    registry.register(prompt_name, [{"role": "user\x1b[8m", "content": HOSTILE}])
    for args in (
        ["prompts", "show", f"{prompt_name}/1"],
        ["prompts", "show", f"{prompt_name}/2"],
        ["prompts", "show", f"{prompt_name}/1", "--json"],
        ["prompts", "list", "--filter", prompt_name],
        ["prompts", "diff", prompt_name, "1", "2"],
    ):
        result = runner.invoke(app, ["--tracking-uri", registry.uri, *args])
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        assert_no_raw_controls(result.stdout)
        assert prompt_name in result.stdout
    shown = runner.invoke(app, ["--tracking-uri", registry.uri, "prompts", "show", f"{prompt_name}/1"])
    assert "line one\nok\\x1b]0;pwned" in shown.stdout  # the template keeps its lines


def test_an_error_quoting_data_prints_no_escape_sequence(tmp_path: Path) -> None:
    url = captured_store(tmp_path)
    result = runner.invoke(app, ["captures", "show", "id\x1b]0;pwned\x07", "--store", url])
    line = assert_usage_error(result, "no captured call with id")
    assert_no_raw_controls(line)
