"""Every Python code block in the docs, the README and promptops' docstrings is checked; examples/ run.

* Every block is compiled (syntax check), including blocks marked ```` ```{.python test="skip"} ````. The braces
  matter: pymdownx.superfences does not take ```` ```python test="skip" ```` for a fence, and the page would show
  raw Markdown from there on (`test_docs_site.py` checks the built site).
* The blocks of each markdown page run in order, in one namespace (like a reader going down the page), in a
  fresh working directory, so with no configuration both MLflow and promptops use `./mlflow.db` there.
  A block whose info string has `test="skip"` is only compiled: use it for snippets that need something a
  test cannot have (a remote server, a name defined elsewhere).
* A docstring block runs on its own when it is self-contained: every name it reads is defined in it, a
  builtin, or in `PRELUDE` (`promptops`, and `llm`, which stands for the reader's model call), and it is not
  marked `test="skip"` (a block needing an application module, say).
* docs/first-replay.md is followed as files and shell commands, by `test_docs_first_replay.py`.
* Each `examples/*.py` (except `demo.py`, tested separately) runs in a subprocess and must exit 0 without
  writing to its working directory.
"""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import symtable
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_examples import CodeExample, find_examples

import promptops

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"])
SOURCES = sorted((ROOT / "promptops").rglob("*.py"))
EXAMPLES = sorted(path for path in (ROOT / "examples").glob("*.py") if path.name != "demo.py")


def llm(text: object) -> str:
    """Stands in for the reader's model call in examples: deterministic, offline."""
    return f"LLM({text})"


PRELUDE: dict[str, Any] = {"promptops": promptops, "llm": llm}
# A page is read from the top: it imports promptops itself (issue 17: scorers.md's custom scorer did not, and
# the prelude hid the NameError). Only `llm`, the stand-in the pages name as the reader's model call, is given.
PAGE_PRELUDE: dict[str, Any] = {"llm": llm}


def _python(example: CodeExample) -> bool:
    return not example.prefix.startswith(("pycon", "{.pycon"))


def _skipped(example: CodeExample) -> bool:
    return example.prefix_settings().get("test") == "skip"


def _id(example: CodeExample) -> str:
    return f"{example.path.relative_to(ROOT)}:{example.start_line}"


def _examples(paths: list[Path]) -> list[CodeExample]:
    return [example for path in paths for example in find_examples(path) if _python(example)]


ALL_BLOCKS = _examples([*PAGES, *SOURCES])
DOCSTRING_BLOCKS = _examples(SOURCES)
# Pages followed as files and shell commands, not as one Python session, are run by their own test.
RUN_BY_THEIR_OWN_TEST = {"first-replay.md": "test_docs_first_replay.py"}
PAGES_WITH_CODE = [
    page
    for page in PAGES
    if page.name not in RUN_BY_THEIR_OWN_TEST and any(not _skipped(example) for example in _examples([page]))
]


def free_names(source: str) -> set[str]:
    """Names `source` reads but neither defines nor imports (builtins excluded)."""
    top = symtable.symtable(source, "<example>", "exec")
    bound = {symbol.get_name() for symbol in top.get_symbols() if symbol.is_assigned() or symbol.is_imported()}
    read: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (table is top or symbol.is_global()):
                read.add(symbol.get_name())
    return read - bound - set(dir(builtins))


def test_examples_are_found() -> None:
    # Guards against a refactor of the collection silently checking nothing.
    assert len(ALL_BLOCKS) >= 15
    assert {page.name for page in PAGES_WITH_CODE} >= {"README.md", "getting-started.md", "configuration.md"}
    assert DOCSTRING_BLOCKS
    assert all((ROOT / "docs" / page).is_file() for page in RUN_BY_THEIR_OWN_TEST)
    assert all((Path(__file__).parent / test).is_file() for test in RUN_BY_THEIR_OWN_TEST.values())


def test_free_names() -> None:
    assert free_names("import os\nx = os.sep\nprint(x, y)") == {"y"}
    assert free_names("def f(a):\n    return a + b\n\n\nclass C:\n    z = f(1)") == {"b"}
    assert free_names("@promptops.track(prompt='p')\ndef f(*, prompt):\n    return llm(prompt)") == {"promptops", "llm"}


@pytest.mark.parametrize("example", ALL_BLOCKS, ids=_id)
def test_block_compiles(example: CodeExample) -> None:
    compile(example.source, _id(example), "exec", dont_inherit=True)


def run_block(example: CodeExample, namespace: dict[str, Any]) -> None:
    """Execute a block in `namespace`; tracebacks point at the block's real file and line.

    pytest-examples' own runner rewrites tracebacks in a way that crashes pytest's reporting on Python 3.11
    (with hypothesis' plugin loaded), which hides the very failure it reports; plain `exec` does not.
    """
    padded = "\n" * example.start_line + example.source  # start_line is the fence; the code starts below
    exec(compile(padded, str(example.path), "exec", dont_inherit=True), namespace)


