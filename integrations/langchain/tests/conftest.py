"""Fixtures for promptops-langchain: isolated promptops state and a real MLflow sqlite registry.

The same isolation as promptops' own suite (tests/conftest.py): each test runs in its own directory with fresh
promptops state (so captures go to `./.promptops/captures.db` there) and fails if promptops logged an internal
error. Kept separate so this distribution's tests run on their own too.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
for _name in [name for name in os.environ if name.startswith("PROMPTOPS_")] + ["MLFLOW_TRACKING_URI"]:
    os.environ.pop(_name, None)

from langchain_support import Registry  # noqa: E402

import promptops  # noqa: E402
from promptops import _config, _errors, prompts  # noqa: E402  # pyright: ignore[reportPrivateUsage]


def reset_promptops() -> None:
    prompts._install(None)  # pyright: ignore[reportPrivateUsage]
    _config.reset()
    _errors.reset_internal_errors()


class _InternalErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "internal error" in record.getMessage():
            self.records.append(record)


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: Registry) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    reset_promptops()
    # Every test reads the session's registry unless it says otherwise: a prompt it lacks falls back at once,
    # where MLflow's default (./mlflow.db in each test's directory) would create a database per test.
    promptops.configure(tracking_uri=registry.uri)
    handler = _InternalErrors()
    logger = logging.getLogger("promptops")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        promptops.shutdown(timeout=5)
        reset_promptops()
    if handler.records:
        messages = "\n".join(record.getMessage() for record in handler.records)
        pytest.fail(f"promptops logged internal errors:\n{messages}", pytrace=False)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


@pytest.fixture
def local_registry(registry: Registry) -> Registry:
    """The session registry, which promptops reads (see `_isolate`)."""
    return registry


@pytest.fixture
def prompt_name() -> str:
    return f"lc-{uuid.uuid4().hex[:10]}"
