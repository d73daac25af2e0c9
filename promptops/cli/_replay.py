"""`promptops replay TARGET --candidate V`: run `promptops.replay.run()` with a progress bar and a summary table.

Exit codes: 0 every gate passed, 1 a gate failed (or the run was interrupted), 2 bad usage or input.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import State

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..replay import ReplayResult

__all__ = ["replay"]

EXIT_GATE_FAILED = 1


def replay(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="module:function decorated with @promptops.track, or module:chain, a LangChain Runnable holding a "
            "pinned_prompt.",
        ),
    ],
    candidate: Annotated[
        list[str],
        typer.Option(
            "--candidate",
            metavar="V",
            help="Candidate prompt version number or alias; repeat to compare several against one baseline.",
            show_default=False,
        ),
    ],
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            metavar="captured|production|V",
            help="Compare with the captured outputs, with what the function resolves today, or with a version/alias "
            "run now.",
        ),
    ] = "captured",
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            metavar="NAME|FILE",
            help="A dataset name (promptops datasets list) or a .jsonl/.parquet file. Default: the target's captured "
            "calls (--since, --limit).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="Without --dataset: calls captured since WHEN (24h, 7d, a date)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="WHEN", help="Without --dataset: calls captured before WHEN.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="N", min=1, help="Without --dataset: the N most recent calls [default: 500]."),
    ] = None,
    scorer: Annotated[
        list[str] | None,
        typer.Option(
            "--scorer",
            metavar="S",
            help="rouge1, rouge2, rougeL, bleu, semantic[:MODEL], exact_match, length_ratio, or module:function of "
            "a @promptops.scorer (repeatable). Default: rougeL and bleu; latency and errors always.",
        ),
    ] = None,
    gate: Annotated[
        list[str] | None,
        typer.Option(
            "--gate",
            metavar="EXPR",
            help="'metric.stat OP number' (stat: mean p50 p95 delta delta_ci_low delta_ci_high ratio p95_ratio rate "
            "baseline n) "
            "or 'metric noninferior MARGIN' (repeatable). Default: every similarity scorer noninferior and no rise "
            "in errors.",
        ),
    ] = None,
    repeats: Annotated[
        int,
        typer.Option("--repeats", metavar="K", min=0, help="Baseline re-runs per record, for the noise floor."),
    ] = 1,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="Most calls in flight at once; fewer while the provider answers with rate limits.",
        ),
    ] = 8,
    rps: Annotated[
        float | None,
        typer.Option("--rps", metavar="R", min=0.001, help="At most R calls started per second.", show_default=False),
    ] = None,
    max_infra_errors: Annotated[
        float,
        typer.Option(
            "--max-infra-errors",
            metavar="FRACTION",
            min=0.0,
            max=1.0,
            help="'Could not measure' (exit 1) when more calls than this still fail on the provider's side after "
            "retries.",
        ),
    ] = 0.02,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            metavar="USD",
            min=0.0,
            help="Stop before the estimated cost of the calls made would exceed USD (by the price table), keeping "
            "what finished; the calls must report their token usage.",
            show_default=False,
        ),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Make every call again, ignoring (and replacing) the calls stored by an earlier run of this replay.",
        ),
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            metavar="local|ray",
            help="Where calls and scoring run: threads in this process, or tasks on a Ray cluster "
            "(pip install 'mlflow-promptops[ray]').",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="ADDR",
            help="With --executor ray: the cluster's head (host:port, ray://host:10001, auto). Default: RAY_ADDRESS, "
            "else a Ray instance on this machine.",
            show_default=False,
        ),
    ] = None,
    report: Annotated[str | None, typer.Option("--report", metavar="FILE.html", help="Write the HTML report.")] = None,
    json_path: Annotated[str | None, typer.Option("--json", metavar="FILE", help="Write the JSON result.")] = None,
    junit: Annotated[str | None, typer.Option("--junit", metavar="FILE", help="Write JUnit XML.")] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", metavar="URL", help="Capture store holding datasets and captures.", show_default=False),
    ] = None,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow/--no-mlflow",
            help="Log the run (metrics, records, report) and the calls' traces to MLflow; --no-mlflow sends nothing.",
        ),
    ] = True,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            metavar="NAME",
            help="MLflow experiment of the run and its traces [default: <experiment_name>-replay, or "
            "promptops-replay].",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Seed of the bootstrap resampling.")] = 0,
) -> None:
    """Replay captured traffic on a candidate prompt version and gate on the comparison with the baseline."""
    from .. import configure
    from ..replay import ReplaySettings, run

    state = State.of(ctx)
    if state.tracking_uri_option is not None:
        configure(tracking_uri=state.tracking_uri)
    from rich.console import Console

    console = Console(stderr=True)
    with _Progress(console) as bar:
        settings = ReplaySettings(
            candidate=candidate[0] if len(candidate) == 1 else list(candidate),
            baseline=baseline,
            dataset=dataset,
            since=since,
            until=until,
            limit=limit,
            scorers=scorer or None,
            gates=gate or None,
            repeats=repeats,
            workers=workers,
            rps=rps,
            max_infra_errors=max_infra_errors,
            max_cost=max_cost,
            fresh=fresh,
            executor=executor,
            ray_address=ray_address,
            store=store,
            report=report,
            json_path=json_path,
            junit=junit,
            log_to_mlflow=mlflow,
            experiment=experiment,
            seed=seed,
        )
        result = run(target, settings, progress=bar.start)
    _print_summary(result, report=report)
    if not result.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


class _Progress:
    """A rich progress bar over the calls; invisible when stderr is not a terminal."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("calls"),
            TextColumn("{task.fields[flow]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task: Any = None

    def __enter__(self) -> _Progress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def start(self, calls: int, records: int) -> Callable[[int], None]:
        self._task = self._progress.add_task("replay", total=calls, flow="")
        return _Advance(self._progress, self._task)


class _Advance:
    """Advances the bar; `status()` shows the retries and the current concurrency beside it (issue 13)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def __call__(self, count: int) -> None:
        self._progress.advance(self._task, count)

    def status(self, *, retries: int, concurrency: int, rate_limited: int) -> None:
        text = f"· {concurrency} in flight · {retries} retries" + (
            f" ({rate_limited} rate limited)" if rate_limited else ""
        )
        self._progress.update(self._task, flow=text)


def _cell(name: str, value: float | None, *, signed: bool = False) -> str:
    """A metric's value as the table shows it: latency in ms, tokens whole, cost in USD to 3 significant digits."""
    if value is None:
        return "—"
    sign = "+" if signed else ""
    if name == "cost":
        return f"{value:{sign}.3g}"
    return f"{value:{sign}.{1 if name in ('latency', 'tokens') else 3}f}"


def _print_matrix(console: Any, result: ReplayResult) -> None:
    """Every candidate side by side (issue 13): each metric's mean and delta against the shared baseline."""
    from rich.table import Table

    table = Table(title=f"{len(result.candidates)} candidates vs baseline {result.baseline.label}")
    table.add_column("metric")
    table.add_column("baseline", justify="right")
    for candidate in result.candidates:
        mark = "[green]pass[/]" if candidate.passed else "[red]FAIL[/]"
        table.add_column(
            f"{candidate.label} {mark}" + (" (best)" if candidate.label == result.best else ""), justify="right"
        )
    names = list(dict.fromkeys(name for candidate in result.candidates for name in candidate.metrics))
    for name in names:
        baseline = next((c.metrics[name].baseline for c in result.candidates if name in c.metrics), None)
        cells = [
            f"{_cell(name, m.candidate)} ({_cell(name, m.delta, signed=True)})" if m is not None else "—"
            for m in (candidate.metrics.get(name) for candidate in result.candidates)
        ]
        table.add_row(name, _cell(name, baseline), *cells)
    console.print(table)
    for candidate in result.candidates[1:]:
        for gate in candidate.gates:
            mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
            console.print(f"{mark} candidate {candidate.label}: {gate.expr}: {gate.detail}", highlight=False)


def _print_summary(result: ReplayResult, *, report: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    from ..replay import parse_gates

    gates_by_metric: dict[str, list[bool]] = {}
    for gate in result.gates:
        gates_by_metric.setdefault(parse_gates([gate.expr])[0].metric, []).append(gate.passed)
    table = Table(title=f"{result.prompt_name}: candidate {result.candidate.label} vs baseline {result.baseline.label}")
    table.add_column("metric")
    table.add_column("baseline", justify="right")
    table.add_column("candidate", justify="right")
    table.add_column("delta [95% CI]", justify="right")
    table.add_column("gate")
    for name, metric in result.metrics.items():
        verdicts = gates_by_metric.get(name)
        verdict = "" if not verdicts else ("[green]pass[/]" if all(verdicts) else "[red]FAIL[/]")
        delta = (
            f"{_cell(name, metric.delta, signed=True)} [{_cell(name, metric.ci_low)}, {_cell(name, metric.ci_high)}]"
            if metric.delta is not None
            else "—"
        )
        table.add_row(name, _cell(name, metric.baseline), _cell(name, metric.candidate), delta, verdict)
    console.print(table)
    if len(result.candidates) > 1:
        _print_matrix(console, result)
    for gate in result.gates:
        mark = "[green]pass[/]" if gate.passed else "[red]FAIL[/]"
        console.print(f"{mark} {gate.expr}: {gate.detail}", highlight=False)
    skipped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in result.skipped.items())
    errors = sum(record.error is not None for record in result.records)
    facts = f"{len(result.records)} records from {result.dataset}" + (f"; skipped {skipped}" if skipped else "")
    facts += f"; {errors} candidate errors" if errors else ""
    if result.reused:
        facts += f"; {result.reused:,} of {result.calls:,} calls reused from an earlier run (--fresh makes them again)"
    if result.retries or result.infrastructure_errors:
        facts += f"; {result.retries} retries, {result.infrastructure_errors} infrastructure errors"
    console.print(facts, highlight=False)
    if result.usage:
        from .._usage import usage_line

        console.print(usage_line(result.usage, result.spent), highlight=False)
    if result.stopped is not None:
        console.print(f"[bold yellow]{result.stopped}[/]: the results cover the records that finished", highlight=False)
    if result.could_not_measure is not None:
        console.print(f"[bold yellow]could not measure[/]: {result.could_not_measure}", highlight=False)
    if report is not None:
        console.print(f"report: {report}", highlight=False)
    if result.mlflow_run_id is not None:
        console.print(f"MLflow run: {result.mlflow_run_id}", highlight=False)
    if result.interrupted:
        console.print("[yellow]interrupted: the results cover the records that finished[/]")
    if len(result.candidates) > 1:
        console.print(
            f"best passing candidate: {result.best}" if result.best is not None else "no candidate passed",
            highlight=False,
        )
    verdict = "[bold green]PASSED[/]" if result.passed else "[bold red]FAILED[/]"
    console.print(f"{verdict} candidate {result.candidate.label} vs baseline {result.baseline.label}")
    sys.stdout.flush()