@pytest.fixture
def docs_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`./mlflow.db`, by absolute URI, for both MLflow and promptops (as with no configuration at all).

    Absolute because MLflow caches a store per URI string: a relative `sqlite:///mlflow.db` keeps pointing at
    the first working directory it was opened in, and every test here runs in its own directory.
    """
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    promptops.configure()  # re-read the environment
    assert promptops.get_settings().tracking_uri == uri
    return uri


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda page: str(page.relative_to(ROOT)))
def test_page_runs(page: Path, docs_registry: str) -> None:
    namespace = {"__name__": "__docs__", **PAGE_PRELUDE}
    for example in _examples([page]):
        if not _skipped(example):
            run_block(example, namespace)
    assert promptops.flush()


SELF_CONTAINED = [
    example for example in DOCSTRING_BLOCKS if not _skipped(example) and not free_names(example.source) - PRELUDE.keys()
]


@pytest.mark.parametrize("example", SELF_CONTAINED, ids=_id)
def test_docstring_block_runs(example: CodeExample, docs_registry: str) -> None:
    run_block(example, {"__name__": "__docs__", **PRELUDE})


def _example_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PROMPTOPS_") and name != "MLFLOW_TRACKING_URI"
    }
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    return env


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_script_runs(script: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_example_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{script.name} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert list(tmp_path.iterdir()) == [], "examples must keep their files in a temporary directory"


def _cli_options_and_commands() -> tuple[set[str], set[str]]:
    import typer.main

    from promptops.cli import app

    options: set[str] = set()
    commands: set[str] = set()
    # Duck-typed: recent typer vendors its own click, so `click.Group` is not the class to test against.
    pending: list[Any] = [typer.main.get_command(app)]
    while pending:
        command = pending.pop()
        for param in command.params:
            options.update(name for name in [*param.opts, *param.secondary_opts] if name.startswith("-"))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            if not getattr(sub, "commands", None):
                commands.add(name)
            pending.append(sub)
    return options, commands


def test_cli_page_matches_the_cli() -> None:
    """Every option the CLI page mentions exists, and every command has a section on it."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    options, commands = _cli_options_and_commands()
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", text))
    # MLflow's own environment variables and the like are not options; only flags are checked.
    assert mentioned - options - {"--help", "-h"} == set()
    documented = set(re.findall(r"^### ([\w-]+)$", text, flags=re.M))
    assert commands <= documented, f"commands without a section in docs/cli.md: {commands - documented}"


def test_replay_help_names_every_gate_statistic_and_the_default_scorers() -> None:
    from typer.testing import CliRunner

    from promptops.cli import app
    from promptops.replay._gates import STATISTICS
    from promptops.replay._run import DEFAULT_SCORERS

    assert DEFAULT_SCORERS == ("rougeL", "bleu")  # what the help and the page below say

    result = CliRunner().invoke(app, ["replay", "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    stats = re.search(r"\(stat: ([a-z0-9_ ]+)\)", help_text)
    assert stats is not None, help_text
    assert stats.group(1).split() == list(STATISTICS)
    assert "Default: rougeL and bleu" in help_text
    page = " ".join((ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split())
    assert all(f"`{stat}`" in page for stat in STATISTICS)
    assert "the scorers are `rougeL` and `bleu`" in page


def _hooks() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_has_the_current_settings_table() -> None:
    """The Markdown file keeps a generated copy of the settings table for GitHub readers (issue 17)."""
    from promptops._config import PARAMS

    hooks = _hooks()
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert text.count(hooks.MARKER) == 1 and text.count(hooks.END_MARKER) == 1
    assert text == hooks.with_settings_table(text, github=True), (
        "the settings table in docs/configuration.md is out of date: run `.venv/bin/python docs/hooks.py`"
    )
    table = text.split(hooks.MARKER)[1].split(hooks.END_MARKER)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [param.name for param in PARAMS]
    # GitHub splits cells on every unescaped pipe; each row must have exactly the table's five columns.
    assert all(len(re.split(r"(?<!\\)\|", row)) == 7 for row in rows)
    # The site's copy is made at build time from PARAMS, without GitHub's escapes (Python-Markdown shows them).
    site = hooks.on_page_markdown(text)
    assert "`str | None`" in site and "\\|" not in site.split(hooks.MARKER)[1].split(hooks.END_MARKER)[0]


def test_every_skipped_block_says_why() -> None:
    """Issue 17: no block of the docs is left out of the run without a reason written beside it.

    Docstrings count: mkdocstrings renders them as the API reference pages.
    """
    skipped = [example for example in _examples([*PAGES, *SOURCES]) if _skipped(example)]
    assert skipped  # the collection sees the skipped blocks at all
    unexplained = [_id(example) for example in skipped if len(example.prefix_settings().get("reason", "")) < 10]
    assert unexplained == [], 'give each a reason: ```{.python test="skip" reason="needs ..."}'
