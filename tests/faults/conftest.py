"""The fault-injection suite (issue 10): captures under a CPU-busy process, stalled and reset connections,
signals, forks, kill -9, a full or read-only disk. Each test reproduces a way records used to be lost.

Run alone with `pytest -m faults`; `make test` runs it with everything else.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: the fault-injection suite (tests/faults)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)
