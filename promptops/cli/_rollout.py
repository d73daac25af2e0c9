"""`promptops rollout ...`: serve a candidate prompt version to a share of live traffic, then promote or roll back.

The rollout state is written to the prompt's tags in the MLflow registry (see `promptops.rollout._state`);
every process running tracked calls picks a change up within `cache_ttl`.
"""

from __future__ import annotations

import math
import re
import time
from typing import Annotated, Any

import typer

from ..rollout import _admin  # pyright: ignore[reportPrivateUsage]
from ..rollout._compare import Comparison, GateSyntaxError, compare, parse_gate, since
from ..rollout._state import RolloutState
from ._app import CliError, State
from ._captures import StoreOption
from ._text import visible

__all__ = ["rollout_app"]

rollout_app = typer.Typer(
    name="rollout",
    help="Serve a candidate prompt version to a share of live traffic, compare the arms, promote or roll back.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The prompt's registry name.")]


def _client(ctx: typer.Context) -> Any:
    return State.of(ctx).client(ctx)


def _say(line: str, *, err: bool = False) -> None:
    # Names, ids, keys and decisions come from the registry's tags: no escape sequence reaches the terminal.
    typer.echo(visible(line), err=err)


def _share(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%")) / (100.0 if text.strip().endswith("%") else 1.0)
    except ValueError:
        raise CliError(f"share {text!r} is not a number; pass a fraction of calls such as 0.1 (or 10%)") from None
    if not math.isfinite(value):
        raise CliError(f"share {text!r} is not a number; pass a fraction of calls such as 0.1 (or 10%)")
    _admin.check_share(value)
    return value


def _version(text: str) -> int:
    try:
        version = int(text.strip().lstrip("v"))
    except ValueError:
        raise CliError(f"--candidate {text!r} is not a version number; pass one such as --candidate 5") from None
    if version < 1:
        raise CliError(f"--candidate {text!r}: versions start at 1")
    return version


def _describe(state: RolloutState) -> str:
    when = state.started_at.strftime("%Y-%m-%d %H:%M:%S UTC") if state.started_at is not None else "?"
    key = f", sticky key {state.key!r}" if state.key else ""
    baseline = f"{state.baseline} (version {state.baseline_version})" if state.baseline_version else state.baseline
    return (
        f"{state.prompt}: {state.status}, candidate version {state.candidate} at share {state.share:g} against "
        f"{baseline}{key}; rollout {state.id}, started {when}"
    )


@rollout_app.command("start")
def start(
    ctx: typer.Context,
    name: NameArgument,
    candidate: Annotated[str, typer.Option("--candidate", metavar="V", help="The candidate version.")],
    share: Annotated[str, typer.Option("--share", metavar="S", help="The candidate's share of calls, 0..1.")] = "0.1",
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="ARG",
            help="The tracked function's argument that keeps a caller on one arm (when the decorator names none).",
        ),
    ] = None,
    baseline: Annotated[
        str, typer.Option("--baseline", metavar="ALIAS", help="The alias whose traffic is shared.")
    ] = "production",
) -> None:
    """Start a rollout: SHARE of the calls on the baseline alias get the candidate version."""
    state = _admin.start_rollout(
        _client(ctx), name, candidate=_version(candidate), share=_share(share), key=key or None, baseline=baseline
    )
    _say(f"started {_describe(state)}")


@rollout_app.command("set-share")
def set_share(
    ctx: typer.Context,
    name: NameArgument,
    share: Annotated[str, typer.Argument(metavar="SHARE", help="The candidate's new share of calls, 0..1.")],
) -> None:
    """Change the candidate's share. Raising it only moves callers from the baseline to the candidate."""
    state = _admin.set_share(_client(ctx), name, _share(share))
    _say(f"share set: {_describe(state)}")


@rollout_app.command("promote")
def promote(ctx: typer.Context, name: NameArgument) -> None:
    """Move the baseline alias to the candidate version and end the rollout."""
    state = _admin.promote(_client(ctx), name)
    _say(f"promoted: {state.prompt}@{state.baseline} now serves version {state.candidate} to every call")


@rollout_app.command("rollback")
def rollback(ctx: typer.Context, name: NameArgument) -> None:
    """End the rollout: every call goes back to the baseline alias."""
    state = _admin.rollback(_client(ctx), name)
    _say(f"rolled back: every call of {state.prompt} is back on {state.baseline}")


@rollout_app.command("list")
def list_rollouts(ctx: typer.Context) -> None:
    """List the prompts with a rollout, running ones first."""
    found = _admin.list_rollouts(_client(ctx))
    if not found:
        _say(f"no rollouts at {State.of(ctx).display_uri}")
        return
    for state in found:
        _say(_describe(state))


GateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--gate",
        metavar="EXPR",
        help="METRIC noninferior MARGIN (repeatable), e.g. 'errors.rate noninferior 0.02', "
        "'feedback.thumbs.mean noninferior 0.05', 'latency_ms.mean noninferior 10%'. "
        "Default: errors.rate noninferior 0.02.",
    ),
]
MinCallsOption = Annotated[
    int, typer.Option("--min-calls", metavar="N", min=2, help="Observations per arm before a gate can pass or fail.")
]


def _gates(texts: list[str] | None) -> list[Any]:
    try:
        return [parse_gate(text) for text in texts] if texts else [parse_gate("errors.rate noninferior 0.02")]
    except GateSyntaxError as exc:
        raise CliError(str(exc)) from None


