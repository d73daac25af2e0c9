"""Where a replay's calls and scoring run: in this process, or on a Ray cluster (issue 15).

The runner hands an executor the calls to make (`execute`) and the blocks of records to score (`submit`). The
local one runs the calls in this process (threads, or asyncio for async targets) and scores each block at once.
`executor="ray"` (`--executor ray`) runs both on a Ray cluster (`promptops.replay._ray`, imported only then).
Either way the driver keeps the call store, the progress bar, the statistics and the outputs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._runner import Call, Job, RunOutcome, execute

if TYPE_CHECKING:
    from .._prices import PriceTable
    from ..prompts import Prompt
    from ._cost import Budget
    from ._flow import Flow
    from ._retry import RetryPolicy
    from ._settings import ReplaySettings
    from ._target import Target

__all__ = ["Executor", "open_executor"]

T = TypeVar("T")
A = TypeVar("A")


class Executor(Protocol):
    """Runs a replay's calls and scores its blocks of records; both in this process for the local one.

    Attributes:
        parallelism: How many scoring blocks may be out at once (the blocks are held in memory meanwhile).
    """

    parallelism: int

    def execute(
        self,
        target: Target,
        inputs: Sequence[dict[str, Any]],
        jobs: Iterable[Job],
        *,
        count: int,
        flow: Flow,
        policy: RetryPolicy,
        budget: Budget,
        prices: PriceTable,
        on_call: Callable[[Job, Call], None],
    ) -> RunOutcome:
        """Make the calls; see `promptops.replay._runner.execute` for the arguments (`count`: how many jobs)."""
        ...

    def submit(self, function: Callable[[A], T], argument: A) -> concurrent.futures.Future[T]:
        """`function(argument)` where the executor runs work (a block's scoring): its future."""
        ...


class _Local:
    """The `local` executor: threads or asyncio in this process, each block scored as it is submitted."""

    parallelism = 1
    execute = staticmethod(execute)

    @staticmethod
    def submit(function: Callable[[A], T], argument: A) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            future.set_result(function(argument))
        except Exception as exc:  # raised by `result()`, as from any other executor
            future.set_exception(exc)
        return future


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
