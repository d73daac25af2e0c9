"""Captures from a fleet (issue 15): many application processes writing into one store at once.

8 processes x 20,000 tracked calls, started together, each exiting normally (its records flushed at exit):
PostgreSQL stores every record, and each process holds at most 2 connections to it (the writer's own; not
one per thread or per call). SQLite (WAL) is the embedded default, not the fleet answer: the same run is made
against one SQLite file and must lose nothing either (its writers wait for each other's locks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import promptops

from ..integration.capture_support import pg_url, postgres_database, psql
from ..integration.conftest import child_env
from .support import ROOT, count

PROCESSES, CALLS = 8, 20_000

APP = """
import json, sys
import promptops

# No registry (a refused port): the fallback template serves; only the capture store is shared.
promptops.configure(capture=sys.argv[1], trace_exporter="none", tracking_uri="http://127.0.0.1:9")

@promptops.track(prompt="summarize", fallback="Summarize {{ text }}")
def summarize(text, *, prompt):
    return text.upper()

worker = sys.argv[2]
for i in range(int(sys.argv[3])):
    summarize(f"process {worker} call {i}")
finished = promptops.flush(300)
print(json.dumps({"flushed": finished, **promptops.stats()}))
"""


def run_fleet(url: str, cwd: Path, watch: threading.Event | None = None) -> list[dict[str, int]]:
    script = cwd / "fleet_app.py"
    script.write_text(textwrap.dedent(APP))
    children = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(worker), str(CALLS)],
            cwd=cwd,
            env=child_env(PYTHONPATH=str(ROOT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(PROCESSES)
    ]
    reports: list[dict[str, int]] = []
    try:
        for child in children:
            out, err = child.communicate(timeout=600)
            assert child.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            child.kill()
            child.communicate()  # reap it and close its pipes
        if watch is not None:
            watch.set()
    return reports


def test_a_fleet_into_postgresql_loses_nothing_and_uses_few_connections(tmp_path: Path) -> None:
    with postgres_database() as database:
        url = pg_url(database)
        done = threading.Event()
        most = 0

        def watch_connections() -> None:
            nonlocal most
            while not done.is_set():
                found = psql(
                    "SELECT count(*) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND application_name = 'promptops-capture'"
                )
                most = max(most, int(found))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch_connections, daemon=True)
        watcher.start()
        reports = run_fleet(url, tmp_path, done)
        watcher.join(10)
        assert all(report["flushed"] for report in reports)
        assert sum(report["captures_dropped"] for report in reports) == 0
        assert sum(report["captures_written"] for report in reports) == PROCESSES * CALLS
        assert count(url) == PROCESSES * CALLS
        assert 1 <= most <= 2 * PROCESSES, f"{most} capture connections for {PROCESSES} processes"
        print(f"fleet into PostgreSQL: at most {most} capture connections at once for {PROCESSES} processes")
        promptops.shutdown(timeout=10)


def test_a_fleet_into_one_sqlite_file_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'captures.db'}"
    reports = run_fleet(url, tmp_path)
    assert all(report["flushed"] for report in reports)
    assert sum(report["captures_dropped"] for report in reports) == 0
    assert count(url) == PROCESSES * CALLS
