"""Fixtures shared by the unit tests of one area (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

import promptops
from tests.conftest import Registry


@pytest.fixture
def rollout_prompt(local_registry: Registry, prompt_name: str) -> str:
    """A prompt with version 1 @production and a version 2 to roll out; promptops reads it, exports no spans.

    (The rollout cache needs no reset of its own: `reset_promptops()` resets the settings, which drops it.)
    """
    local_registry.register(prompt_name, "v1 {{text}}", alias="production")
    local_registry.register(prompt_name, "v2 {{text}}")
    promptops.configure(tracking_uri=local_registry.uri, trace_exporter="none")
    return prompt_name
