"""Scoring a replay's records in blocks as they complete, keeping only the numbers the statistics need (issue 15).

The records are scored in blocks of `_BLOCK` consecutive records of the dataset: a record whose calls have all
finished is added (`Scoring.add`), and a block is sent once all its records are in, to one task of the executor
that scores it for every candidate and scorer: on a Ray worker with `--executor ray` (a few blocks in flight per
CPU of the cluster while the calls go on), in this process otherwise. The calls are made roughly in dataset
order, so few records wait for their block; and a block's texts, hence a model's batches, do not depend on the
order the calls finished in. When a block's scores are back, each record's result (inputs, outputs, scores) is
written to a `Spool` and dropped; what stays in memory per record is, per metric, its position and two numbers
(candidate, baseline), and per scorer the corpus statistics summed so far (corpus BLEU,
`Bleu.corpus_statistics`). `finish()` summarises each metric over the records in dataset order, so the result is
the same on either executor.

A scorer's value for an item depends on that item alone (the `Scorer` contract), so scoring in blocks gives the
values one batch would. A scorer with a corpus figure but no `corpus_statistics()` (a user's own) has its
candidate and baseline items kept until the end, as before.
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._result import MetricSummary, RecordResult
from ._runner import Call
from ._spool import Spool, SpooledRecords

if TYPE_CHECKING:
    from ..datasets import DatasetRecord
    from ..scorers import Score, ScoreInput, Scorer

__all__ = ["ALWAYS", "EXPECTED_SUFFIX", "Scoring", "score_block"]

# Measured on every run whatever the scorers: the call's own latency and whether it raised.
ALWAYS: Final = ("latency", "errors")
# Scored against the record's `expected` as well, when it has one (not latency and errors: properties of a call).
EXPECTED_SUFFIX: Final = "@expected"
_BLOCK: Final = 256  # records per scoring task
FloatArray = NDArray[np.float64]
# One scorer's work in a block: the scorer, its items, and the items of each side for its corpus figure.
Work = tuple["Scorer", list["ScoreInput"], tuple[list[int], list[int]]]
Submit = Callable[[Callable[[list[Work]], Any], list[Work]], "concurrent.futures.Future[Any]"]


def score_block(work: list[Work]) -> list[tuple[list[Score], tuple[Any, Any]]]:
    """A task: each scorer's scores of its items, and its corpus statistics of the candidate and baseline items.

    Runs on a Ray worker with `--executor ray`. The statistics are `None` for a scorer without
    `corpus_statistics()` (see the module documentation).
    """
    scored: list[tuple[list[Score], tuple[Any, Any]]] = []
    for scorer, items, (candidates, baselines) in work:
        scores = scorer.score(items) if items else []
        summed: Callable[[list[ScoreInput]], Any] | None = getattr(scorer, "corpus_statistics", None)
        sides = tuple(
            summed([items[i] for i in group]) if summed is not None and group else None
            for group in (candidates, baselines)
        )
        scored.append((scores, (sides[0], sides[1])))
    return scored


class _Sides(NamedTuple):
    """One finished record's calls: the candidate's, the reference (captured or first baseline run), re-runs."""

    record: DatasetRecord
    candidate: Call
    reference: Call
    noise: list[Call]


@dataclasses.dataclass(frozen=True, slots=True)
class _Slots:
    """Where one record's score items sit in a scorer's batch (issue 16: named, not `start + 2 + count`).

    Attributes:
        candidate: The candidate's output against the reference.
        baseline: The baseline runs against the reference (the re-runs; else the reference against itself).
        candidate_expected: The candidate's output against `expected`, when scored.
        baseline_expected: The reference output against `expected`, when scored.
    """

    candidate: int
    baseline: range
    candidate_expected: int | None = None
    baseline_expected: int | None = None


class _Numbers:
    """One metric of one candidate: per record, its position in the dataset and both sides' values (NaN: none)."""

    __slots__ = ("baseline", "candidate", "positions")

    def __init__(self) -> None:
        self.positions = array.array("q")
        self.candidate = array.array("d")
        self.baseline = array.array("d")

    def add(self, position: int, candidate: float | None, baseline: float | None) -> None:
        self.positions.append(position)
        self.candidate.append(math.nan if candidate is None else candidate)
        self.baseline.append(math.nan if baseline is None else baseline)

    def extend(self, other: _Numbers) -> None:
        self.positions.extend(other.positions)
        self.candidate.extend(other.candidate)
        self.baseline.extend(other.baseline)

    def ordered(self) -> tuple[FloatArray, FloatArray]:
        """Baseline and candidate values in dataset order (NaN is to the statistics what `None` is)."""
        order = np.argsort(np.array(self.positions, dtype=np.int64), kind="stable")
        return np.array(self.baseline, dtype=np.float64)[order], np.array(self.candidate, dtype=np.float64)[order]


