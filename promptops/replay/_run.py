"""`promptops.replay.run()`: check everything, run the calls, score them, summarise, gate, write the outputs.

Everything a user can get wrong (target, versions, dataset, scorers, gates) is checked before the first call,
so a typo costs nothing and exits with one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import Selector, get_settings, parse_selector
from .._errors import ConfigError, PromptopsError
from .._prices import PriceTable
from ..prompts import Prompt, resolver, selector_for
from ._calls import CallKeys, open_call_store
from ._cost import Budget
from ._executor import Executor, open_executor
from ._flow import Flow
from ._records import Inputs, Records, Source, collect
from ._result import CandidateResult, GateResult, MetricSummary, RecordResult, ReplayResult, VersionInfo
from ._retry import RetryPolicy
from ._runner import Call, Job, RunOutcome, call_attributes
from ._scoring import ALWAYS, EXPECTED_SUFFIX, Scoring
from ._settings import ReplaySettings
from ._tally import Tally
from ._target import ReplayError, Target, load_target

if TYPE_CHECKING:
    from ..datasets import Dataset
    from ..scorers import Scorer
    from ._calls import CallStore
    from ._gates import Gate
    from ._mlflow import ReplayRun

__all__ = ["DEFAULT_SCORERS", "run"]

DEFAULT_SCORERS = ("rougeL", "bleu")
# Measured when the calls report their usage (issue 13); lower is better. Gates may name them before the run.
_USAGE = ("tokens", "cost")
_DEFAULT_LIMIT = 500


def _selector(value: int | str, what: str) -> Selector:
    try:
        return parse_selector(value, what=what)
    except ConfigError as exc:
        raise ReplayError(str(exc)) from None


def _template_text(prompt: Prompt) -> str:
    import json

    template = prompt.template
    return template if isinstance(template, str) else json.dumps(template, indent=2, ensure_ascii=False)


def _resolve(target: Target, selector: Selector, what: str) -> Prompt:
    """The registry version a selector names now (a missing one is a usage error, before anything runs)."""
    try:
        return resolver().resolve(target.prompt_name, selector)
    except PromptopsError as exc:
        raise ReplayError(f"{what}: {exc}") from None


def _load_dataset(
    target: Target,
    dataset: str | Dataset | None,
    *,
    store: Any,
    since: datetime.datetime | str | None,
    until: datetime.datetime | str | None,
    limit: int | None,
) -> Source:
    """The dataset to replay: a file is read a record at a time; a `Dataset` given is read in place (issue 15)."""
    from .. import datasets

    if dataset is not None and not isinstance(dataset, str):
        return Source(dataset.name, dataset.records, dataset.fingerprint, spool=False)
    if dataset is not None:
        if dataset.endswith((".jsonl", ".parquet")) or os.sep in dataset:
            if not Path(dataset).is_file():
                raise ReplayError(f"no dataset file {dataset}; give an existing .jsonl or .parquet file, or a name")
            from ..datasets._files import FileRecords

            file = FileRecords(dataset)
            return Source(file.name, file, None, spool=True)
        loaded = datasets.load(dataset, store=store)
        return Source(loaded.name, loaded.records, loaded.fingerprint, spool=True)
    moments = [_moment(value, option) for value, option in ((since, "since"), (until, "until"))]
    found = datasets.from_captures(
        store=store, function=target.function_id, since=moments[0], until=moments[1], limit=limit or _DEFAULT_LIMIT
    )
    if not found.records:
        window = f" since {since}" if since is not None else ""
        raise ReplayError(
            f"no captured calls of {target.function_id}{window}; run the app with capture on, widen --since, or pass "
            "--dataset NAME"
        )
    return Source(found.name, found.records, found.fingerprint, spool=True)


def _moment(value: datetime.datetime | str | None, option: str) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    from .._moments import parse_moment

    return parse_moment(value, option=f"--{option}")


class _Plan:
    """Which calls to make per record, and what the baseline side is.

    A record's jobs are made when asked for (`jobs_of`), from its captured prompt version: no list of every job
    is held (issue 15). Every record has the same number of jobs (`per_record`).
    """

    def __init__(
        self,
        target: Target,
        records: Records,
        candidates: Sequence[Prompt],
        baseline: str | int,
        repeats: int,
    ) -> None:
        self.records = records
        self.candidates = list(candidates)
        self._arms = [(arm, prompt.version) for arm, prompt in enumerate(self.candidates)]
        self.repeats = repeats
        self.captured = baseline == "captured"
        self.baseline_prompts: dict[int, Prompt] = {}
        self._production: int | None = None  # stands in for a record captured on a fallback template
        self._reference: int | None = None  # the baseline version run for every record (not `captured`)
        if self.captured:
            versions = records.versions
            if repeats:
                for version in dict.fromkeys(versions):  # in the order they first appear, as the records are run
                    if version > 0:
                        self.baseline_prompts[version] = _resolve(
                            target,
                            ("version", version),
                            f"re-running the captured version {version} for the noise floor (or pass --repeats 0)",
                        )
                    elif self._production is None:
                        production = _production(target)
                        self.baseline_prompts[production.version] = production
                        self._production = production.version
            single = len(self.baseline_prompts) == 1
            self.baseline_info = VersionInfo(
                label="captured",
                version=next(iter(self.baseline_prompts)) if single else None,
                template=_template_text(next(iter(self.baseline_prompts.values()))) if single else None,
                versions=sorted({version for version in versions if version >= 0}),
            )
        else:
            if baseline == "production":
                prompt = _production(target)
            else:
                prompt = _resolve(target, _selector(baseline, "--baseline"), f"--baseline {baseline}")
            self.baseline_prompts[prompt.version] = prompt
            self._reference = prompt.version
            self.baseline_info = VersionInfo(
                label=str(baseline), version=prompt.version, template=_template_text(prompt), versions=[prompt.version]
            )
        self.per_record = len(self.jobs_of(0)) if len(records) else 0

    def jobs_of(self, index: int) -> list[Job]:
        """Record `index`'s jobs: the candidates', then the reference run (not `captured`), then the re-runs."""
        jobs = [Job(index, "candidate", version, arm) for arm, version in self._arms]
        if self._reference is not None:
            jobs.append(Job(index, "reference", self._reference))
            version = self._reference
        elif not self.repeats:
            return jobs
        else:
            captured = self.records.version(index)
            version = captured if captured is not None and captured > 0 else self._production
            assert version is not None
        jobs.extend(Job(index, "noise", version, repeat=repeat) for repeat in range(self.repeats))
        return jobs

    @property
    def count(self) -> int:
        """How many jobs the plan has."""
        return self.per_record * len(self.records)

    @property
    def prompts(self) -> dict[int, Prompt]:
        """Every prompt version a job runs, by version."""
        return {**self.baseline_prompts, **{prompt.version: prompt for prompt in self.candidates}}


def _production(target: Target) -> Prompt:
    selector = selector_for(target.prompt_name, target.selector, get_settings())
    label = f"version {selector[1]}" if selector[0] == "version" else f"alias @{selector[1]}"
    return _resolve(target, selector, f"the production baseline ({label} of {target.prompt_name!r})")


@dataclasses.dataclass(slots=True)
class _Prepared:
    """Everything checked before the first call: the target, the records, the scorers, the gates, the plan."""

    target: Target
    dataset: str
    fingerprint: str
    records: Records
    skipped: dict[str, int]
    scorers: list[Scorer]
    gates: list[Gate]
    has_expected: bool
    plan: _Plan


def run(
    target: str,
    settings: ReplaySettings | None = None,
    /,
    *,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
    **options: Any,
) -> ReplayResult:
    """Replay a dataset through a tracked function on a candidate prompt version and compare with the baseline.

    ```{.python test="skip" reason="needs the application's module and a saved dataset"}
    from promptops import replay

    result = replay.run("myapp.llm:summarize", candidate=5, dataset="summarize-nov", gates=["rougeL.mean >= 0.8"])
    assert result.passed, result.summary()
    ```

    Args:
        target: `module:function` of a function decorated with `@promptops.track`.
        settings: The options as one `ReplaySettings` (shared with the CLI and the pytest fixture).
        progress: Called once with the number of calls to make; returns a function called with 1 per call.
        **options: Options as keywords (`candidate=5`, `dataset=...`, `workers=8`, ...): any field of
            `ReplaySettings`, applied on top of `settings`.

    Returns:
        The result; `result.passed` is the verdict.

    Raises:
        ReplayError: a bad target, version, dataset, scorer or gate (before anything ran).
        TypeError: an option that is not a field of `ReplaySettings`, or no candidate.
    """
    settings = ReplaySettings.of(settings, options)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    prepared = _prepare(target, settings)
    mlflow_run = _start_run(target, settings, prepared)
    try:
        result = _replay(target, settings, prepared, mlflow_run, progress)
    except BaseException:
        if mlflow_run is not None:
            mlflow_run.abandon()
        raise
    result.started_at, result.duration_s = started_at, time.perf_counter() - clock
    _write_outputs(result, settings, mlflow_run)
    return result


def _start_run(target: str, settings: ReplaySettings, prepared: _Prepared) -> ReplayRun | None:
    """The MLflow run, before the first call so the calls' traces name it (issue 12); `None` without logging."""
    if not settings.log_to_mlflow:
        return None
    from ._mlflow import ReplayRun, replay_experiment

    return ReplayRun.start(
        target=target,
        prompt_name=prepared.target.prompt_name,
        candidates=[str(candidate) for candidate in settings.candidates],
        baseline=prepared.plan.baseline_info.label,
        experiment_name=replay_experiment(settings.experiment),
    )


