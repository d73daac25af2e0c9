"""Spans into a sqlite tracking store shared by several processes (issue 10, item 2): a locked database is
waited out, not a lost batch, and MLflow's traceback for it never reaches stderr."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from promptops.tracing._counters import ExportFailed
from promptops.tracing._mlflow import retry_when_locked


def locked_database(path: Path, seconds: float) -> threading.Event:
    """Hold an exclusive lock on the database at `path` for `seconds` in another thread; set once it holds it."""
    holding = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        holding.set()
        threading.Event().wait(seconds)
        connection.execute("COMMIT")
        connection.close()

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(10)
    return holding


def test_a_locked_write_is_retried_until_the_lock_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    sqlite3.connect(path).execute("CREATE TABLE spans (n INTEGER)").connection.close()
    attempts: list[int] = []

    def write() -> int:
        attempts.append(1)
        with sqlite3.connect(path, timeout=0) as connection:  # fail at once, as MLflow's lock upgrade does
            connection.execute("INSERT INTO spans VALUES (1)")
        return len(attempts)

    locked_database(path, 0.5)
    assert retry_when_locked(write, "log_spans", budget=30) > 1  # it failed first, then got through
    assert sqlite3.connect(path).execute("SELECT count(*) FROM spans").fetchone() == (1,)


def test_other_errors_and_an_exhausted_budget_fail_with_one_line(tmp_path: Path) -> None:
    def broken() -> None:
        raise ValueError("no such table: spans\n" + "long traceback line\n" * 50)

    with pytest.raises(ExportFailed, match=r"^log_spans failed: ValueError: no such table: spans$"):
        retry_when_locked(broken, "log_spans")

    path = tmp_path / "store.db"
    sqlite3.connect(path).execute("CREATE TABLE spans (n INTEGER)").connection.close()
    locked_database(path, 5)

    def write() -> None:
        with sqlite3.connect(path, timeout=0) as connection:
            connection.execute("INSERT INTO spans VALUES (1)")

    with pytest.raises(ExportFailed, match="database is locked"):
        retry_when_locked(write, "log_spans", budget=0.3)


def test_mlflow_store_error_log_is_silenced_in_the_export_only(caplog: pytest.LogCaptureFixture) -> None:
    # MLflow logs a long traceback ("SQLAlchemy database error") for every locked write before raising; inside
    # our export it is our failure to report (one counted warning), anywhere else MLflow's log is untouched.
    mlflow_logger = logging.getLogger("mlflow.store.db.utils")

    def write() -> None:
        mlflow_logger.error("SQLAlchemy database error. The following exception is caught.\ndatabase is locked")
        raise RuntimeError("database is locked")

    with caplog.at_level(logging.ERROR, logger="mlflow.store.db.utils"):
        with pytest.raises(ExportFailed):
            retry_when_locked(write, "log_spans", budget=0.2)
        assert caplog.records == []
        mlflow_logger.error("outside promptops' export")
        assert [record.getMessage() for record in caplog.records] == ["outside promptops' export"]
