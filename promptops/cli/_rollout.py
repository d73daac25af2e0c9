"""`promptops rollout ...`: serve a candidate prompt version to a share of live traffic, then promote or roll back.

The rollout state is written to the prompt's tags in the MLflow registry (see `promptops.rollout._state`);
every process running tracked calls picks a change up within `cache_ttl`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from ..rollout import _admin  # pyright: ignore[reportPrivateUsage]
from ..rollout._state import RolloutState
from ._app import CliError, State

__all__ = ["rollout_app"]

rollout_app = typer.Typer(
    name="rollout",
    help="Serve a candidate prompt version to a share of live traffic, compare the arms, promote or roll back.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The prompt's registry name.")]


def _client(ctx: typer.Context) -> Any:
    return State.of(ctx).client(ctx)


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
    typer.echo(f"started {_describe(state)}")


@rollout_app.command("set-share")
def set_share(
    ctx: typer.Context,
    name: NameArgument,
    share: Annotated[str, typer.Argument(metavar="SHARE", help="The candidate's new share of calls, 0..1.")],
) -> None:
    """Change the candidate's share. Raising it only moves callers from the baseline to the candidate."""
    state = _admin.set_share(_client(ctx), name, _share(share))
    typer.echo(f"share set: {_describe(state)}")


@rollout_app.command("promote")
def promote(ctx: typer.Context, name: NameArgument) -> None:
    """Move the baseline alias to the candidate version and end the rollout."""
    state = _admin.promote(_client(ctx), name)
    typer.echo(f"promoted: {state.prompt}@{state.baseline} now serves version {state.candidate} to every call")


@rollout_app.command("rollback")
def rollback(ctx: typer.Context, name: NameArgument) -> None:
    """End the rollout: every call goes back to the baseline alias."""
    state = _admin.rollback(_client(ctx), name)
    typer.echo(f"rolled back: every call of {state.prompt} is back on {state.baseline}")


@rollout_app.command("list")
def list_rollouts(ctx: typer.Context) -> None:
    """List the prompts with a rollout, running ones first."""
    found = _admin.list_rollouts(_client(ctx))
    if not found:
        typer.echo(f"no rollouts at {State.of(ctx).display_uri}")
        return
    for state in found:
        typer.echo(_describe(state))


@rollout_app.command("status")
def status(ctx: typer.Context, name: NameArgument) -> None:
    """Show the rollout of a prompt."""
    state = _admin.read_rollout(_client(ctx), name)
    if state is None:
        raise CliError(
            f"prompt {name!r} has never had a rollout; start one with: promptops rollout start {name} --candidate V"
        )
    typer.echo(_describe(state))
