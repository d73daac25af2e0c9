"""`promptops.replay.run()`: check everything, run the calls, score them, summarise, gate, write the outputs.

Everything a user can get wrong (target, versions, dataset, scorers, gates) is checked before the first call,
so a typo costs nothing and exits with one line.
"""

from __future__ import annotations

import datetime
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import Selector, get_settings, parse_selector
from .._errors import ConfigError, PromptopsError
from ..prompts import Prompt, resolver, selector_for
from ._result import MetricSummary, RecordResult, ReplayResult, VersionInfo
from ._runner import Call, Job, execute
from ._target import ReplayError, Target, load_target

if TYPE_CHECKING:
    from ..datasets import Dataset, DatasetRecord
    from ..scorers import Scorer

__all__ = ["DEFAULT_SCORERS", "run"]

DEFAULT_SCORERS = ("rougeL", "bleu")
# Measured on every run whatever the scorers: the call's own latency and whether it raised.
_ALWAYS = ("latency", "errors")
# Scored against the record's `expected` as well, when it has one (not latency and errors: properties of a call).
_EXPECTED_SUFFIX = "@expected"
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
) -> Dataset:
    from .. import datasets

    if dataset is not None and not isinstance(dataset, str):
        return dataset
    if dataset is not None:
        if dataset.endswith((".jsonl", ".parquet")) or os.sep in dataset:
            if not Path(dataset).is_file():
                raise ReplayError(f"no dataset file {dataset}; give an existing .jsonl or .parquet file, or a name")
            return datasets.read_file(dataset)
        return datasets.load(dataset, store=store)
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
    return found


def _moment(value: datetime.datetime | str | None, option: str) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    from .._moments import parse_moment

    return parse_moment(value, option=f"--{option}")


class _Plan:
    """Which calls to make per record, and what the baseline side is."""

    def __init__(
        self,
        target: Target,
        records: Sequence[DatasetRecord],
        candidate: Prompt,
        baseline: str | int,
        repeats: int,
    ) -> None:
        self.records = records
        self.candidate = candidate
        self.repeats = repeats
        self.captured = baseline == "captured"
        self.jobs: list[Job] = []
        self.baseline_prompts: dict[int, Prompt] = {}
        if self.captured:
            production: Prompt | None = None
            for index, record in enumerate(records):
                self.jobs.append(Job(index, "candidate", candidate.version))
                if not repeats:
                    continue
                version = record.prompt_version
                if isinstance(version, int) and version > 0:
                    if version not in self.baseline_prompts:
                        self.baseline_prompts[version] = _resolve(
                            target,
                            ("version", version),
                            f"re-running the captured version {version} for the noise floor (or pass --repeats 0)",
                        )
                else:  # captured on a fallback template: the production version stands in
                    if production is None:
                        production = _production(target)
                        self.baseline_prompts[production.version] = production
                    version = production.version
                self.jobs.extend(Job(index, "noise", version) for _ in range(repeats))
            self.baseline_info = VersionInfo(
                label="captured",
                version=next(iter(self.baseline_prompts)) if len(self.baseline_prompts) == 1 else None,
                template=_template_text(next(iter(self.baseline_prompts.values())))
                if len(self.baseline_prompts) == 1
                else None,
                versions=sorted({r.prompt_version for r in records if isinstance(r.prompt_version, int)}),
            )
        else:
            if baseline == "production":
                prompt = _production(target)
            else:
                prompt = _resolve(target, _selector(baseline, "--baseline"), f"--baseline {baseline}")
            self.baseline_prompts[prompt.version] = prompt
            for index in range(len(records)):
                self.jobs.append(Job(index, "candidate", candidate.version))
                self.jobs.append(Job(index, "reference", prompt.version))
                self.jobs.extend(Job(index, "noise", prompt.version) for _ in range(repeats))
            self.baseline_info = VersionInfo(
                label=str(baseline), version=prompt.version, template=_template_text(prompt), versions=[prompt.version]
            )


