"""`promptops datasets ...` against a real SQLite capture store, and the installed console script."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from promptops import datasets
from promptops.capture import CaptureRecord
from promptops.cli import app
from promptops.datasets import Dataset, DatasetRecord

from .test_datasets import AWKWARD, NOW, awkward_dataset, make_capture, write

runner = CliRunner()
PROMPTOPS = Path(sys.executable).parent / "promptops"


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, list[CaptureRecord]]:
    """A SQLite capture store holding 30 captures a minute apart; every third is non-replayable, #5 raised."""
    url = f"sqlite:///{tmp_path / 'store' / 'captures.db'}"
    records = [
        make_capture(
            age=datetime.timedelta(minutes=60 - i),
            function="app.llm:summarize" if i % 2 == 0 else "app.llm:classify",
            version=1 if i < 20 else 2,
            inputs={"text": f"call {i % 25}"},  # 25..29 repeat 0..4
            replayable=i % 3 != 0,
            error=("TimeoutError", "model timed out") if i == 5 else None,
        )
        for i in range(30)
    ]
    write(url, records)
    return url, records


def run(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return runner.invoke(app, ["datasets", *args], env=env)


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result.stdout


def assert_usage_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------------ create


def test_create_from_captures(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    out = ok(run("create", "summarize-nov", "--from-captures", "--function", "app.llm:summarize", "--store", url))
    saved = datasets.load("summarize-nov", store=url)
    assert [r.id for r in saved.records] == [r.id for r in records if r.function == "app.llm:summarize"]
    assert out == (
        f"created dataset summarize-nov: 15 records (5 not replayable) from captures, fingerprint "
        f"{saved.fingerprint[:12]}\n"
    )
    assert saved.filters == {"store": url, "function": "app.llm:summarize"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--version", "2"), list(range(20, 30))),
        # Absolute instants: the captures' ages count from NOW, taken when the test module was imported.
        (("--since", (NOW - datetime.timedelta(minutes=44.5)).isoformat()), list(range(16, 30))),  # ages 44m .. 31m
        (("--until", (NOW - datetime.timedelta(minutes=49.5)).isoformat()), list(range(11))),  # ages 60m .. 50m
        (("--limit", "3"), [27, 28, 29]),
        (("--dedupe",), list(range(25))),
        (("--dedupe", "--limit", "2"), [23, 24]),
        (("--prompt", "summarize", "--function", "app.llm:classify", "-n", "1"), [29]),
    ],
)
def test_create_filters(store: tuple[str, list[CaptureRecord]], args: tuple[str, ...], expected: list[int]) -> None:
    url, records = store
    ok(run("create", "d", "--from-captures", *args, "--store", url))
    assert [r.id for r in datasets.load("d", store=url).records] == [records[i].id for i in expected]


def test_sample_with_seed_is_reproducible(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        ok(run("create", name, "--from-captures", "--sample", "8", "--seed", seed, "--store", url))
    a, b, c = (datasets.load(name, store=url) for name in "abc")
    assert len(a) == 8 and a.fingerprint == b.fingerprint != c.fingerprint
    assert a.filters["sample"] == 8 and a.filters["seed"] == 5


def test_create_is_immutable(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    ok(run("create", "summarize-nov", "--from-captures", "--limit", "2", "--store", url))
    before = datasets.load("summarize-nov", store=url)
    assert_usage_error(
        run("create", "summarize-nov", "--from-captures", "--store", url),
        f"dataset 'summarize-nov' already exists in {url}; datasets are immutable: choose another NAME, "
        "e.g. summarize-nov-2",
    )
    assert datasets.load("summarize-nov", store=url).records == before.records


def test_create_usage_errors(store: tuple[str, list[CaptureRecord]], tmp_path: Path) -> None:
    url, _ = store
    assert_usage_error(run("create", "d", "--store", url), "nothing to create d from: pass --from-captures")
    assert_usage_error(
        run("create", "d", "--from-captures", "--function", "x:y", "--since", "7d", "--store", url),
        "no captured calls match (--function x:y, --since 7d); nothing to save as d: widen the filters",
    )
    assert_usage_error(
        run("create", "my data", "--from-captures", "--store", url), "dataset name 'my data' is not valid"
    )
    assert_usage_error(
        run("create", "d", "--from-captures", "--since", "soon", "--store", url), "--since 'soon' is not"
    )
    assert_usage_error(
        run("create", "d", "--from-captures", "--store", "sqlite:///nope.db"), "no capture store at nope.db"
    )
    assert not (tmp_path / "nope.db").exists()
    assert datasets.list_datasets(store=url) == []
    result = run("create", "d", "--from-captures", "--sample", "0", "--store", url)
    assert result.exit_code == 2 and "--sample" in result.stderr


# ------------------------------------------------------------------------------------------------ list, show


def test_list(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    assert ok(run("list", "--store", url)).strip() == (
        "no datasets yet; create one with: promptops datasets create NAME --from-captures"
    )
    ok(run("create", "b-set", "--from-captures", "--limit", "4", "--store", url))
    datasets.create("a-set", awkward_dataset(), store=url)
    out = ok(run("list", "--store", url))
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "RECORDS", "SOURCE", "CREATED", "(UTC)", "FINGERPRINT"]
    a, b = (datasets.load(name, store=url) for name in ("a-set", "b-set"))
    assert lines[1].split() == [
        "a-set",
        str(len(AWKWARD)),
        "file:awkward.jsonl",
        *a.created_at.strftime("%Y-%m-%d %H:%M:%S").split(),
        a.fingerprint[:12],
    ]
    assert lines[2].split()[:3] == ["b-set", "4", "captures"] and lines[2].split()[-1] == b.fingerprint[:12]


def test_show(store: tuple[str, list[CaptureRecord]]) -> None:
    url, records = store
    ok(run("create", "d", "--from-captures", "--since", "2h", "--store", url))
    dataset = datasets.load("d", store=url)
    out = ok(run("show", "d", "--limit", "7", "--store", url))
    assert re.search(r"^dataset +d *$", out, re.M) and re.search(r"^source +captures *$", out, re.M)
    assert re.search(rf"^fingerprint +{dataset.fingerprint} *$", out, re.M)
    assert re.search(r"^records +30 records \(10 not replayable\) *$", out, re.M)
    assert '"since": "' in out
    for header in ("ID", "PROMPT", "LATENCY", "REPLAY", "ERROR", "INPUTS", "OUTPUT", "EXPECTED"):
        assert header in out
    shown = [r.id for r in records if r.id in out]
    assert shown == [r.id for r in records[:7]]
    row = next(line for line in out.splitlines() if records[5].id in line)
    assert row.split()[1:] == ["summarize@1", "12.5", "ms", "yes", "TimeoutError", '{"text":"call', '5"}']
    row = next(line for line in out.splitlines() if records[3].id in line)
    assert " no " in row and "a summary" in row
    assert out.splitlines()[-1] == "showing the first 7 of 30 records (--limit)"


def test_show_expected_and_markup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    record = DatasetRecord("case-1", {"q": "[bold]not markup[/bold]"}, expected={"answer": 42})
    datasets.create("cases", Dataset("x", [record]), store=url)
    out = ok(run("show", "cases", "--store", url))
    assert '{"q":"[bold]not markup[/bold]"}' in out and '{"answer":42}' in out
    row = next(line for line in out.splitlines() if line.startswith("case-1"))
    assert row.split()[1:4] == ["-", "yes", '{"q":"[bold]not']


def test_show_unknown(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    ok(run("create", "summarize-nov", "--from-captures", "--store", url))
    assert_usage_error(
        run("show", "summarize-now", "--store", url),
        f"no dataset named 'summarize-now' in the capture store {url}; did you mean 'summarize-nov'?",
    )


# ------------------------------------------------------------------------------------------------ import, export


def test_import_export_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"  # import creates the store
    dataset = awkward_dataset()
    datasets.write_file(dataset, tmp_path / "golden-set.jsonl")
    out = ok(run("import", "golden-set.jsonl", "--store", url))
    assert out == f"imported {len(AWKWARD)} records from golden-set.jsonl as dataset golden-set\n"
    imported = datasets.load("golden-set", store=url)
    assert imported.records == dataset.records and imported.source == "file:golden-set.jsonl"
    result = run("export", "golden-set", "copy.parquet", "--store", url)
    assert (
        ok(result) == "" and result.stderr == f"exported {len(AWKWARD)} records of dataset golden-set to copy.parquet\n"
    )
    ok(run("import", "copy.parquet", "--name", "golden-copy", "--store", url))
    assert datasets.load("golden-copy", store=url).fingerprint == dataset.fingerprint
    ok(run("export", "golden-copy", "copy.jsonl", "--store", url))
    assert (tmp_path / "copy.jsonl").read_bytes() == (tmp_path / "golden-set.jsonl").read_bytes()
    out = ok(run("export", "golden-copy", "-", "--store", url))
    assert [json.loads(line) for line in out.splitlines()] == [r.to_dict() for r in dataset.records]


def test_import_is_all_or_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    lines = ['{"inputs": {"q": 1}}', '{"inputs": {"q": 2}}', '{"inputs": {"q": 3}']
    (tmp_path / "cases.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_usage_error(
        run("import", "cases.jsonl", "--store", url), "cases.jsonl: line 3: not valid JSON: Expecting ',' delimiter"
    )
    (tmp_path / "inputs.jsonl").write_text('{"inputs": {"q": 1}}\n{"inputs": [2]}\n', encoding="utf-8")
    assert_usage_error(run("import", "inputs.jsonl", "--store", url), "inputs.jsonl: line 2: inputs is a list")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    assert_usage_error(run("import", "empty.jsonl", "--store", url), "empty.jsonl: the file holds no records")
    assert datasets.list_datasets(store=url) == []


def test_import_usage_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    datasets.write_file(awkward_dataset(), tmp_path / "my cases.jsonl")
    assert_usage_error(
        run("import", "my cases.jsonl", "--store", url), "dataset name 'my cases' is not valid", "pass --name NAME"
    )
    ok(run("import", "my cases.jsonl", "--name", "cases", "--store", url))
    assert_usage_error(
        run("import", "my cases.jsonl", "--name", "cases", "--store", url),
        "dataset 'cases' already exists",
        "datasets are immutable: import under a new name with --name cases-2",
    )
    (tmp_path / "cases.csv").write_text("inputs\n", encoding="utf-8")
    assert_usage_error(run("import", "cases.csv", "--store", url), "unknown dataset file type '.csv'")
    assert_usage_error(run("import", "nope.jsonl", "--store", url), "no file nope.jsonl")
    assert [info.name for info in datasets.list_datasets(store=url)] == ["cases"]


def test_export_usage_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    datasets.create("d", awkward_dataset(), store=url)
    assert_usage_error(
        run("export", "d", "out.csv", "--store", url), "cannot export to out.csv ('.csv'); name a .jsonl"
    )
    assert_usage_error(run("export", "d", "out", "--store", url), "cannot export to out (no extension)")
    assert_usage_error(run("export", "d", "missing/out.jsonl", "--store", url), "cannot write missing/out.jsonl")
    assert_usage_error(run("export", "nope", "out.jsonl", "--store", url), "no dataset named 'nope'")
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("store.db")] == []


# ------------------------------------------------------------------------------------------------ delete, store


def test_delete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    datasets.create("d", awkward_dataset(), store=url)
    assert ok(run("delete", "d", "--store", url)) == f"deleted dataset d ({len(AWKWARD)} records)\n"
    assert_usage_error(run("delete", "d", "--store", url), "no dataset named 'd'")
    assert datasets.list_datasets(store=url) == []


def test_store_from_the_capture_setting(store: tuple[str, list[CaptureRecord]]) -> None:
    url, _ = store
    ok(run("create", "d", "--from-captures", "--limit", "1", env={"PROMPTOPS_CAPTURE": url}))
    assert "d " in ok(run("list", env={"PROMPTOPS_CAPTURE": url}))


def test_capture_disabled() -> None:
    assert_usage_error(run("list", env={"PROMPTOPS_CAPTURE": "none"}), "capture is disabled")


def test_bad_stores(tmp_path: Path) -> None:
    assert_usage_error(run("list"), "no capture store at", str(tmp_path / ".promptops" / "captures.db"))
    assert_usage_error(run("list", "--store", "not a url"), "invalid capture store URL 'not a url'")
    assert_usage_error(run("import", "x.jsonl", "--store", "not a url"), "no file x.jsonl")
    datasets.write_file(awkward_dataset(), tmp_path / "x.jsonl")
    assert_usage_error(run("import", "x.jsonl", "--store", "not a url"), "invalid capture store URL 'not a url'")


def test_help_lists_the_commands() -> None:
    out = ok(run("--help"))
    for command in ("create", "list", "show", "import", "export", "push", "pull", "delete"):
        assert command in out


# ------------------------------------------------------------------------------------------------ console script


def test_console_script(store: tuple[str, list[CaptureRecord]], tmp_path: Path) -> None:
    url, _ = store
    env = {**os.environ, "PROMPTOPS_CAPTURE": url, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

    def promptops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROMPTOPS), "datasets", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
        )

    done = promptops("create", "nightly", "--from-captures", "--sample", "3", "--seed", "1")
    assert done.returncode == 0, done.stderr
    done = promptops("create", "nightly", "--from-captures")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: dataset 'nightly' already exists in {url}; datasets are immutable: choose another NAME, e.g. nightly-2"
    ]


def test_push_and_pull_to_an_unreachable_server_say_what_to_do(store: tuple[str, list[CaptureRecord]]) -> None:
    # Issue 17: MLflow's raw "HTTPConnectionPool ... Max retries exceeded" used to be the whole message.
    import socket

    url, _ = store
    ok(run("create", "sum", "--from-captures", "--function", "app.llm:summarize", "--store", url))
    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = f"http://127.0.0.1:{port}"
    for args in (("push", "sum", "--store", url), ("pull", "sum-eval", "--name", "other", "--store", url)):
        result = runner.invoke(app, ["--tracking-uri", server, "datasets", *args])
        line = assert_usage_error(result, f"cannot reach the MLflow server at {server} (connection refused)")
        assert "HTTPConnectionPool" not in line and "--tracking-uri" in line
