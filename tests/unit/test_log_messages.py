"""promptops' log messages do not name promptops again: the logger's name already does.

With the usual `%(name)s: %(message)s` format a prefixed message printed `WARNING promptops: promptops: ...`
(issue 17, seen in examples/quickstart.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _messages(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS:
            args = node.args[1:] if node.func.attr == "log" else node.args
            first = args[0] if args else None
            if isinstance(first, ast.JoinedStr) and first.values:
                first = first.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def test_no_message_starts_with_the_logger_name() -> None:
    sources = [*(ROOT / "promptops").rglob("*.py"), *(ROOT / "integrations").rglob("promptops_langchain/*.py")]
    messages = [(path, line, text) for path in sources for line, text in _messages(path)]
    assert len(messages) >= 10  # the scan finds the messages at all
    prefixed = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}" for path, line, text in messages if text.startswith("promptops:")
    ]
    assert prefixed == []
