"""Starting, steering and ending rollouts: writes to the prompt's tags and aliases in the MLflow registry.

Used by `promptops rollout ...` and by the guard. Every function takes an `mlflow.MlflowClient`; bad input
raises `RolloutError` (one line naming the problem and the fix), MLflow's own failures propagate.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from .._errors import PromptopsError
from ._state import RUNNING, TAG_PREFIX, RolloutState, format_share, tag_dict

__all__ = [
    "CANDIDATE_ALIAS",
    "RolloutError",
    "end_rollout",
    "list_rollouts",
    "promote",
    "read_rollout",
    "rollback",
    "set_share",
    "start_rollout",
]

CANDIDATE_ALIAS = "candidate"  # points at the candidate while a rollout runs: visible in MLflow's UI
DECISION_TAG = "promptops.rollout.decision"  # on the candidate version when a rollout ends


class RolloutError(PromptopsError):
    """A rollout command was given bad input (no such prompt or version, share outside 0..1, ...)."""


def _now() -> datetime.datetime:
    # Whole seconds: what the tags hold, so a state read back equals the one written.
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _store(client: Any) -> Any:
    return client._get_registry_client().store


def _tags(client: Any, name: str) -> dict[str, str]:
    try:
        model: Any = _store(client).get_registered_model(name)
    except Exception as exc:
        if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            raise RolloutError(
                f"no prompt {name!r} in the registry; list prompts with: promptops prompts list"
            ) from None
        raise
    tags = tag_dict(model.tags)
    if tags.get("mlflow.prompt.is_prompt", "true") != "true":
        raise RolloutError(f"{name!r} is a registered model, not a prompt")
    return tags


def check_share(share: float) -> float:
    """`share` if it is a number from 0 to 1, else a `RolloutError`."""
    if not 0.0 <= share <= 1.0:  # also false for NaN
        raise RolloutError(f"share {share:g} is outside 0..1; pass a fraction of calls such as 0.1")
    return share


def read_rollout(client: Any, name: str) -> RolloutState | None:
    """The rollout recorded on prompt `name` (running or ended), or `None` if it never had one."""
    return RolloutState.from_tags(name, _tags(client, name))


def running_rollout(client: Any, name: str) -> RolloutState:
    """The running rollout of `name`, else a `RolloutError` saying how to start one."""
    state = read_rollout(client, name)
    if state is None or not state.running:
        raise RolloutError(
            f"no rollout of {name!r} is running; start one with: promptops rollout start {name} --candidate V --share 0.1"
        )
    return state


def _version_exists(client: Any, name: str, version: int) -> bool:
    try:
        return client.get_prompt_version(name, str(version)) is not None
    except Exception as exc:
        if getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return False
        raise


def _alias_version(client: Any, name: str, alias: str) -> int | None:
    try:
        found: Any = client.get_prompt_version_by_alias(name, alias)
    except Exception as exc:
        if getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return int(found.version) if found is not None else None


def _write(client: Any, name: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_prompt_tag(name, key, value)


def start_rollout(
    client: Any, name: str, *, candidate: int, share: float, key: str | None = None, baseline: str = "production"
) -> RolloutState:
    """Start sending `share` of `name`'s `baseline` traffic to version `candidate`.

    Args:
        client: An `mlflow.MlflowClient`.
        name: The prompt.
        candidate: The candidate version.
        share: The candidate's share of calls, 0 to 1.
        key: The argument of the tracked function used as sticky key when the decorator names none.
        baseline: The alias whose traffic is shared.

    Returns:
        The new rollout.

    Raises:
        RolloutError: no such prompt, version or alias; share outside 0..1; a rollout is already running; the
            candidate is what the baseline already serves.
    """
    check_share(share)
    current = read_rollout(client, name)
    if current is not None and current.running:
        raise RolloutError(
            f"a rollout of {name!r} is already running (candidate version {current.candidate} at share "
            f"{current.share:g}); end it first with: promptops rollout promote {name}, or promptops rollout rollback {name}"
        )
    if not _version_exists(client, name, candidate):
        raise RolloutError(
            f"prompt {name!r} has no version {candidate}; list versions with: promptops prompts show {name}"
        )
    baseline_version = _alias_version(client, name, baseline)
    if baseline_version is None:
        raise RolloutError(
            f"prompt {name!r} has no alias {baseline!r} to roll out against; set it with: "
            f"promptops prompts alias {name} {baseline} VERSION, or pass --baseline ALIAS"
        )
    if baseline_version == candidate:
        raise RolloutError(f"{name!r}@{baseline} already serves version {candidate}; pick another --candidate")
    now = _now()
    state = RolloutState(
        prompt=name,
        id=f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}",
        status=RUNNING,
        candidate=candidate,
        baseline=baseline,
        share=share,
        key=key,
        started_at=now,
        baseline_version=baseline_version,
    )
    _write(client, name, state.to_tags())  # `status` is the last tag written (see _state)
    client.set_prompt_alias(name, CANDIDATE_ALIAS, candidate)
    return state


def set_share(client: Any, name: str, share: float) -> RolloutState:
    """Change the candidate's share of a running rollout. Raising it only moves keys to the candidate."""
    check_share(share)
    state = running_rollout(client, name)
    client.set_prompt_tag(name, TAG_PREFIX + "share", format_share(share))
    return RolloutState.from_tags(name, _tags(client, name)) or state


def end_rollout(client: Any, name: str, *, status: str, decision: str) -> RolloutState:
    """End the running rollout of `name` with `status` (`promoted` or `rolled_back`), recording why.

    The status is written first, so every process stops assigning the candidate at its next read. The
    decision is also a tag on the candidate version (`promptops.rollout.decision`), and the `candidate`
    alias is removed.
    """
    state = running_rollout(client, name)
    now = _now()
    client.set_prompt_tag(name, TAG_PREFIX + "status", status)
    client.set_prompt_tag(name, TAG_PREFIX + "ended_at", now.isoformat(timespec="seconds"))
    client.set_prompt_tag(name, TAG_PREFIX + "decision", decision)
    client.set_prompt_version_tag(
        name,
        str(state.candidate),
        DECISION_TAG,
        f"{status} {now.isoformat(timespec='seconds')} ({state.id}): {decision}",
    )
    try:
        client.delete_prompt_alias(name, CANDIDATE_ALIAS)
    except Exception as exc:
        if getattr(exc, "error_code", None) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    return RolloutState.from_tags(name, _tags(client, name)) or state


def promote(client: Any, name: str, *, decision: str = "promoted by hand") -> RolloutState:
    """Move the baseline alias to the candidate and end the rollout.

    The alias moves first: processes that still see the rollout running serve the candidate on both arms
    until they read the end.
    """
    state = running_rollout(client, name)
    client.set_prompt_alias(name, state.baseline, state.candidate)
    return end_rollout(client, name, status="promoted", decision=decision)


def rollback(client: Any, name: str, *, decision: str = "rolled back by hand") -> RolloutState:
    """End the rollout: every call goes back to the baseline alias within `cache_ttl`."""
    return end_rollout(client, name, status="rolled_back", decision=decision)


def list_rollouts(client: Any) -> list[RolloutState]:
    """Every prompt's rollout (running or ended), running ones first."""
    found: list[RolloutState] = []
    token: str | None = None
    while True:
        page: Any = client.search_prompts(page_token=token)
        for prompt in page:
            state = RolloutState.from_tags(str(prompt.name), tag_dict(prompt.tags))
            if state is not None:
                found.append(state)
        token = getattr(page, "token", None)
        if not token:
            break
    return sorted(found, key=lambda state: (not state.running, state.prompt))