class _Taken(NamedTuple):
    """What one candidate keeps of a block: its numbers, re-run spreads, corpus statistics; its records' handles."""

    numbers: dict[str, _Numbers]
    spreads: dict[str, list[float]]
    corpus: dict[str, tuple[Any, Any]]
    handles: list[int]


class _Arm:
    """What one candidate's statistics and records need, accumulated block by block."""

    def __init__(self, scorers: Sequence[Scorer]) -> None:
        self.values: dict[str, _Numbers] = collections.defaultdict(_Numbers)
        self.spreads: dict[str, array.array[float]] = {scorer.name: array.array("d") for scorer in scorers}
        self.corpus: dict[str, list[Any]] = {scorer.name: [None, None] for scorer in scorers}
        self.positions = array.array("q")
        self.handles = array.array("q")


@dataclasses.dataclass(slots=True)
class _Block:
    """Records sent to be scored: each record's position and result per candidate, and each scorer's slots."""

    positions: list[int]
    results: list[list[RecordResult]]  # by candidate, then record
    slots: list[list[_Slots]]  # by (candidate, scorer), then record
    future: concurrent.futures.Future[Any]


class Scoring:
    """Scores a replay's complete records in blocks and summarises every metric at the end.

    Args:
        records: The dataset's records, by position.
        captured: The reference is the captured output (else the baseline's first run).
        arms: How many candidates.
        scorers: The scorers, in the order the metrics are reported.
        has_expected: Records have an `expected` output: each similarity scorer also scores against it.
        seed: Seed of the statistics' bootstrap.
        submit: Runs `score_block` on a block's work: the executor's `submit`.
        in_flight: Blocks sent and not yet back before `add()` waits for the oldest.
    """

    def __init__(
        self,
        records: Sequence[DatasetRecord],
        *,
        captured: bool,
        arms: int,
        scorers: Sequence[Scorer],
        has_expected: bool,
        seed: int,
        submit: Submit,
        in_flight: int = 1,
    ) -> None:
        """Score `records` as they complete; see the class documentation."""
        self._records = records
        self._captured = captured
        self._scorers = list(scorers)
        self._has_expected = has_expected
        self._seed = seed
        self._submit = submit
        self._in_flight = max(1, in_flight)
        self._arms = [_Arm(scorers) for _ in range(arms)]
        self._spool = Spool()
        self._waiting: dict[int, list[tuple[int, list[_Sides]]]] = {}  # block number -> its records in so far
        self._handed: collections.Counter[int] = collections.Counter()  # block number -> records handed in
        self._sent: collections.deque[_Block] = collections.deque()
        self._error: BaseException | None = None
        # Items of scorers whose corpus figure needs them all: (candidate, scorer) -> candidate's and baseline's.
        self._corpus_items: dict[tuple[int, str], tuple[list[ScoreInput], list[ScoreInput]]] = {}

    def add(self, position: int, calls: dict[str, list[Call]] | None) -> None:
        """A complete record, its calls by role (`None`: not to be scored, an infrastructure error).

        Scored with its block, records `[k * _BLOCK, (k + 1) * _BLOCK)` of the dataset, once every record of the
        block is in: a block's texts, hence a model's batches, are the same whatever order the calls finished
        in. A scorer's error is raised by `finish()`.
        """
        if self._error is not None:  # scoring failed: finish() says why; the calls go on meanwhile
            return
        number = position // _BLOCK
        block = self._waiting.setdefault(number, [])
        if calls is not None:
            record = self._records[position]
            sides = [
                _Sides(
                    record,
                    calls["candidate"][arm],
                    _captured_call(record) if self._captured else calls["reference"][0],
                    calls.get("noise", []),
                )
                for arm in range(len(self._arms))
            ]
            block.append((position, sides))
        self._handed[number] += 1
        try:
            if self._handed[number] == min(_BLOCK, len(self._records) - number * _BLOCK):
                self._send(number)
            self._receive(wait=False)
        except Exception as exc:  # raised by finish(), after the calls (from here it would stop the executor)
            self._error = exc

    def finish(self) -> list[tuple[SpooledRecords, dict[str, MetricSummary], dict[str, Any]]]:
        """Score what is left, wait for every block; per candidate: its records, summaries and paired samples.

        Raises:
            Exception: What a scorer raised.
        """
        if self._error is not None:
            raise self._error
        for number in sorted(self._waiting):  # blocks with records that never finished (Ctrl-C, a stopped run)
            self._send(number)
        self._receive(wait=True)
        return [self._summarise(arm) for arm in range(len(self._arms))]

    # -- blocks --------------------------------------------------------------------------------------------------

    def _send(self, number: int) -> None:
        """Send block `number` to be scored (its records in dataset order).

        Everything is computed before the last few statements, which only record the block as sent: a Ctrl-C
        while it is scored (locally, here) leaves it to `finish()`, not half sent.
        """
        block = sorted(self._waiting[number], key=lambda entry: entry[0])
        if not block:  # every record of it was an infrastructure error, or never finished
            del self._waiting[number]
            return
        work: list[Work] = []
        layout: list[list[_Slots]] = []
        results: list[list[RecordResult]] = []
        usage: list[dict[str, _Numbers]] = []
        for arm in range(len(self._arms)):
            sides = [record_sides[arm] for _, record_sides in block]
            results.append([_record_result(side, self._captured) for side in sides])
            usage.append(_usage(block, arm))
            for scorer in self._scorers:
                items, slots = _batch(sides, self._expected(scorer))
                work.append((scorer, items, ([slot.candidate for slot in slots], [slot.baseline[0] for slot in slots])))
                layout.append(slots)
        future = self._submit(score_block, work)
        self._sent.append(_Block([position for position, _ in block], results, layout, future))
        del self._waiting[number]
        for arm, numbers in zip(self._arms, usage, strict=True):
            for name, found in numbers.items():
                arm.values[name].extend(found)
        for (arm, scorer), (_, items, (candidates, baselines)) in zip(self._keys(), work, strict=True):
            if _keeps_items(scorer):
                kept = self._corpus_items.setdefault((arm, scorer.name), ([], []))
                kept[0].extend(items[i] for i in candidates)
                kept[1].extend(items[i] for i in baselines)

    def _keys(self) -> list[tuple[int, Scorer]]:
        """(candidate, scorer) in the order of a block's work."""
        return [(arm, scorer) for arm in range(len(self._arms)) for scorer in self._scorers]

    def _receive(self, *, wait: bool) -> None:
        """Take in the blocks whose scores are back (all of them with `wait`; the oldest while too many are out)."""
        while self._sent and (wait or self._sent[0].future.done() or len(self._sent) > self._in_flight):
            block = self._sent[0]
            taken = self._apply(block, block.future.result())
            self._sent.popleft()  # only now, and then only quick appends: a Ctrl-C above leaves it to finish()
            for arm, (numbers, spreads, corpus, handles) in zip(self._arms, taken, strict=True):
                arm.positions.extend(block.positions)
                arm.handles.extend(handles)
                for name, found in numbers.items():
                    arm.values[name].extend(found)
                for name, found in spreads.items():
                    arm.spreads[name].extend(found)
                for name, (candidate, baseline) in corpus.items():
                    sums = arm.corpus[name]
                    sums[0], sums[1] = _summed(sums[0], candidate), _summed(sums[1], baseline)

    def _apply(self, block: _Block, scored: list[tuple[list[Score], tuple[Any, Any]]]) -> list[_Taken]:
        """A block's scores into its records, which go to the spool; per candidate, the numbers to keep."""
        taken: list[_Taken] = []
        work = iter(zip(self._keys(), block.slots, scored, strict=True))
        for results in block.results:
            numbers: dict[str, _Numbers] = {}
            spreads: dict[str, list[float]] = {}
            corpus: dict[str, tuple[Any, Any]] = {}
            for _ in self._scorers:
                (_, scorer), slots, (scores, corpus[scorer.name]) = next(work)
                name = scorer.name
                found = numbers[name] = _Numbers()
                spread = spreads[name] = []
                expected = _Numbers() if self._expected(scorer) else None
                if expected is not None:
                    numbers[name + EXPECTED_SUFFIX] = expected
                for position, result, slot in zip(block.positions, results, slots, strict=True):
                    own = scores[slot.candidate]
                    present = [value for value in (scores[i].value for i in slot.baseline) if value is not None]
                    baseline_value = statistics.fmean(present) if present else None
                    if len(present) > 1:
                        spread.append(statistics.stdev(present))
                    found.add(position, own.value, baseline_value)
                    _set_scores(result, name, own.value, baseline_value)
                    if own.reason:
                        result.reasons[name] = own.reason
                    if expected is not None and slot.candidate_expected is not None:
                        assert slot.baseline_expected is not None
                        cand_exp, base_exp = scores[slot.candidate_expected].value, scores[slot.baseline_expected].value
                        expected.add(position, cand_exp, base_exp)
                        _set_scores(result, name + EXPECTED_SUFFIX, cand_exp, base_exp)
            taken.append(_Taken(numbers, spreads, corpus, [self._spool.write(result) for result in results]))
        return taken

    def _expected(self, scorer: Scorer) -> bool:
        return self._has_expected and scorer.name not in ALWAYS

    # -- the end -------------------------------------------------------------------------------------------------

    def _summarise(self, arm_index: int) -> tuple[SpooledRecords, dict[str, MetricSummary], dict[str, Any]]:
        from . import _stats

        arm = self._arms[arm_index]
        summaries: dict[str, MetricSummary] = {}
        samples: dict[str, Any] = {}
        for scorer in self._scorers:
            spreads = arm.spreads[scorer.name]
            corpus = self._corpus(arm_index, arm, scorer)
            baseline, candidate = arm.values[scorer.name].ordered()
            summaries[scorer.name], samples[scorer.name] = _stats.summarize(
                scorer.name,
                baseline,
                candidate,
                higher_is_better=scorer.higher_is_better,
                noise=statistics.fmean(spreads) if spreads else None,
                corpus_baseline=corpus[1],
                corpus_candidate=corpus[0],
                seed=self._seed,
            )
            if self._expected(scorer):
                name = scorer.name + EXPECTED_SUFFIX
                baseline, candidate = arm.values[name].ordered()
                summaries[name], samples[name] = _stats.summarize(
                    name, baseline, candidate, higher_is_better=scorer.higher_is_better, seed=self._seed
                )
        usage: dict[str, tuple[Any, Any]] = {}
        for name in _USAGE_READERS:
            baseline, candidate = arm.values[name].ordered()
            if np.isnan(baseline).all() and np.isnan(candidate).all():
                continue  # no call reported usage: no such metric
            usage[name] = (baseline, candidate)
            summaries[name], samples[name] = _stats.summarize(
                name, baseline, candidate, higher_is_better=False, seed=self._seed
            )
        order = np.argsort(np.frombuffer(arm.positions, dtype=np.int64), kind="stable")
        handles = array.array("q", np.frombuffer(arm.handles, dtype=np.int64)[order].tobytes())  # 8 bytes a record

        def complete(position: int, result: RecordResult) -> None:
            for name, (baseline, candidate) in usage.items():
                _set_scores(result, name, _number(candidate[position]), _number(baseline[position]))

        return SpooledRecords(self._spool, handles, complete if usage else None), summaries, samples

    def _corpus(self, arm_index: int, arm: _Arm, scorer: Scorer) -> tuple[float | None, float | None]:
        """The candidate's and the baseline's corpus figure (`None` when the scorer has none, or no records)."""
        if _keeps_items(scorer):
            candidate_items, baseline_items = self._corpus_items.get((arm_index, scorer.name), ([], []))
            return (
                scorer.corpus(candidate_items) if candidate_items else None,
                scorer.corpus(baseline_items) if baseline_items else None,
            )
        corpus_of: Callable[[Any], float | None] | None = getattr(scorer, "corpus_of", None)
        if corpus_of is None:
            return None, None
        candidate, baseline = arm.corpus[scorer.name]
        return corpus_of(candidate), corpus_of(baseline)