def _replay(
    target: str,
    settings: ReplaySettings,
    prepared: _Prepared,
    mlflow_run: ReplayRun | None,
    progress: Callable[[int, int], Callable[[int], None]] | None,
) -> ReplayResult:
    """Make the calls (their spans go to the run's experiment, or nowhere without a run), score, judge."""
    from .. import tracing
    from ._mlflow import RUN_ATTRIBUTE

    experiment = mlflow_run.experiment_name if mlflow_run is not None else None
    span_attributes = {RUN_ATTRIBUTE: mlflow_run.run_id} if mlflow_run is not None else None
    flow = Flow(settings.workers, rps=settings.rps)
    prices = PriceTable(get_settings().prices)
    plan = prepared.plan
    with open_executor(settings, prepared.target, plan.prompts, (experiment, span_attributes)) as executor:
        # Each record is scored as soon as its calls are in, and only its scores stay in memory (issue 15).
        scoring = Scoring(
            prepared.records,
            captured=plan.captured,
            arms=len(plan.candidates),
            scorers=prepared.scorers,
            has_expected=prepared.has_expected,
            seed=settings.seed,
            submit=executor.submit,
            in_flight=executor.parallelism,
        )
        tally = Tally(plan.jobs_of, len(prepared.records), scoring.add)
        with tracing.for_replay(experiment, to_mlflow=mlflow_run is not None), call_attributes(span_attributes):
            outcome = _call(prepared, settings, executor, flow, prices, progress, tally)
        tally.close(
            prepared.skipped,
            interrupted=outcome.interrupted,
            not_run=outcome.flow.open,
            over_budget=outcome.budget.stopped is not None,
        )
        arms = scoring.finish()
    return _judge(target, settings, prepared, arms, outcome, tally)


