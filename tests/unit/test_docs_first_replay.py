"""docs/first-replay.md, followed as written: every block, in order, in an empty directory (issue 17).

The page is a newcomer's whole first hour with an OpenAI key, so it is tested as they would follow it, not as a
Python session (test_docs.py runs the other pages that way):

* a block with a `title="FILE"` is written to that file (the prompt's messages, the application module, the
  script that calls it);
* each line of a `bash` block runs in a shell, in that directory, with the `promptops` and `python` of this
  environment and no promptops or MLflow settings: everything lands in `./mlflow.db` and `./.promptops/`;
* `pip install ...` cannot reach the package index here: its names must be the installed distributions, the
  SDK's the one that provides `import promptops`;
* `export OPENAI_API_KEY=...` is the one line not run: the test gives the SDK a key and `OPENAI_BASE_URL`, the
  URL of a local `ProviderServer` (an OpenAI-compatible stand-in), as a user of a gateway would;
* the sample terminal output (the `text` block after the replay) must match the run in what it names: the
  metrics in order, the gates, and the verdict line, whose word also decides the exit code expected.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import promptops
from promptops.provider_server import ProviderServer

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "first-replay.md"
_FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    language: str
    title: str | None
    body: str
    line: int


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    for match in _FENCE.finditer(text):
        info = match.group("info").strip().strip("{}")
        language = info.split()[0].lstrip(".") if info else ""
        title = re.search(r'title="([^"]+)"', info)
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(language, title.group(1) if title else None, match.group("body"), line))
    return found


def commands(body: str) -> list[str]:
    """The shell commands of a block: comments dropped, backslash continuations joined."""
    joined = re.sub(r"\s*\\\n\s*", " ", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def check_install_line(command: str) -> None:
    names = [word for word in shlex.split(command)[2:] if not word.startswith("-")]
    assert names and names[0] == "mlflow-promptops", command
    for name in names:
        importlib.metadata.distribution(name)  # raises PackageNotFoundError for a name that is not installed
    # The SDK's distribution is this promptops (an editable install too) and brings the `promptops` command.
    sdk = importlib.metadata.distribution("mlflow-promptops")
    assert sdk.version == promptops.__version__
    assert "promptops" in {entry.name for entry in sdk.entry_points if entry.group == "console_scripts"}


def environment(server: ProviderServer, home: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PROMPTOPS_", "OPENAI_", "MLFLOW_")) and name != "PYTHONPATH"
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=server.openai_url,
        HOME=str(home),  # no user configuration of any tool leaks in
        COLUMNS="120",
    )
    return env


def test_the_page_parses_into_the_steps_the_test_relies_on() -> None:
    found = blocks(PAGE.read_text(encoding="utf-8"))
    assert [block.title for block in found if block.title] == [
        "messages.json",
        "myapp.py",
        "ask.py",
        "messages-v2.json",
    ]
    shell = [command for block in found if block.language == "bash" for command in commands(block.body)]
    assert shell[0].startswith("pip install ") and shell[1].startswith("export OPENAI_API_KEY=")
    assert any(command.startswith("promptops replay myapp:answer --candidate 2") for command in shell)
    assert commands("a \\\n    --b 'c'\n# note\nd\n") == ["a --b 'c'", "d"]


def test_a_newcomer_gets_from_pip_install_to_a_replay_verdict(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    with ProviderServer() as server:
        env = environment(server, home)
        for block in blocks(PAGE.read_text(encoding="utf-8")):
            where = f"{PAGE.name}:{block.line}"
            if block.title is not None:
                (project / block.title).write_text(block.body, encoding="utf-8")
            elif block.language == "bash":
                for command in commands(block.body):
                    if command.startswith("pip install "):
                        check_install_line(command)
                        continue
                    if command.startswith("export OPENAI_API_KEY="):
                        continue
                    expected = 0
                    if command.startswith("promptops replay "):
                        expected = _expected_exit(PAGE.read_text(encoding="utf-8"), block)
                    done = subprocess.run(
                        command, shell=True, cwd=project, env=env, capture_output=True, text=True, timeout=300
                    )
                    assert done.returncode == expected, f"{where}: {command}\n{done.stdout}\n{done.stderr}"
                    outputs[command.split()[1]] = done
            elif block.language == "text":
                _check_sample_output(block, outputs["replay"].stdout)
        answered = server.by_status[200]
    # Twelve calls in ask.py, then one candidate and one baseline call per record.
    assert answered == 12 + 2 * 12
    assert outputs["captures"].stdout.count("support-reply@1") == 12
    assert (project / "report.html").is_file()


def _expected_exit(text: str, replay: Block) -> int:
    sample = next(block for block in blocks(text) if block.language == "text" and block.line > replay.line)
    verdict = sample.body.strip().splitlines()[-1].split()[0]
    return {"PASSED": 0, "FAILED": 1}[verdict]


def _rows(text: str) -> list[str]:
    """The first cell of each body row of a rich table (the metric names), in order."""
    return [line.strip().strip("│").split("│")[0].strip() for line in text.splitlines() if line.strip().startswith("│")]


def _check_sample_output(sample: Block, actual: str) -> None:
    """The sample names what the run printed: the table's title and metrics, the gates, the facts, the verdict."""
    shown = [" ".join(line.split()) for line in sample.body.strip().splitlines()]
    printed = [" ".join(line.split()) for line in actual.strip().splitlines()]
    assert shown[-1] == printed[-1], actual  # the verdict
    assert shown[0] == printed[0], actual  # the table's title
    assert _rows(sample.body) == _rows(actual) and _rows(actual), actual
    gates = ("pass ", "FAIL ")
    assert [line.split(":")[0] for line in shown if line.startswith(gates)] == [
        line.split(":")[0] for line in printed if line.startswith(gates)
    ], actual
    facts = [line for line in shown if " records from " in line]
    assert facts and facts[0] in printed, actual


@pytest.mark.parametrize("verdict", ["PASSED", "FAILED"])
def test_expected_exit_follows_the_sample_verdict(verdict: str) -> None:
    text = f"```bash\npromptops replay x:y --candidate 2\n```\n\n```text\ntable\n{verdict} candidate 2\n```\n"
    replay = blocks(text)[0]
    assert _expected_exit(text, replay) == (0 if verdict == "PASSED" else 1)
