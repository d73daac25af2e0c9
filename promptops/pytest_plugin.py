"""pytest plugin, registered by installing promptops: fixtures for testing code that uses promptops.

* `promptops_spans`: the spans promptops records during the test.
* `promptops_replay`: a regression check in one line, `promptops_replay("myapp.llm:summarize", candidate=5)`,
  failing the test with the verdict, each gate's detail and each metric's delta when a gate does not hold.

Both keep the test out of production data (issue 12): calls are captured into a store under the test's
`tmp_path`, and nothing is exported to MLflow (`promptops.testing.isolated`). A `configure()` in the test wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .replay import ReplayResult, ReplaySettings
    from .testing import SpanCapture

__all__ = ["promptops_replay", "promptops_spans"]


@pytest.fixture
def promptops_spans(tmp_path: Path) -> Iterator[SpanCapture]:
    """The spans promptops records during the test, through an in-memory exporter (see `promptops.testing`).

    Captures go to a store under `tmp_path`, spans nowhere else.
    """
    from .testing import capture_spans, isolated

    with isolated(tmp_path / "promptops"), capture_spans() as spans:
        yield spans


@pytest.fixture
def promptops_replay(tmp_path: Path) -> Iterator[Callable[..., ReplayResult]]:
    """Run `promptops.replay.run(target, **options)` and fail the test unless every gate passed.

    ```{.python test="skip" reason="a test in the application's suite: needs its module and dataset"}
    def test_summarize_v5_is_safe(promptops_replay):
        promptops_replay("myapp.llm:summarize", candidate=5, dataset="summarize-nov",
                         gates=["rougeL noninferior 0.03", "latency.p95_ratio <= 1.3"])
    ```

    Options are those of `run()`: a `ReplaySettings` and/or its fields as keywords. `log_to_mlflow` defaults to
    `False` here unless a `ReplaySettings` is given (pass `True` to keep the run and its traces). Returns the
    `ReplayResult` when it passed, for further assertions.
    """
    from . import _config  # pyright: ignore[reportPrivateUsage]
    from .testing import isolated

    exporter = _config.get_settings().trace_exporter  # what "asked for" restores

    def check(target: str, settings: ReplaySettings | None = None, /, **options: Any) -> ReplayResult:
        from .replay import run

        if settings is None:
            options.setdefault("log_to_mlflow", False)
        logged = options.get("log_to_mlflow", settings.log_to_mlflow if settings is not None else False)
        if logged:  # asked for: the run and its traces go to MLflow as configured outside the fixture
            with _config.overridden(trace_exporter=exporter):
                result = run(target, settings, **options)
        else:
            result = run(target, settings, **options)
        if not result.passed:
            pytest.fail(result.summary(), pytrace=False)
        return result

    with isolated(tmp_path / "promptops"):
        yield check