def _call(
    prepared: _Prepared,
    settings: ReplaySettings,
    executor: Executor,
    flow: Flow,
    prices: PriceTable,
    progress: Callable[[int, int], Callable[[int], None]] | None,
    tally: Tally,
) -> RunOutcome:
    """Make the calls not stored by an earlier run (storing each as it finishes); each call goes to `tally`."""
    plan = prepared.plan
    inputs = Inputs(prepared.records)
    with open_call_store(settings.store, prepared.target.function_id) as store:
        keys = CallKeys(prepared.target, plan.prompts, inputs, plan.jobs_of) if store is not None else None
        stored = None
        if store is not None and keys is not None and not settings.fresh:
            stored = store.count(key for record_keys in keys for key in record_keys.values())
        jobs = _Jobs(plan, keys, store if stored else None, prices, tally)
        tick = progress(plan.count - (stored or 0), len(prepared.records)) if progress is not None else None
        advance = _with_status(tick, flow)

        def finished(job: Job, call: Call) -> None:
            key = jobs.keys.pop(job, None)
            if store is not None and key is not None:
                store.put(key, job, call)
            if advance is not None:
                advance(job, call)
            tally.add(job, call)

        outcome = executor.execute(
            prepared.target,
            inputs,
            jobs,
            count=plan.count - (stored or 0),
            flow=flow,
            policy=RetryPolicy(settings.retry_on),
            budget=Budget(settings.max_cost),
            prices=prices,
            on_call=finished,
        )
        jobs.reuse_rest()  # stopped early: the stored calls of the records not reached count all the same
    return outcome