_USAGE_READERS: Final[dict[str, Callable[[Call], float | None]]] = {
    "tokens": lambda call: None if call.tokens is None else float(call.tokens),
    "cost": lambda call: call.cost,
}


def _keeps_items(scorer: Scorer) -> bool:
    """A corpus figure computed from every item at once: `corpus()` overridden, without `corpus_statistics()`."""
    from ..scorers import Scorer

    return type(scorer).corpus is not Scorer.corpus and not hasattr(scorer, "corpus_statistics")


def _summed(total: Any, more: Any) -> Any:
    """Two sums of corpus statistics added up elementwise (`None`: nothing yet)."""
    if more is None:
        return total
    if total is None:
        return list(more)
    return [a + b for a, b in zip(total, more, strict=True)]


def _usage(block: Sequence[tuple[int, list[_Sides]]], arm: int) -> dict[str, _Numbers]:
    """`tokens` and `cost` of a block's records for candidate `arm`: known from the calls, no scorer needed.

    The candidate's value is its call's; the baseline's the mean of its re-runs (else its reference run; a
    captured output has no usage). They join the records' scores as the records are read back, and only when
    some call reported usage is the metric there at all (`Scoring._summarise`).
    """
    numbers = {name: _Numbers() for name in _USAGE_READERS}
    for position, sides in block:
        side = sides[arm]
        baseline_calls = side.noise or ([] if side.reference.usage is None else [side.reference])
        for name, read in _USAGE_READERS.items():
            present = [value for value in map(read, baseline_calls) if value is not None]
            numbers[name].add(position, read(side.candidate), statistics.fmean(present) if present else None)
    return numbers


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _captured_call(record: DatasetRecord) -> Call:
    latency = record.latency_ms
    return Call(record.output, record.error, float(latency) if latency is not None else math.nan, record.trace_id)