def _production(target: Target) -> Prompt:
    selector = selector_for(target.prompt_name, target.selector, get_settings())
    label = f"version {selector[1]}" if selector[0] == "version" else f"alias @{selector[1]}"
    return _resolve(target, selector, f"the production baseline ({label} of {target.prompt_name!r})")


def _captured_call(record: DatasetRecord) -> Call:
    latency = record.latency_ms
    return Call(record.output, record.error, float(latency) if latency is not None else math.nan, record.trace_id)


def run(
    target: str,
    *,
    candidate: int | str,
    baseline: int | str = "captured",
    dataset: str | Dataset | None = None,
    since: datetime.datetime | str | None = None,
    until: datetime.datetime | str | None = None,
    limit: int | None = None,
    scorers: Sequence[str | Scorer | Callable[..., Any]] | None = None,
    gates: Sequence[str] | None = None,
    repeats: int = 1,
    workers: int = 8,
    store: Any = None,
    report: str | os.PathLike[str] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    junit: str | os.PathLike[str] | None = None,
    log_to_mlflow: bool = True,
    seed: int = 0,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
) -> ReplayResult:
    """Replay a dataset through a tracked function on a candidate prompt version and compare with the baseline.

    ```python test="skip"
    from promptops import replay

    result = replay.run("myapp.llm:summarize", candidate=5, dataset="summarize-nov", gates=["rougeL.mean >= 0.8"])
    assert result.passed, result.summary()
    ```

    Args:
        target: `module:function` of a function decorated with `@promptops.track`.
        candidate: The candidate version number, or an alias (`"staging"`).
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
        workers: Calls in flight at once.
        store: The capture store (URL or `CaptureStore`) holding datasets and captures; default the `capture`
            setting.
        report: Write the HTML report here.
        json_path: Write the JSON result here.
        junit: Write JUnit XML here.
        log_to_mlflow: Log a run (params, metrics, per-record table, report) to the MLflow tracking store.
        seed: Seed of the bootstrap resampling.
        progress: Called once with the number of calls to make; returns a function called with 1 per call.

    Returns:
        The result; `result.passed` is the verdict.

    Raises:
        ReplayError: a bad target, version, dataset, scorer or gate (before anything ran).
    """
    from .. import scorers as scorers_module
    from ._gates import check_metrics, default_gates, evaluate, parse_gates

    started_at = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    if repeats < 0:
        raise ReplayError(f"repeats must be 0 or more, got {repeats}")
    if workers < 1:
        raise ReplayError(f"workers must be at least 1, got {workers}")
    gate_list = parse_gates(gates) if gates else None
    scorer_list = scorers_module.resolve(list(scorers) if scorers else list(DEFAULT_SCORERS))
    names = [scorer.name for scorer in scorer_list]
    for name in _ALWAYS:
        if name not in names:
            scorer_list.append(scorers_module.resolve([name])[0])
    loaded = load_target(target)
    data = _load_dataset(loaded, dataset, store=store, since=since, until=until, limit=limit)
    candidate_prompt = _resolve(loaded, _selector(candidate, "--candidate"), f"--candidate {candidate}")

    skipped: dict[str, int] = {}
    records: list[DatasetRecord] = []
    for record in data.records:
        if not record.replayable:
            skipped["non_replayable"] = skipped.get("non_replayable", 0) + 1
            continue
        try:
            loaded.arguments(record.inputs)
        except Exception:
            skipped["inputs_do_not_fit"] = skipped.get("inputs_do_not_fit", 0) + 1
            continue
        records.append(record)
    if not records:
        raise ReplayError(f"nothing to replay: none of the {len(data.records)} records of {data.name} is replayable")

    has_expected = any(record.expected is not None for record in records)
    metric_names = [s.name for s in scorer_list]
    if has_expected:
        metric_names += [s.name + _EXPECTED_SUFFIX for s in scorer_list if s.name not in _ALWAYS]
    if gate_list is None:
        directions = {s.name: s.higher_is_better for s in scorer_list}
        gate_list = default_gates({name: directions[name.removesuffix(_EXPECTED_SUFFIX)] for name in metric_names})
    check_metrics(gate_list, metric_names)

    plan = _Plan(loaded, records, candidate_prompt, baseline, repeats)
    for scorer in scorer_list:  # a model that cannot be loaded is bad input: say so before any call is made
        if isinstance(scorer, scorers_module.Semantic):
            scorer.load()
    tick = progress(len(plan.jobs), len(records)) if progress is not None else None
    outcome = execute(loaded, [record.inputs for record in records], plan.jobs, workers=workers, progress=tick)

    # Only records whose calls all finished (all of them, unless interrupted).
    by_index: dict[int, dict[str, list[Call]]] = {}
    expected_calls: dict[int, int] = {}
    for job in plan.jobs:
        expected_calls[job.index] = expected_calls.get(job.index, 0) + 1
        call = outcome.calls.get(job)
        if call is not None:
            by_index.setdefault(job.index, {}).setdefault(job.role, []).append(call)
    complete = [i for i in range(len(records)) if sum(map(len, by_index.get(i, {}).values())) == expected_calls[i]]
    if outcome.interrupted:
        skipped["interrupted"] = len(records) - len(complete)

    results, summaries, samples = _score(records, complete, by_index, plan.captured, scorer_list, has_expected, seed)
    gate_results = evaluate(gate_list, summaries, samples) if complete else []
    result = ReplayResult(
        target=target,
        prompt_name=loaded.prompt_name,
        candidate=VersionInfo(
            label=str(candidate),
            version=candidate_prompt.version,
            template=_template_text(candidate_prompt),
            versions=[candidate_prompt.version],
        ),
        baseline=plan.baseline_info,
        dataset=data.name,
        dataset_fingerprint=data.fingerprint,
        scorers=[s.name for s in scorer_list],
        gates=gate_results,
        metrics=summaries,
        records=results,
        passed=bool(complete) and not outcome.interrupted and all(g.passed for g in gate_results),
        skipped=skipped,
        repeats=repeats,
        workers=workers,
        interrupted=outcome.interrupted,
        started_at=started_at,
        duration_s=time.perf_counter() - clock,
    )
    _write_outputs(result, report=report, json_path=json_path, junit=junit, log_to_mlflow=log_to_mlflow)
    return result