class _Jobs:
    """The calls to make, record by record in dataset order, made as the executor asks for them (issue 15).

    Each record's jobs are made from the plan when the executor reaches it, with their call store keys; the calls
    an earlier run stored are looked up a batch of records at a time and go straight to `tally` (not made again).
    `keys` holds the keys of the jobs handed out and not finished yet.
    """

    _BATCH = 128  # records looked up in the call store at once

    def __init__(
        self, plan: _Plan, keys: CallKeys | None, store: CallStore | None, prices: PriceTable, tally: Tally
    ) -> None:
        self._plan = plan
        self._keys = iter(keys) if keys is not None else None
        self._store = store
        self._prices = prices
        self._tally = tally
        self._next = 0  # the first record not handed out yet
        self.keys: dict[Job, str] = {}

    def __iter__(self) -> Iterator[Job]:
        while self._next < len(self._plan.records):
            yield from self._batch(make=True)

    def _batch(self, *, make: bool) -> list[Job]:
        """The next batch of records' jobs not stored; their stored calls go to `tally`."""
        start, end = self._next, min(self._next + self._BATCH, len(self._plan.records))
        self._next = end
        keyed: dict[Job, str] = {}
        jobs: list[Job] = []
        for index in range(start, end):
            planned = self._plan.jobs_of(index)
            jobs.extend(planned)
            if self._keys is not None:
                keyed.update(next(self._keys))
        reused = self._store.load(keyed, self._prices) if self._store is not None else {}
        for job, call in reused.items():
            self._tally.add(job, call)
        todo = [job for job in jobs if job not in reused]
        if make:
            self.keys.update((job, keyed[job]) for job in todo if job in keyed)
        return todo

    def reuse_rest(self) -> None:
        """The records the run did not reach: their stored calls go to `tally` (a resumed run stopped again)."""
        if self._store is None:
            return
        while self._next < len(self._plan.records):
            self._batch(make=False)


def _prepare(target: str, settings: ReplaySettings) -> _Prepared:
    """Every check that can fail on bad input, in the order a user would fix them; no call is made."""
    from ._gates import check_metrics, parse_gates

    settings.check()
    gate_list = parse_gates(settings.gates) if settings.gates else None
    scorer_list = _scorers(settings.scorers)
    loaded = load_target(target)
    source = _load_dataset(
        loaded, settings.dataset, store=settings.store, since=settings.since, until=settings.until, limit=settings.limit
    )
    records, skipped, read = collect(loaded, source)  # a malformed file is refused here, before the versions
    candidate_prompts = [
        _resolve(loaded, _selector(candidate, "--candidate"), f"--candidate {candidate}")
        for candidate in settings.candidates
    ]
    if not records:
        raise ReplayError(f"nothing to replay: none of the {read} records of {source.name} is replayable")
    has_expected = records.has_expected
    metric_names = _metric_names(scorer_list, has_expected)
    # A hand-written golden set (inputs and expected, no captured output; issue 17): there is nothing captured
    # to compare with, so production is run for the baseline and both sides are judged against `expected`.
    golden = settings.baseline == "captured" and has_expected and not records.has_capture
    if gate_list is None:
        gated = [name for name in metric_names if not golden or name.endswith(EXPECTED_SUFFIX) or name in ALWAYS]
        gate_list = _default_gates(scorer_list, gated)
    check_metrics(gate_list, metric_names)
    plan = _Plan(loaded, records, candidate_prompts, "production" if golden else settings.baseline, settings.repeats)
    _load_models(scorer_list)
    fingerprint = source.read_fingerprint()
    return _Prepared(loaded, source.name, fingerprint, records, skipped, scorer_list, gate_list, has_expected, plan)


