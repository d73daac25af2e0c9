"""The driver's account of a replay's finished calls: the result's figures, and each record handed on when complete.

Calls arrive one at a time, in whatever order they finish (`on_call` of the executor, and the calls reused from an
earlier run). A record's calls wait here until every one of its jobs has a call; then the record goes to scoring
(`on_record`) and its calls, outputs included, are dropped (issue 15: the run's outputs were held until the end).
What the result reports about the calls (how many, reused, infrastructure errors, tokens and cost per side) is
counted as they pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._usage import UsageTotals, sum_usage
from ._runner import Call, Job

__all__ = ["Tally"]


class Tally:
    """Collects a replay's calls record by record.

    Equal jobs (a record's baseline re-runs: `Job` has no repeat number) are one job here, as they are one key of
    the call store: the record is complete once each distinct job has a call, and a later equal call is ignored.

    Args:
        jobs_of: A record's jobs in the plan, by its index (computed when needed: no list of every job is held).
        records: How many records the plan has.
        on_record: Called with a complete record's index and its calls by role (in plan order); with `None`
            instead of the calls when one of them is an infrastructure error (the record is only counted).

    Attributes:
        calls: Distinct jobs with a call.
        reused: Of those, calls reused from an earlier run.
        infrastructure_errors: Of those, infrastructure errors.
        priced: Whether any call had a cost.
    """

    def __init__(
        self,
        jobs_of: Callable[[int], Sequence[Job]],
        records: int,
        on_record: Callable[[int, dict[str, list[Call]] | None], None],
    ) -> None:
        """Expect the calls of every record's jobs; see the class documentation."""
        self._jobs_of = jobs_of
        self._on_record = on_record
        self._records = records
        self._handed = bytearray(records)  # 1: complete (scored, or counted as an infrastructure error)
        self._pending: dict[int, dict[Job, Call]] = {}
        self.calls = 0
        self.reused = 0
        self.infrastructure_errors = 0
        self.priced = False
        self._finished = 0
        self._infra_records = 0
        self._usage: dict[str, list[tuple[int, int, str | None, float | None]]] = {"candidate": [], "baseline": []}

    def add(self, job: Job, call: Call) -> None:
        """A finished call; hands its record on when it completes it."""
        index = job.index
        if self._handed[index]:
            return
        calls = self._pending.setdefault(index, {})
        calls[job] = call
        planned = self._jobs_of(index)
        if len(calls) < len(set(planned)):
            return
        del self._pending[index]
        self._handed[index] = 1
        self._finished += 1
        if self._count(calls):
            self._infra_records += 1
            self._on_record(index, None)
            return
        by_role: dict[str, list[Call]] = {}
        for one in planned:
            by_role.setdefault(one.role, []).append(calls[one])
        self._on_record(index, by_role)

    def _count(self, calls: dict[Job, Call]) -> bool:
        """Count a record's calls into the figures; whether one is an infrastructure error."""
        infra = False
        for job, call in calls.items():
            self.calls += 1
            self.reused += call.reused
            self.infrastructure_errors += call.infra
            infra = infra or call.infra
            self.priced = self.priced or call.cost is not None
            if call.usage is not None:
                usage = call.usage
                side = "candidate" if job.role == "candidate" else "baseline"
                self._usage[side].append((usage.input_tokens, usage.output_tokens, usage.model, call.cost))
        return infra

    def close(self, skipped: dict[str, int], *, interrupted: bool, not_run: bool, over_budget: bool) -> None:
        """The calls are all in: count those of unfinished records, and the records not scored by reason.

        Args:
            skipped: Counts by reason, updated (`infrastructure_error`, and `interrupted`, `not_run` or
                `over_budget` for unfinished records).
            interrupted: Ctrl-C stopped the run.
            not_run: The circuit breaker stopped it.
            over_budget: The cost limit stopped it.
        """
        infra_unfinished = sum(self._count(calls) for calls in self._pending.values())
        self._pending.clear()
        if self._infra_records or infra_unfinished:
            skipped["infrastructure_error"] = self._infra_records + infra_unfinished
        unfinished = self._records - self._finished - infra_unfinished
        if interrupted or not_run:
            skipped["interrupted" if interrupted else "not_run"] = unfinished
        elif over_budget and unfinished:
            skipped["over_budget"] = unfinished

    def usage(self) -> dict[str, UsageTotals]:
        """Tokens and cost per side (`candidate`, `baseline`); empty when no call reported usage."""
        found = {side: sum_usage(calls) for side, calls in self._usage.items()}
        return found if any(total.calls for total in found.values()) else {}
