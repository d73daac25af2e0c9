"""pytest plugin, registered by installing promptops: fixtures for testing code that uses promptops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import SpanCapture

__all__ = ["promptops_spans"]


@pytest.fixture
def promptops_spans() -> Iterator[SpanCapture]:
    """The spans promptops records during the test, through an in-memory exporter (see `promptops.testing`)."""
    from .testing import capture_spans

    with capture_spans() as spans:
        yield spans
