"""Resume and reuse (issue 13, item 5): a replay stores each finished call, and running it again makes only the
missing ones; killed halfway (SIGINT, SIGKILL) in a subprocess, the second run's result equals an uninterrupted
run's. Real `openai` SDK against ProviderServer, which counts what it answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from promptops import replay
from promptops.provider_server import ProviderServer
from promptops.replay._calls import calls_table
from tests.conftest import Registry
from tests.support import cli_command
from tests.unit.test_replay import TEXTS, App, write_dataset
from tests.unit.test_replay_providers import PRODUCTION, PROVIDER_APP

RECORDS = [f"{text} (ticket {number})" for number, text in enumerate(TEXTS + TEXTS)]
PLANNED = len(RECORDS) * 3  # candidate, baseline reference, one baseline re-run


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderServer]:
    with ProviderServer(latency_s=0.05) as running:
        monkeypatch.setenv("PROMPTOPS_TEST_PROVIDER_URL", running.url)
        yield running


@pytest.fixture
def provider_app(local_registry: Registry, prompt_name: str, tmp_path: Path) -> App:
    application = App(local_registry, prompt_name, tmp_path, PROVIDER_APP)
    application.register("v1", PRODUCTION, alias="production")
    application.register("shorter", "Summarize the ticket in at most 6 words. Ticket: {{ text }}")
    return application


def options(application: App, tmp_path: Path) -> dict[str, Any]:
    data = write_dataset(tmp_path / "tickets.jsonl", [{"inputs": {"text": text}} for text in RECORDS])
    return {
        "candidate": application.versions["shorter"],
        "baseline": str(application.versions["v1"]),
        "dataset": data,
        "log_to_mlflow": False,
        "workers": 2,
    }


def stored(tmp_path: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{tmp_path / '.promptops' / 'captures.db'}")
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(calls_table())).scalar() or 0
    finally:
        engine.dispose()


def comparable(result: replay.ReplayResult) -> dict[str, Any]:
    """What must not change between a resumed run and an uninterrupted one (wall-clock latency aside)."""
    records = [
        (r.id, r.candidate_output, r.baseline_output, r.error, {k: v for k, v in r.scores.items() if k != "latency"})
        for r in result.records
    ]
    metrics = {name: summary.to_dict() for name, summary in result.metrics.items() if name != "latency"}
    return {
        "records": records,
        "metrics": metrics,
        "gates": [g.to_dict() for g in result.gates],
        "passed": result.passed,
    }


def interrupted_run(application: App, tmp_path: Path, server: ProviderServer, how: signal.Signals) -> int:
    """Start the CLI in a subprocess, send `how` once the server answered half the calls; the calls stored."""
    settings = options(application, tmp_path)
    command = cli_command(
        "replay", f"{application.module}:with_openai", "--candidate", str(settings["candidate"]),
        "--baseline", settings["baseline"], "--dataset", settings["dataset"], "--workers", "2", "--no-mlflow",
    )  # fmt: skip
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": application.registry.uri,
        "PROMPTOPS_TRACE_EXPORTER": "none",
        "PROMPTOPS_TEST_PROVIDER_URL": server.url,
    }
    process = subprocess.Popen(
        command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 120
    while server.by_status[200] < PLANNED * 2 // 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(how)
    output, _ = process.communicate(timeout=60)
    assert server.by_status[200] < PLANNED, output  # it did not finish before the signal
    if how == signal.SIGINT:
        assert process.returncode == 1 and "interrupted" in output, output
    else:
        assert process.returncode == -signal.SIGKILL
    return stored(tmp_path)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_killed_replay_resumes_with_only_the_missing_calls_and_the_same_result(
    provider_app: App, server: ProviderServer, tmp_path: Path, how: signal.Signals
) -> None:
    kept = interrupted_run(provider_app, tmp_path, server, how)
    assert 0 < kept < PLANNED
    if how == signal.SIGINT:  # a graceful stop stores every call that finished
        assert kept >= server.by_status[200] - 2  # at most the calls in flight (--workers 2) were cut off
    server.reset()
    target = f"{provider_app.module}:with_openai"
    resumed = replay.run(target, **options(provider_app, tmp_path))
    assert server.by_status[200] == PLANNED - kept  # only the missing calls
    assert resumed.calls == PLANNED and resumed.reused == kept and not resumed.interrupted
    server.reset()
    uninterrupted = replay.run(target, **options(provider_app, tmp_path), store=f"sqlite:///{tmp_path / 'other.db'}")
    assert server.by_status[200] == PLANNED and uninterrupted.reused == 0
    assert comparable(resumed) == comparable(uninterrupted)


def test_rescoring_makes_no_calls_and_fresh_makes_them_all(
    provider_app: App, server: ProviderServer, tmp_path: Path
) -> None:
    target = f"{provider_app.module}:with_openai"
    first = replay.run(target, **options(provider_app, tmp_path))
    assert server.by_status[200] == PLANNED and first.reused == 0
    server.reset()
    rescored = replay.run(target, **options(provider_app, tmp_path), scorers=["exact_match", "length_ratio"])
    assert server.requests == 0 and rescored.reused == PLANNED
    assert [r.candidate_output for r in rescored.records] == [r.candidate_output for r in first.records]
    fresh = replay.run(target, **options(provider_app, tmp_path), fresh=True)
    assert server.by_status[200] == PLANNED and fresh.reused == 0
    # another candidate content: its calls are made, the baseline's reused
    server.reset()
    other = options(provider_app, tmp_path) | {"candidate": provider_app.versions["v1"]}
    replay.run(target, **other)
    assert server.by_status[200] == len(RECORDS)  # the candidate's calls only...