def _scorers(names: Sequence[str | Scorer | Callable[..., Any]] | None) -> list[Scorer]:
    """The scorers asked for (default rougeL and bleu), then latency and errors, which every run measures."""
    from .. import scorers as scorers_module

    scorer_list = scorers_module.resolve(list(names) if names else list(DEFAULT_SCORERS))
    present = {scorer.name for scorer in scorer_list}
    scorer_list += [scorers_module.resolve([name])[0] for name in ALWAYS if name not in present]
    return scorer_list


def _metric_names(scorer_list: Sequence[Scorer], has_expected: bool) -> list[str]:
    """Every metric the run reports: one per scorer, plus `<scorer>@expected` when records have `expected`."""
    names = [scorer.name for scorer in scorer_list]
    if has_expected:
        names += [scorer.name + EXPECTED_SUFFIX for scorer in scorer_list if scorer.name not in ALWAYS]
    return names + [name for name in _USAGE if name not in names]


def _default_gates(scorer_list: Sequence[Scorer], metric_names: Sequence[str]) -> list[Gate]:
    from ._gates import default_gates

    directions = {scorer.name: scorer.higher_is_better for scorer in scorer_list}
    return default_gates(
        {name: directions[name.removesuffix(EXPECTED_SUFFIX)] for name in metric_names if name not in _USAGE}
    )


def _load_models(scorer_list: Sequence[Scorer]) -> None:
    """A model that cannot be loaded is bad input: say so before any call is made."""
    from .. import scorers as scorers_module

    for scorer in scorer_list:
        if isinstance(scorer, scorers_module.Semantic):
            scorer.load()


def _with_status(tick: Callable[[int], None] | None, flow: Flow) -> Callable[[Job, Call], None] | None:
    """The progress callback per finished call (a `tick` with `status(...)` hears the flow's counters too)."""
    if tick is None:
        return None
    status = getattr(tick, "status", None)

    def advance(job: Job, call: Call) -> None:
        if callable(status):
            status(retries=flow.retries, concurrency=max(1, int(flow.limit)), rate_limited=flow.rate_limited)
        tick(1)

    return advance


def _could_not_measure(
    settings: ReplaySettings, outcome: RunOutcome, tally: Tally
) -> tuple[str | None, GateResult | None]:
    """Whether too much failed on the provider's side for the comparison to mean anything (issue 13)."""
    calls, infra = tally.calls, tally.infrastructure_errors
    if not infra and not outcome.flow.open:
        return None, None
    rate = infra / calls if calls else 1.0
    expr = f"infrastructure_errors.rate <= {settings.max_infra_errors:g}"
    if outcome.flow.open:
        reason = f"the circuit breaker stopped the run: {outcome.flow.reason}"
    elif rate > settings.max_infra_errors:
        reason = (
            f"{infra:,} of {calls:,} calls ({rate:.1%}) still failed on the provider's side after their retries, "
            f"above the {settings.max_infra_errors:.0%} allowed (max_infra_errors): this is not a regression verdict"
        )
    else:
        detail = f"{infra:,} of {calls:,} calls ({rate:.1%}) were infrastructure errors, left out of the metrics"
        return None, GateResult(expr, True, rate, detail)
    return reason, GateResult(expr, False, rate, f"could not measure: {reason}")


