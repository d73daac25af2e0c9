"""`ReplaySettings`: every option of a replay, in one object the API, the CLI and the pytest fixture share.

`replay.run(target, candidate=5, workers=8)` builds one from its keywords; `promptops replay` builds one from its
flags; `promptops_replay(...)` passes its keywords through. Checks that need nothing but the settings themselves
(a negative count, an unknown executor) happen here, before the target is even imported (issue 16).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._target import ReplayError

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..scorers import Scorer

__all__ = ["ReplaySettings"]

_EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySettings:
    """The options of one replay (`promptops.replay.run()`, `promptops replay`, the `promptops_replay` fixture).

    ```python
    from promptops.replay import ReplaySettings

    nightly = ReplaySettings(candidate="staging", dataset="summarize-nov", gates=["rougeL noninferior 0.03"])
    assert nightly.replace(workers=16).workers == 16
    ```

    Attributes:
        candidate: The candidate version number or alias (`"staging"`); a list of them compares several.
        baseline: `"captured"` (compare with the outputs stored at capture), `"production"` (re-run what the
            function resolves today without an override), or a version number or alias to re-run.
        dataset: A dataset name (`promptops datasets list`), a `.jsonl`/`.parquet` file, or a `Dataset`.
            Default: the target's captured calls (`since`, `until`, the most recent `limit`, default 500).
        since: With no dataset: only calls captured since then (`24h`, `7d`, an ISO timestamp or a datetime).
        until: With no dataset: only calls captured before then.
        limit: With no dataset: at most this many of the most recent calls.
        scorers: Scorer names (`rougeL`, `bleu`, `semantic`, `exact_match`, `length_ratio`, a `@scorer`'s name or
            `module:function`), `Scorer` objects or functions. Default: rougeL and bleu. Latency and errors are
            always measured.
        gates: Gate expressions (`semantic.mean >= 0.85`, `rougeL noninferior 0.03`). Default: non-inferiority
            of every similarity scorer and no rise in errors (see `promptops.replay.default_gates`).
        repeats: How many times the baseline is re-run per record to measure its own run-to-run variation
            (the noise floor). 0: no re-runs; a similarity metric's baseline is then a perfect match.
        workers: Calls in flight at once (the ceiling: concurrency backs off when a provider limits the rate).
        rps: At most this many calls started per second (`None`: no cap).
        retry_on: Also retry a call whose exception this predicate accepts, on top of the providers' transient
            errors promptops recognises (rate limits, timeouts, 5xx, connection errors).
        max_infra_errors: The run "could not measure" (fails, exit 1) when more than this fraction of calls are
            infrastructure errors: still failing on the provider's side after their retries.
        max_cost: Stop before the estimated cost of the calls this run makes (in USD, by the price table) would
            exceed this, keeping what finished; the calls must report their usage.
        fresh: Make every call again, ignoring call outputs stored by an earlier run of the same replay.
        executor: Where calls and scoring run: `"local"` (threads, or asyncio for async targets, in this
            process) or `"ray"` (tasks on a Ray cluster; `pip install 'mlflow-promptops[ray]'`).
        ray_address: With the Ray executor: the cluster to join (`host:port` of its head, `ray://host:10001`,
            or `auto`); default `RAY_ADDRESS`, else a Ray instance started on this machine for the run.
        store: The capture store (URL or `CaptureStore`) holding datasets and captures; default the `capture`
            setting.
        report: Write the HTML report here.
        json_path: Write the JSON result here.
        junit: Write JUnit XML here.
        log_to_mlflow: Log a run (params, metrics, per-record table, report) and the calls' traces to the MLflow
            tracking store. `False`: nothing of the replay goes to MLflow, its traces neither.
        experiment: The MLflow experiment of the run and its traces; default `<experiment_name>-replay`
            (`promptops-replay` without an `experiment_name`): never the application's traces' experiment.
        seed: Seed of the bootstrap resampling.
    """

    candidate: int | str | Sequence[int | str]
    baseline: int | str = "captured"
    dataset: str | Dataset | None = None
    since: datetime.datetime | str | None = None
    until: datetime.datetime | str | None = None
    limit: int | None = None
    scorers: Sequence[str | Scorer | Callable[..., Any]] | None = None
    gates: Sequence[str] | None = None
    repeats: int = 1
    workers: int = 8
    rps: float | None = None
    retry_on: Callable[[BaseException], bool] | None = None
    max_infra_errors: float = 0.02
    max_cost: float | None = None
    fresh: bool = False
    executor: str = "local"
    ray_address: str | None = None
    store: Any = None
    report: str | os.PathLike[str] | None = None
    json_path: str | os.PathLike[str] | None = None
    junit: str | os.PathLike[str] | None = None
    log_to_mlflow: bool = True
    experiment: str | None = None
    seed: int = 0

    @classmethod
    def of(cls, settings: ReplaySettings | None, options: Mapping[str, Any]) -> ReplaySettings:
        """`settings` with `options` (keywords of `replay.run()`) applied on top.

        Raises:
            TypeError: an option that is not a field, or no candidate at all.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown replay option {unknown[0]!r}; the options are: {', '.join(sorted(known))}")
        if settings is None:
            if "candidate" not in options:
                raise TypeError("replay needs a candidate: run(target, candidate=5) or a ReplaySettings")
            return cls(**options)
        return dataclasses.replace(settings, **options)

    def replace(self, **changes: Any) -> ReplaySettings:
        """A copy with some options changed."""
        return dataclasses.replace(self, **changes)

    @property
    def candidates(self) -> tuple[int | str, ...]:
        """The candidate versions or aliases, in the order given."""
        if isinstance(self.candidate, int | str):
            return (self.candidate,)
        return tuple(self.candidate)

    def check(self) -> None:
        """Refuse settings that are wrong whatever the target and data (before anything is loaded).

        Raises:
            ReplayError: naming the option and what to give instead.
        """
        if not self.candidates:
            raise ReplayError("no candidate: give at least one version number or alias")
        if self.repeats < 0:
            raise ReplayError(f"repeats must be 0 or more, got {self.repeats}")
        if self.workers < 1:
            raise ReplayError(f"workers must be at least 1, got {self.workers}")
        if self.executor not in _EXECUTORS:
            raise ReplayError(f"unknown executor {self.executor!r}; use one of: {', '.join(_EXECUTORS)}")
        if self.ray_address is not None and self.executor != "ray":
            raise ReplayError("ray_address (--ray-address) joins a Ray cluster: add executor='ray' (--executor ray)")
        if self.executor == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise ReplayError(
                    "the ray executor needs Ray: pip install 'mlflow-promptops[ray]' (or use the local executor)"
                )
        if self.rps is not None and not self.rps > 0:
            raise ReplayError(f"rps must be above 0, got {self.rps}")
        if not 0.0 <= self.max_infra_errors <= 1.0:
            raise ReplayError(f"max_infra_errors is a fraction between 0 and 1, got {self.max_infra_errors}")
        if self.max_cost is not None and not self.max_cost > 0:
            raise ReplayError(f"max_cost is a budget in USD above 0, got {self.max_cost}")
