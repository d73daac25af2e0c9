"""Where a replay's calls and scoring run: in this process, or on a Ray cluster (issue 15).

The runner hands an executor the calls to make (`execute`) and each scorer's batch (`score`). The local one runs
the calls in this process (threads, or asyncio for async targets) and scores in one batch. `executor="ray"`
(`--executor ray`) runs both on a Ray cluster (`promptops.replay._ray`, imported only then). Either way the
driver keeps the call store, the progress bar, the statistics and the outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._runner import Call, Job, RunOutcome, execute

if TYPE_CHECKING:
    from .._prices import PriceTable
    from ..prompts import Prompt
    from ..scorers import Score, ScoreInput, Scorer
    from ._cost import Budget
    from ._flow import Flow
    from ._retry import RetryPolicy
    from ._settings import ReplaySettings
    from ._target import Target

__all__ = ["Executor", "open_executor"]


class Executor(Protocol):
    """Runs a replay's calls and scores its batches; `_runner.execute` and `Scorer.score` in this process."""

    def execute(
        self,
        target: Target,
        inputs: Sequence[dict[str, Any]],
        jobs: Sequence[Job],
        *,
        flow: Flow,
        policy: RetryPolicy,
        budget: Budget,
        prices: PriceTable,
        on_call: Callable[[Job, Call], None] | None = None,
    ) -> RunOutcome:
        """Make the calls; see `promptops.replay._runner.execute` for the arguments."""
        ...

    def score(self, scorer: Scorer, items: Sequence[ScoreInput]) -> list[Score]:
        """One scorer's scores of a batch of items, in order."""
        ...


class _Local:
    """The `local` executor: threads or asyncio in this process, each scorer's batch scored in one go."""

    execute = staticmethod(execute)

    @staticmethod
    def score(scorer: Scorer, items: Sequence[ScoreInput]) -> list[Score]:
        return scorer.score(items)


@contextlib.contextmanager
def open_executor(
    settings: ReplaySettings,
    target: Target,
    prompts: Mapping[int, Prompt],
    spans: tuple[str | None, Mapping[str, Any] | None] = (None, None),
) -> Generator[Executor]:
    """The executor the settings ask for, for the block (a Ray connection is closed at its end).

    Args:
        settings: `executor` and `ray_address` choose it.
        target: What the calls call (its module is shipped to Ray workers when it comes from this directory).
        prompts: Every prompt version a call runs, by version (Ray workers get them from here, not the registry).
        spans: Where the calls' spans go: the replay run's experiment (`None`: nowhere, for the `mlflow`
            exporter) and the attributes of each call's span (Ray workers route theirs the same way).
    """
    if settings.executor != "ray":
        yield _Local()
        return
    from ._ray import connect

    with connect(settings.ray_address, target, prompts, spans) as executor:
        yield executor