def _score(
    records: Sequence[DatasetRecord],
    complete: Sequence[int],
    by_index: dict[int, dict[str, list[Call]]],
    captured: bool,
    scorer_list: Sequence[Scorer],
    has_expected: bool,
    seed: int,
) -> tuple[list[RecordResult], dict[str, MetricSummary], dict[str, Any]]:
    """Score every finished record, both sides, one batched `score()` call per scorer; then summarise."""
    from ..scorers import ScoreInput
    from . import _stats

    results: list[RecordResult] = []
    sides: list[tuple[DatasetRecord, Call, Call, list[Call]]] = []
    for index in complete:
        record = records[index]
        calls = by_index[index]
        candidate = calls["candidate"][0]
        reference = _captured_call(record) if captured else calls["reference"][0]
        noise = calls.get("noise", [])
        sides.append((record, candidate, reference, noise))
        results.append(
            RecordResult(
                id=record.id,
                inputs=record.inputs,
                baseline_output=reference.output,
                candidate_output=candidate.output,
                expected=record.expected,
                error=candidate.error,
                baseline_error=reference.error,
                latency_ms=candidate.latency_ms,
                baseline_latency_ms=statistics.fmean([c.latency_ms for c in noise])
                if noise
                else _finite(reference.latency_ms),
                trace_id=candidate.trace_id,
                baseline_trace_id=record.trace_id if captured else reference.trace_id,
            )
        )

    def item(record: DatasetRecord, call: Call, reference: Any) -> Any:
        latency = call.latency_ms if math.isfinite(call.latency_ms) else None
        return ScoreInput(record.inputs, call.output, reference, record.expected, latency, call.error)

    summaries: dict[str, MetricSummary] = {}
    samples: dict[str, Any] = {}
    for scorer in scorer_list:
        batch: list[Any] = []
        layout: list[tuple[int, int, int]] = []  # per record: start, number of baseline items, expected items
        for record, candidate, reference, noise in sides:
            start = len(batch)
            batch.append(item(record, candidate, reference.output))
            baseline_calls = noise or [reference]
            batch.extend(item(record, call, reference.output) for call in baseline_calls)
            extra = 0
            if has_expected and scorer.name not in _ALWAYS and record.expected is not None:
                batch.append(item(record, candidate, record.expected))
                batch.append(item(record, reference, record.expected))
                extra = 2
            layout.append((start, len(baseline_calls), extra))
        scores = scorer.score(batch) if batch else []
        candidate_values: list[float | None] = []
        baseline_values: list[float | None] = []
        spreads: list[float] = []
        expected_pairs: tuple[list[float | None], list[float | None]] = ([], [])
        for result, (start, count, extra) in zip(results, layout):
            own = scores[start]
            runs = [s.value for s in scores[start + 1 : start + 1 + count]]
            present = [v for v in runs if v is not None]
            baseline_value = statistics.fmean(present) if present else None
            if len(present) > 1:
                spreads.append(statistics.stdev(present))
            candidate_values.append(own.value)
            baseline_values.append(baseline_value)
            result.scores[scorer.name] = own.value
            result.baseline_scores[scorer.name] = baseline_value
            result.deltas[scorer.name] = (
                own.value - baseline_value if own.value is not None and baseline_value is not None else None
            )
            if own.reason:
                result.reasons[scorer.name] = own.reason
            if extra:
                name = scorer.name + _EXPECTED_SUFFIX
                cand_exp, base_exp = scores[start + 1 + count].value, scores[start + 2 + count].value
                expected_pairs[0].append(base_exp)
                expected_pairs[1].append(cand_exp)
                result.scores[name] = cand_exp
                result.baseline_scores[name] = base_exp
                result.deltas[name] = cand_exp - base_exp if cand_exp is not None and base_exp is not None else None
        candidate_items = [batch[start] for start, _, _ in layout]
        baseline_items = [batch[start + 1] for start, _, _ in layout]
        summary, sample = _stats.summarize(
            scorer.name,
            baseline_values,
            candidate_values,
            higher_is_better=scorer.higher_is_better,
            noise=statistics.fmean(spreads) if spreads else None,
            corpus_baseline=scorer.corpus(baseline_items) if baseline_items else None,
            corpus_candidate=scorer.corpus(candidate_items) if candidate_items else None,
            seed=seed,
        )
        summaries[scorer.name], samples[scorer.name] = summary, sample
        if has_expected and scorer.name not in _ALWAYS:
            name = scorer.name + _EXPECTED_SUFFIX
            summary, sample = _stats.summarize(
                name, expected_pairs[0], expected_pairs[1], higher_is_better=scorer.higher_is_better, seed=seed
            )
            summaries[name], samples[name] = summary, sample
    return results, summaries, samples


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _write_outputs(
    result: ReplayResult,
    *,
    report: str | os.PathLike[str] | None,
    json_path: str | os.PathLike[str] | None,
    junit: str | os.PathLike[str] | None,
    log_to_mlflow: bool,
) -> None:
    if log_to_mlflow:
        from ._mlflow import log_result
        from ._report import render_html

        result.mlflow_run_id = log_result(result, render_html(result))
    if report is not None:
        result.to_html(report)  # rendered after logging: it names the MLflow run
    if json_path is not None:
        result.to_json(json_path)
    if junit is not None:
        result.to_junit(junit)
