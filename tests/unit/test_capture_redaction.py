"""Canary secrets planted in inputs, outputs and exceptions reach neither the store (read raw) nor a log line."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import promptops
from promptops.capture import CallCapture
from promptops.prompts import Prompt

PROMPT = Prompt(name="p", version=1, template="{{x}}", source="registry")
OPENAI = "sk-proj-CANARYabcdefghijklmnopqrstuvwx0123"
AWS = "AKIACANARY7EXAMPLEQZ"
EMAIL = "canary.person@example.com"
CARD = "4111 1111 1111 1111"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOiJ5ZXMifQ.c2lnbmF0dXJlY2FuYXJ5"
CUSTOM = "ACME-CANARY-778899"
PASSWORD = "hunter2-canary-pw"
CANARIES = [OPENAI, AWS, EMAIL, CARD, JWT, CUSTOM, PASSWORD, "CANARYabcdefghij", "canary.person", "778899", "hunter2"]


def call(query: str, options: Any, *, prompt: Prompt) -> Any: ...


def test_no_canary_reaches_the_store_or_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "c.db"
    promptops.configure(capture=f"sqlite:///{db}", trace_exporter="none", redact=[r"ACME-CANARY-\d+"])
    cc = CallCapture(call)
    now = time.perf_counter_ns()

    def submit(args: tuple[Any, ...], kwargs: dict[str, Any], **extra: Any) -> None:
        cc.submit(PROMPT, args, {**kwargs, "prompt": PROMPT}, bound=False, started_ns=now, ended_ns=now + 1, **extra)

    # Deferred (immutable values, converted by the writer thread) ...
    submit((f"key {OPENAI} and {AWS}", f"mail {EMAIL}"), {}, output=f"card {CARD} jwt {JWT} {CUSTOM}")
    submit((f"key {OPENAI}", (EMAIL, CUSTOM)), {}, output=(AWS, CARD))
    # ... and converted at once (mutable values).
    submit(
        ({"password": PASSWORD, "nested": [f"Bearer {JWT}", {"api_key": "plain"}], EMAIL: "as a key"},),
        {"options": [CUSTOM, {"token": PASSWORD}]},
        output={"reply": f"{OPENAI} {AWS}", "secret": PASSWORD, "list": [CARD, CUSTOM]},
    )
    # Exceptions: the message is redacted.
    submit(
        ("q", None), {}, error=ValueError(f"upstream said {OPENAI} for {EMAIL}, Authorization: Bearer {JWT} {CUSTOM}")
    )
    submit(("q", [1]), {}, error=RuntimeError(f"card {CARD} {AWS} with password={PASSWORD}"))
    assert promptops.shutdown(timeout=30)

    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM promptops_captures").fetchall()
    assert len(rows) == 5
    raw = "\n".join(repr(row) for row in rows)
    files = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("c.db"))
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for canary in CANARIES:
        assert canary not in raw, canary
        assert canary.encode() not in files, canary
        assert canary not in logs, canary
    assert "[REDACTED" in raw
    assert raw.count("[REDACTED:custom]") >= 4