def _judge(
    target: str,
    settings: ReplaySettings,
    prepared: _Prepared,
    arms: Sequence[tuple[Sequence[RecordResult], dict[str, MetricSummary], dict[str, Any]]],
    outcome: RunOutcome,
    tally: Tally,
) -> ReplayResult:
    """Evaluate every candidate's gates in one Holm family, and whether the provider let the run measure; assemble."""
    from ._gates import evaluate_many

    measured = bool(arms[0][0])
    verdicts: list[list[GateResult]] = [[] for _ in arms]
    if measured:
        verdicts = evaluate_many(prepared.gates, [(summaries, samples) for _, summaries, samples in arms])
    could_not_measure, infra_gate = _could_not_measure(settings, outcome, tally)
    interrupted = outcome.interrupted
    complete_run = measured and not interrupted and outcome.budget.stopped is None
    candidates: list[CandidateResult] = []
    for label, prompt, (results, summaries, _), gate_results in zip(
        settings.candidates, prepared.plan.candidates, arms, verdicts
    ):
        if infra_gate is not None:
            gate_results.insert(0, infra_gate)
        candidates.append(
            CandidateResult(
                label=str(label),
                version=prompt.version,
                template=_template_text(prompt),
                passed=complete_run and all(gate.passed for gate in gate_results),
                metrics=summaries,
                gates=gate_results,
                records=results,
            )
        )
    first = candidates[0]
    return ReplayResult(
        target=target,
        prompt_name=prepared.target.prompt_name,
        candidate=VersionInfo(
            label=first.label, version=first.version, template=first.template, versions=[first.version]
        ),
        baseline=prepared.plan.baseline_info,
        dataset=prepared.dataset,
        dataset_fingerprint=prepared.fingerprint,
        scorers=[scorer.name for scorer in prepared.scorers],
        gates=first.gates,
        metrics=first.metrics,
        records=first.records,
        passed=all(candidate.passed for candidate in candidates),
        candidates=candidates,
        best=_best(candidates, prepared),
        calls=tally.calls,
        reused=tally.reused,
        infrastructure_errors=tally.infrastructure_errors,
        retries=outcome.flow.retries,
        rate_limited=outcome.flow.rate_limited,
        lowest_concurrency=outcome.flow.lowest_limit,
        could_not_measure=could_not_measure,
        usage=tally.usage(),
        spent=outcome.budget.spent if tally.priced else None,
        stopped=outcome.budget.stopped,
        skipped=prepared.skipped,
        repeats=settings.repeats,
        workers=settings.workers,
        interrupted=interrupted,
    )


def _best(candidates: Sequence[CandidateResult], prepared: _Prepared) -> str | None:
    """The passing candidate with the best mean on the first scorer (against `expected` when records have it)."""
    first = prepared.scorers[0]
    name = first.name + EXPECTED_SUFFIX if prepared.has_expected and first.name not in ALWAYS else first.name
    ranked: list[tuple[float, int, str]] = []
    for position, candidate in enumerate(candidates):
        summary = candidate.metrics.get(name)
        if candidate.passed and summary is not None and summary.candidate is not None:
            ranked.append(
                (summary.candidate if first.higher_is_better else -summary.candidate, -position, candidate.label)
            )
    return max(ranked)[2] if ranked else None


def _write_outputs(result: ReplayResult, settings: ReplaySettings, mlflow_run: ReplayRun | None) -> None:
    """The report, rendered once, after the run exists (it names the run), logged to it; the JSON and JUnit files.

    Each is written as it is rendered, a record at a time, and each record redacted as it is written: neither a
    redacted copy of the records nor a whole document is held in memory (issue 15).
    """
    from ._json import write_result
    from ._report import iter_html
    from ._result import open_output, redaction

    shown = redaction()
    with contextlib.ExitStack() as stack:
        report = Path(settings.report) if settings.report is not None else None
        if mlflow_run is not None:
            result.mlflow_run_id = mlflow_run.run_id
            if report is None:  # logged to the run only: written to a temporary file first
                from ._mlflow import REPORT_ARTIFACT

                directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="promptops-report-"))
                report = Path(directory) / REPORT_ARTIFACT
        if report is not None:
            trace_url = mlflow_run.trace_url(result) if mlflow_run is not None else None
            with open_output(report) as out:
                out.writelines(iter_html(result, shown=shown, trace_url=trace_url))
        if mlflow_run is not None:
            mlflow_run.finish(result, report)
    if settings.json_path is not None:
        with open_output(settings.json_path) as out:
            write_result(result, out, shown=shown)
    if settings.junit is not None:
        result.to_junit(settings.junit)