def _record_result(side: _Sides, captured: bool) -> RecordResult:
    record, candidate, reference, noise = side
    return RecordResult(
        id=record.id,
        inputs=record.inputs,
        baseline_output=reference.output,
        candidate_output=candidate.output,
        expected=record.expected,
        error=candidate.error,
        baseline_error=reference.error,
        latency_ms=candidate.latency_ms,
        baseline_latency_ms=statistics.fmean([c.latency_ms for c in noise]) if noise else _finite(reference.latency_ms),
        trace_id=candidate.trace_id,
        baseline_trace_id=record.trace_id if captured else reference.trace_id,
    )


def _batch(sides: Sequence[_Sides], with_expected: bool) -> tuple[list[ScoreInput], list[_Slots]]:
    """One scorer's items for every record, and where each record's items sit."""
    from ..scorers import ScoreInput

    def item(record: DatasetRecord, call: Call, reference: Any) -> ScoreInput:
        latency = call.latency_ms if math.isfinite(call.latency_ms) else None
        return ScoreInput(record.inputs, call.output, reference, record.expected, latency, call.error)

    batch: list[ScoreInput] = []
    slots: list[_Slots] = []
    for record, candidate, reference, noise in sides:
        candidate_at = len(batch)
        batch.append(item(record, candidate, reference.output))
        baseline_calls = noise or [reference]
        batch.extend(item(record, call, reference.output) for call in baseline_calls)
        baseline_at = range(candidate_at + 1, len(batch))
        if with_expected and record.expected is not None:
            batch.append(item(record, candidate, record.expected))
            batch.append(item(record, reference, record.expected))
            slots.append(_Slots(candidate_at, baseline_at, len(batch) - 2, len(batch) - 1))
        else:
            slots.append(_Slots(candidate_at, baseline_at))
    return batch, slots


def _set_scores(result: RecordResult, name: str, candidate: float | None, baseline: float | None) -> None:
    result.scores[name] = candidate
    result.baseline_scores[name] = baseline
    result.deltas[name] = candidate - baseline if candidate is not None and baseline is not None else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
