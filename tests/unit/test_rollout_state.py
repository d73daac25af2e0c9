"""Rollout state in the registry (real sqlite MLflow store), sticky assignment, the per-process cache and its disk copy."""

from __future__ import annotations

import dataclasses

import pytest

import promptops
from promptops import prompts
from promptops.rollout import (
    KeyReader,
    RolloutCache,
    RolloutError,
    RolloutState,
    _cache,  # pyright: ignore[reportPrivateUsage]
    assign,
    bucket,
    promote,
    read_rollout,
    rollback,
    rollout_cache,
    rollout_key,
    set_share,
    start_rollout,
)
from tests.conftest import Registry

# -- assignment ---------------------------------------------------------------------------------------------


def test_bucket_is_deterministic_and_uniform() -> None:
    assert bucket("r1", "user-7") == bucket("r1", "user-7")
    assert bucket("r1", "user-7") != bucket("r2", "user-7")
    values = [bucket("r1", f"user-{i}") for i in range(5000)]
    assert all(0.0 <= value < 1.0 for value in values)
    share = sum(value < 0.3 for value in values) / len(values)
    assert 0.27 <= share <= 0.33


def test_raising_the_share_only_moves_keys_to_the_candidate() -> None:
    state = RolloutState(prompt="p", id="r-1", status="running", candidate=2, baseline="production", share=0.3)
    before = {key: state.arm_for(key) for key in range(5000)}
    after = {key: dataclasses.replace(state, share=0.6).arm_for(key) for key in range(5000)}
    assert all(after[key] == "candidate" for key, arm in before.items() if arm == "candidate")
    moved = sum(before[key] != after[key] for key in before)
    assert 0.25 * 5000 <= moved <= 0.35 * 5000


def test_tags_round_trip_and_malformed_tags_read_as_no_rollout() -> None:
    state = RolloutState(
        prompt="p", id="r-1", status="running", candidate=2, baseline="production", share=0.25, key="user"
    )
    assert RolloutState.from_tags("p", state.to_tags()) == state
    broken = {**state.to_tags(), "promptops.rollout.share": "lots"}
    assert RolloutState.from_tags("p", broken) is None
    assert RolloutState.from_tags("p", {**state.to_tags(), "promptops.rollout.share": "1.5"}) is None
    assert RolloutState.from_tags("p", {}) is None


# -- writing the state --------------------------------------------------------------------------------------


def test_start_set_share_promote(registry: Registry, rollout_prompt: str) -> None:
    client = registry.client
    state = start_rollout(client, rollout_prompt, candidate=2, share=0.2, key="user_id")
    assert (state.candidate, state.baseline_version, state.share, state.running) == (2, 1, 0.2, True)
    assert read_rollout(client, rollout_prompt) == state
    assert client.get_prompt_version_by_alias(rollout_prompt, "candidate").version == 2  # visible in the UI
    assert set_share(client, rollout_prompt, 0.5).share == 0.5
    ended = promote(client, rollout_prompt)
    assert ended.status == "promoted" and not ended.running
    assert int(client.get_prompt_version_by_alias(rollout_prompt, "production").version) == 2
    decision = client.get_prompt_version(rollout_prompt, 2).tags["promptops.rollout.decision"]
    assert decision.startswith("promoted") and state.id in decision


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"candidate": 9, "share": 0.1}, "no version 9"),
        ({"candidate": 2, "share": 1.5}, "outside 0..1"),
        ({"candidate": 1, "share": 0.1}, "already serves version 1"),
        ({"candidate": 2, "share": 0.1, "baseline": "nope"}, "no alias 'nope'"),
    ],
)
def test_start_refuses_bad_input(registry: Registry, rollout_prompt: str, kwargs: dict, fragment: str) -> None:
    with pytest.raises(RolloutError, match=fragment):
        start_rollout(registry.client, rollout_prompt, **kwargs)
    assert read_rollout(registry.client, rollout_prompt) is None


def test_one_rollout_at_a_time(registry: Registry, rollout_prompt: str) -> None:
    start_rollout(registry.client, rollout_prompt, candidate=2, share=0.1)
    with pytest.raises(RolloutError, match="already running"):
        start_rollout(registry.client, rollout_prompt, candidate=2, share=0.2)
    rollback(registry.client, rollout_prompt)
    with pytest.raises(RolloutError, match="no rollout"):
        set_share(registry.client, rollout_prompt, 0.3)


# -- reading it in a process ----------------------------------------------------------------------------------


