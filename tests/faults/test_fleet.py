"""Captures from a fleet (issue 15): many application processes writing into one store at once.

8 processes x 20,000 tracked calls, started together, each exiting normally (its records flushed at exit):
PostgreSQL stores every record, and each process holds at most 2 connections to it (the writer's own; not
one per thread or per call). SQLite (WAL) is the embedded default, not the fleet answer: the same run is made
against one SQLite file and must lose nothing either (its writers wait for each other's locks).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import promptops

from ..integration.capture_support import pg_url, postgres_database, psql
from .support import count, fleet_reports, start_fleet

PROCESSES, CALLS = 8, 20_000


def run_fleet(url: str, cwd: Path, watch: threading.Event | None = None) -> list[dict[str, int]]:
    try:
        with start_fleet(url, cwd, PROCESSES, CALLS) as children:
            outputs = [child.communicate(timeout=600) for child in children]
    finally:
        if watch is not None:
            watch.set()
    return fleet_reports(children, outputs)


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