def _compare(
    ctx: typer.Context, state: RolloutState, store: str | None, gates: list[Any], min_calls: int
) -> Comparison:
    from ._captures import _open_store  # pyright: ignore[reportPrivateUsage]

    opened = _open_store(ctx, store)
    records = opened.query(prompt=state.prompt, since=since(state))
    from ..rollout._feedback import feedback_values

    return compare(state, records, gates=gates, feedback=feedback_values(opened), min_calls=min_calls)


def _print_comparison(comparison: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(soft_wrap=True, highlight=False)
    calls = comparison.calls
    console.print(f"calls: baseline {calls['baseline']:,}, candidate {calls['candidate']:,}", markup=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("METRIC", "BASELINE", "CANDIDATE", "DELTA", "95% CI", "ALWAYS-VALID"):
        table.add_column(column, no_wrap=True, justify="left" if column == "METRIC" else "right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    for metric, sample in sorted(comparison.metrics.items()):
        table.add_row(
            Text(visible(metric)),
            f"{fmt(sample.baseline_mean)} (n={sample.baseline_n})",
            f"{fmt(sample.candidate_mean)} (n={sample.candidate_n})",
            fmt(sample.delta),
            f"[{fmt(sample.ci_low)}, {fmt(sample.ci_high)}]",
            f"[{fmt(sample.av_low)}, {fmt(sample.av_high)}]",
        )
    console.print(table)
    if comparison.usage:
        from .._usage import usage_line

        console.print(visible(usage_line(comparison.usage)), markup=False)
    for outcome in comparison.gates:
        console.print(visible(f"gate {outcome.gate.expr}: {outcome.verdict.upper()} ({outcome.reason})"), markup=False)
    console.print(f"verdict: {comparison.verdict}", markup=False)


@rollout_app.command("status")
def status(
    ctx: typer.Context,
    name: NameArgument,
    gate: GateOption = None,
    min_calls: MinCallsOption = 100,
    store: StoreOption = None,
    report: Annotated[
        str | None, typer.Option("--report", metavar="FILE.html", help="Also write the comparison as an HTML page.")
    ] = None,
) -> None:
    """Show the rollout of a prompt and compare its arms from the captured calls."""
    state = _admin.read_rollout(_client(ctx), name)
    if state is None:
        raise CliError(
            f"prompt {name!r} has never had a rollout; start one with: promptops rollout start {name} --candidate V"
        )
    gates = _gates(gate)
    _say(_describe(state))
    try:
        comparison = _compare(ctx, state, store, gates, min_calls)
    except CliError as exc:
        if store is not None:
            raise
        _say(f"no comparison: {exc}")  # the state is still worth showing without captures
        return
    _print_comparison(comparison)
    if report:
        from ..rollout._report import write_report

        write_report(comparison, report)
        _say(f"report: {report}")


def _check_once(ctx: typer.Context, name: str, gates: list[Any], min_calls: int, store: str | None) -> int:
    client = _client(ctx)
    state = _admin.running_rollout(client, name)
    comparison = _compare(ctx, state, store, gates, min_calls)
    _print_comparison(comparison)
    if comparison.verdict != "fail":
        return 0
    reasons = "; ".join(f"{outcome.gate.expr}: {outcome.reason}" for outcome in comparison.failed)
    _admin.rollback(client, name, decision=f"rolled back by the guard: {reasons}")
    _say(f"rolled back {name}: {reasons}", err=True)
    return 1


@rollout_app.command("check")
def check(
    ctx: typer.Context,
    name: NameArgument,
    gate: GateOption = None,
    min_calls: MinCallsOption = 100,
    store: StoreOption = None,
) -> None:
    """Compare the arms once; roll back when a gate fails with enough evidence (exit 1), else exit 0.

    For a cron job or a CI step. Gates decide on always-valid intervals, so running it every minute does not
    raise more false alarms than running it once.
    """
    gates = _gates(gate)
    code = _check_once(ctx, name, gates, min_calls, store)
    if code:
        raise typer.Exit(code)


def _seconds(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*(s|m|h)?\s*", text)
    if match is None:
        raise CliError(f"--every {text!r}: expected a duration such as 60s, 5m or 1h")
    value = float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2] or "s"]
    if value <= 0:
        raise CliError(f"--every {text!r}: the interval must be positive")
    return value


@rollout_app.command("watch")
def watch(
    ctx: typer.Context,
    name: NameArgument,
    gate: GateOption = None,
    every: Annotated[str, typer.Option("--every", metavar="DURATION", help="How often to check: 60s, 5m, 1h.")] = "60s",
    min_calls: MinCallsOption = 100,
    store: StoreOption = None,
    checks: Annotated[
        int | None, typer.Option("--checks", metavar="N", min=1, help="Stop after N checks (default: until it ends).")
    ] = None,
) -> None:
    """Check the rollout every DURATION and roll it back as soon as a gate fails (exit 1).

    Stops with exit 0 when the rollout ends otherwise (promoted or rolled back by hand) or after --checks.
    """
    gates = _gates(gate)
    interval = _seconds(every)
    done = 0
    while True:
        state = _admin.read_rollout(_client(ctx), name)
        if state is None or not state.running:
            _say(f"rollout of {name} is not running; stopping")
            return
        if _check_once(ctx, name, gates, min_calls, store):
            raise typer.Exit(1)
        done += 1
        if checks is not None and done >= checks:
            return
        time.sleep(interval)