def _served(name: str) -> promptops.Prompt:
    return prompts.resolver().resolve(name, ("alias", "production"))


def test_assignment_follows_the_registry(registry: Registry, rollout_prompt: str) -> None:
    reader = KeyReader(lambda user_id, text: None, "user_id")
    served = _served(rollout_prompt)
    assert assign(rollout_prompt, served, reader, ("u1", "x"), {}, False) is served  # no rollout: untouched

    state = start_rollout(registry.client, rollout_prompt, candidate=2, share=0.3)
    assert rollout_cache().refresh(rollout_prompt) == state
    arms = {}
    for index in range(2000):
        prompt = assign(rollout_prompt, served, reader, (f"user-{index}", "x"), {}, False)
        assert prompt.rollout_id == state.id
        assert prompt.version == (2 if prompt.rollout_arm == "candidate" else 1)
        arms[index] = prompt.rollout_arm
    share = sum(arm == "candidate" for arm in arms.values()) / len(arms)
    assert 0.26 <= share <= 0.34
    # sticky: the same key, the same arm; a rollout_key() block wins over the argument
    assert all(
        assign(rollout_prompt, served, reader, (f"user-{i}", "y"), {}, False).rollout_arm == arms[i] for i in range(200)
    )
    with rollout_key("user-0"):
        assert {
            assign(rollout_prompt, served, reader, (f"user-{i}", "y"), {}, False).rollout_arm for i in range(50)
        } == {arms[0]}

    rollback(registry.client, rollout_prompt)
    rollout_cache().refresh(rollout_prompt)
    assert assign(rollout_prompt, served, reader, ("user-1", "x"), {}, False) is served


def test_remembered_buckets_belong_to_one_rollout(
    registry: Registry, rollout_prompt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = KeyReader(lambda user_id, text: None, "user_id")
    served = _served(rollout_prompt)
    keys = [f"user-{index}" for index in range(1000)]

    def arms() -> list[str | None]:
        return [assign(rollout_prompt, served, reader, (key, "x"), {}, False).rollout_arm for key in keys]

    first = start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    rollout_cache().refresh(rollout_prompt)
    assert arms() == [first.arm_for(key) for key in keys]
    raised = set_share(registry.client, rollout_prompt, 0.7)
    rollout_cache().refresh(rollout_prompt)
    assert arms() == [raised.arm_for(key) for key in keys]  # the same rollout: its buckets, the new share
    rollback(registry.client, rollout_prompt)
    rollout_cache().refresh(rollout_prompt)
    second = start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    rollout_cache().refresh(rollout_prompt)
    assert arms() == [second.arm_for(key) for key in keys]  # a new rollout draws new buckets

    monkeypatch.setattr(_cache, "BUCKETS_KEPT", 100)
    for index in range(250):
        assert assign(rollout_prompt, served, reader, (index, "x"), {}, False).rollout_arm == second.arm_for(index)
    assert 0 < len(rollout_cache().entries[rollout_prompt].buckets) <= 100


def test_no_key_draws_per_call(registry: Registry, rollout_prompt: str) -> None:
    reader = KeyReader(lambda text: None, None)
    served = _served(rollout_prompt)
    start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    rollout_cache().refresh(rollout_prompt)
    arms = [assign(rollout_prompt, served, reader, ("x",), {}, False).rollout_arm for _ in range(400)]
    assert 120 <= arms.count("candidate") <= 280


def test_other_aliases_and_fallbacks_do_not_take_part(registry: Registry, rollout_prompt: str) -> None:
    start_rollout(registry.client, rollout_prompt, candidate=2, share=1.0)
    rollout_cache().refresh(rollout_prompt)
    reader = KeyReader(lambda text: None, None)
    staging = dataclasses.replace(_served(rollout_prompt), alias="staging")
    assert assign(rollout_prompt, staging, reader, ("x",), {}, False) is staging
    assert assign(rollout_prompt, _served(rollout_prompt), reader, ("x",), {}, False).rollout_arm == "candidate"


def test_a_new_process_starts_from_the_disk_copy(registry: Registry, rollout_prompt: str) -> None:
    state = start_rollout(registry.client, rollout_prompt, candidate=2, share=0.4)
    rollout_cache().refresh(rollout_prompt)
    # Another process with the same settings: its first look answers from disk, before any registry read.
    other = RolloutCache(promptops.get_settings())
    assert other.entry(rollout_prompt).state == state
    assert other.wait(30)
