"""pytest plugin, registered by installing promptops: fixtures for testing code that uses promptops.

* `promptops_spans`: the spans promptops records during the test.
* `promptops_replay`: a regression check in one line, `promptops_replay("myapp.llm:summarize", candidate=5)`,
  failing the test with the verdict, each gate's detail and each metric's delta when a gate does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .replay import ReplayResult, ReplaySettings
    from .testing import SpanCapture

__all__ = ["promptops_replay", "promptops_spans"]


@pytest.fixture
def promptops_spans() -> Iterator[SpanCapture]:
    """The spans promptops records during the test, through an in-memory exporter (see `promptops.testing`)."""
    from .testing import capture_spans

    with capture_spans() as spans:
        yield spans


@pytest.fixture
def promptops_replay() -> Callable[..., ReplayResult]:
    """Run `promptops.replay.run(target, **options)` and fail the test unless every gate passed.

    ```{.python test="skip"}
    def test_summarize_v5_is_safe(promptops_replay):
        promptops_replay("myapp.llm:summarize", candidate=5, dataset="summarize-nov",
                         gates=["rougeL noninferior 0.03", "latency.p95_ratio <= 1.3"])
    ```

    Options are those of `run()`: a `ReplaySettings` and/or its fields as keywords. `log_to_mlflow` defaults to
    `False` here unless a `ReplaySettings` is given (pass `True` to keep the run). Returns the `ReplayResult`
    when it passed, for further assertions.
    """

    def check(target: str, settings: ReplaySettings | None = None, /, **options: Any) -> ReplayResult:
        from .replay import run

        if settings is None:
            options.setdefault("log_to_mlflow", False)
        result = run(target, settings, **options)
        if not result.passed:
            pytest.fail(result.summary(), pytrace=False)
        return result

    return check
