"""Shared fixtures: isolation of promptops' global state, a real MLflow sqlite registry, internal-error guard."""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports MLflow: it would otherwise try to reach the internet.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""  # no price-catalog download from github.com when spans carry usage
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
for _name in [name for name in os.environ if name.startswith("PROMPTOPS_")] + ["MLFLOW_TRACKING_URI"]:
    os.environ.pop(_name, None)

import promptops  # noqa: E402
from promptops import _config, _errors, prompts  # noqa: E402

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


# The suites that open sockets to local servers and proxies. A socket one of their tests leaves open in a reference
# cycle was closed by the garbage collector whenever a collection came, failing a later unrelated test with a
# ResourceWarning (once in three CI runs, in a unit test's Hypothesis loop): a collection after each of their modules
# (27 modules; 0.3-0.5 s each measured on a loaded 2-core machine, 2.3 s at worst) makes that module's last test
# report it instead.
_SOCKET_SUITES = ("tests/integration/", "tests/faults/")


@pytest.fixture(autouse=True, scope="module")
def _collect_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if any(suite in str(request.path).replace(os.sep, "/") for suite in _SOCKET_SUITES):
        gc.collect()


def reset_promptops() -> None:
    """Forget configuration, caches and counters, as in a new process."""
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
def _isolate(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own directory with fresh promptops state, and fails on any internal error."""
    monkeypatch.chdir(tmp_path)
    reset_promptops()
    handler = _InternalErrors()
    logger = logging.getLogger("promptops")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        promptops.shutdown(timeout=5)
        reset_promptops()
    if handler.records and not request.node.get_closest_marker("internal_errors_expected"):
        messages = "\n".join(record.getMessage() for record in handler.records)
        pytest.fail(f"promptops logged internal errors:\n{messages}", pytrace=False)


class Registry:
    """A real MLflow sqlite prompt registry, shared by the session; tests use unique prompt names."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def register(self, name: str, template: Any, *, alias: str | None = None, **kwargs: Any) -> int:
        version = self.client.register_prompt(name=name, template=template, **kwargs)
        if alias:
            self.client.set_prompt_alias(name, alias, version.version)
        return int(version.version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_prompt_alias(name, alias, version)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The session's MLflow registry (sqlite); promptops is not configured to use it: see `local_registry`."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return Registry(f"sqlite:///{path}")


@pytest.fixture
def local_registry(registry: Registry) -> Registry:
    """The session registry, with promptops configured to read it."""
    promptops.configure(tracking_uri=registry.uri)
    return registry


@pytest.fixture
def prompt_name() -> str:
    """A prompt name no other test uses."""
    return f"p-{uuid.uuid4().hex[:10]}"
