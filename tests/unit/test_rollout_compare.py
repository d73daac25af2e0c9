"""Online comparison of a rollout's arms: statistics, gates, the guard (check/watch), feedback and the report."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import promptops
from promptops import Prompt
from promptops.capture import CaptureRecord, CaptureStore
from promptops.rollout import feedback, feedback_values, flush_feedback, read_rollout, rollout_cache, start_rollout
from promptops.rollout._compare import GateSyntaxError, compare, parse_gate
from promptops.rollout._state import RolloutState
from promptops.rollout._stats import always_valid_ci, two_sample
from tests.conftest import Registry
from tests.unit.test_cli import assert_usage_error, run

STATE = RolloutState(prompt="p", id="r-sim", status="running", candidate=2, baseline="production", share=0.5)


def _record(index: int, arm: str, *, failed: bool, latency: float = 10.0, rollout_id: str = "r-sim") -> CaptureRecord:
    return CaptureRecord(
        id=f"id-{index}",
        timestamp=datetime.datetime.now(datetime.UTC),
        function="app:reply",
        prompt_name="p",
        prompt_version=2 if arm == "candidate" else 1,
        prompt_alias=None,
        prompt_source="cache",
        inputs={},
        replayable=True,
        replay_reason=None,
        output="ok" if not failed else None,
        error_type="ValueError" if failed else None,
        error_message=None,
        latency_ms=latency,
        first_item_ms=None,
        trace_id=None,
        span_id=None,
        tags={"promptops.rollout.id": rollout_id, "promptops.rollout.arm": arm},
        app_version=None,
        input_hash="",
    )


def test_gate_syntax() -> None:
    gate = parse_gate("latency_ms.mean noninferior 10%")
    assert (gate.metric, gate.margin, gate.relative, gate.lower_is_better) == ("latency_ms.mean", 0.1, True, True)
    assert parse_gate("feedback.thumbs.mean noninferior 0.05").margin == 0.05
    assert (
        parse_gate("tokens.mean noninferior 5%").lower_is_better
        and parse_gate("cost.mean noninferior 0").lower_is_better
    )
    for bad in ("errors.rate < 0.1", "bogus.mean noninferior 1", "errors.rate noninferior -1"):
        with pytest.raises(GateSyntaxError):
            parse_gate(bad)


def test_always_valid_interval_is_wider_than_the_fixed_one() -> None:
    rng = np.random.default_rng(0)
    sample = two_sample(rng.normal(0, 1, 400), rng.normal(0, 1, 400))
    assert sample.av_low is not None and sample.ci_low is not None
    assert sample.av_low < sample.ci_low and sample.av_high > sample.ci_high  # type: ignore[operator]
    low, high = always_valid_ci(0.0, 0.01, tau=0.1)
    assert low == -high and high > 1.96 * 0.1


def _simulate(rng: random.Random, error_rates: tuple[float, float], minutes: int = 60, per_minute: int = 20) -> bool:
    """An hour of traffic, the guard looking every minute: whether it ever raised an alarm."""
    records: list[CaptureRecord] = []
    index = 0
    for _ in range(minutes):
        for _ in range(per_minute):
            for arm, rate in zip(("baseline", "candidate"), error_rates, strict=True):
                records.append(_record(index, arm, failed=rng.random() < rate, latency=rng.expovariate(0.1)))
                index += 1
        comparison = compare(
            STATE, records, gates=["errors.rate noninferior 0", "latency_ms.mean noninferior 0"], resamples=0
        )
        if comparison.verdict == "fail":
            return True
    return False


def test_aa_watched_every_minute_keeps_false_alarms_under_5_percent() -> None:
    rng = random.Random(7)
    runs = 100
    alarms = sum(_simulate(rng, (0.1, 0.1)) for _ in range(runs))
    assert alarms / runs <= 0.05, alarms


def test_a_worse_candidate_is_caught() -> None:
    rng = random.Random(3)
    assert sum(_simulate(rng, (0.05, 0.2), minutes=20) for _ in range(20)) >= 19


# -- against the registry and the capture store, through the decorator ----------------------------------------


def test_injected_worse_candidate_is_rolled_back_by_check(registry: Registry, rollout_prompt: str, tmp_path) -> None:
    rng = random.Random(1)

    @promptops.track(prompt=rollout_prompt, rollout_key="user")
    def reply(user: str, text: str, *, prompt: Prompt) -> str:
        if prompt.version == 2 and rng.random() < 0.4:  # the injected regression
            raise ValueError("model refused")
        return str(prompt.format(text=text))

    start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    rollout_cache().refresh(rollout_prompt)
    for index in range(600):
        try:
            reply(f"user-{index}", "hello")
        except ValueError:
            pass
    assert promptops.flush(timeout=60)

    store = promptops.get_settings().capture
    assert store is not None
    status = run(
        registry.uri, "rollout", "status", rollout_prompt, "--store", store, "--report", str(tmp_path / "s.html")
    )
    assert status.exit_code == 0, status.output
    assert "verdict: fail" in status.stdout and "errors.rate" in status.stdout
    assert "Verdict: fail" in (tmp_path / "s.html").read_text()

    result = run(registry.uri, "rollout", "check", rollout_prompt, "--store", store)
    assert result.exit_code == 1, result.output
    state = read_rollout(registry.client, rollout_prompt)
    assert state is not None and state.status == "rolled_back" and "errors.rate" in (state.decision or "")
    tag = registry.client.get_prompt_version(rollout_prompt, 2).tags["promptops.rollout.decision"]
    assert tag.startswith("rolled_back") and "guard" in tag


def test_check_passes_an_equal_candidate_and_refuses_bad_gates(registry: Registry, rollout_prompt: str) -> None:
    @promptops.track(prompt=rollout_prompt)
    def reply(text: str, *, prompt: Prompt) -> str:
        return "same answer"

    start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    rollout_cache().refresh(rollout_prompt)
    for _ in range(300):
        reply("x")
    assert promptops.flush(timeout=60)
    store = promptops.get_settings().capture
    assert store is not None
    result = run(registry.uri, "rollout", "check", rollout_prompt, "--store", store, "--min-calls", "50")
    assert result.exit_code == 0, result.output
    assert read_rollout(registry.client, rollout_prompt).running  # type: ignore[union-attr]
    watch = run(registry.uri, "rollout", "watch", rollout_prompt, "--store", store, "--every", "1s", "--checks", "2")
    assert watch.exit_code == 0, watch.output
    assert_usage_error(
        run(registry.uri, "rollout", "check", rollout_prompt, "--gate", "errors < 1"), "cannot read gate"
    )
    assert_usage_error(run(registry.uri, "rollout", "watch", rollout_prompt, "--every", "soon"), "--every")


def test_feedback_lands_in_the_store_and_gates_on_it(registry: Registry, rollout_prompt: str) -> None:
    from promptops.testing import capture_spans

    @promptops.track(prompt=rollout_prompt, rollout_key="user")
    def reply(user: str, text: str, *, prompt: Prompt) -> Prompt:
        return prompt

    start_rollout(registry.client, rollout_prompt, candidate=2, share=0.5)
    rollout_cache().refresh(rollout_prompt)
    with capture_spans() as spans:
        prompts = [reply(f"u{i}", "x") for i in range(300)]
    for prompt, span in zip(prompts, spans.finished(), strict=True):
        assert span.context is not None
        liked = 1 if prompt.rollout_arm == "baseline" else 0  # users hate the candidate
        promptops.feedback(format(span.context.trace_id, "032x"), "thumbs", liked)
    assert flush_feedback(60) and promptops.flush(timeout=60)

    url = promptops.get_settings().capture
    assert url is not None

    values = feedback_values(CaptureStore.open(url))
    assert len(values["thumbs"]) == 300
    state = read_rollout(registry.client, rollout_prompt)
    assert state is not None
    comparison = compare(
        state, CaptureStore.open(url).query(prompt=rollout_prompt), gates=["feedback.thumbs.mean noninferior 0.05"],
        feedback=values, min_calls=50,
    )  # fmt: skip
    assert comparison.verdict == "fail"
    assert comparison.metrics["feedback.thumbs.mean"].delta == -1.0


@contextlib.contextmanager
def provider_rollout(registry: Registry, name: str) -> Iterator[tuple[Any, Any]]:
    """A rollout of a candidate prompt three times as long as the baseline, to half the traffic; the local provider
    server and a real `openai` client for it."""
    import openai

    from promptops.provider_server import ProviderServer

    registry.register(name, "Summarize: {{text}}", alias="production")
    registry.register(
        name, "Summarize in detail, naming every figure and every person, then list open questions: {{text}}"
    )
    promptops.configure(tracking_uri=registry.uri, trace_exporter="none")
    start_rollout(registry.client, name, candidate=2, share=0.5)
    rollout_cache().refresh(name)
    with (
        ProviderServer() as server,
        openai.OpenAI(base_url=server.openai_url, api_key="test", max_retries=0) as client,
    ):
        yield server, client


def test_status_compares_tokens_and_cost_reported_by_the_real_openai_sdk(
    local_registry: Registry, prompt_name: str, tmp_path: Path
) -> None:
    """A candidate prompt three times as long costs more: the arms' tokens and cost come from the captures."""
    with provider_rollout(local_registry, prompt_name) as (server, client):

        @promptops.track(prompt=prompt_name, rollout_key="user")
        def reply(user: str, text: str, *, prompt: Prompt) -> object:
            return client.chat.completions.create(  # the response object: its usage is read, no record_usage()
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt.format(text=text)}]
            )

        for index in range(160):
            reply(f"user-{index}", "the third quarter's numbers")
        assert promptops.flush(timeout=60)
        served = (server.input_tokens, server.output_tokens)

    url = promptops.get_settings().capture
    assert url is not None
    state = read_rollout(local_registry.client, prompt_name)
    assert state is not None
    store = CaptureStore.open(url)
    try:
        comparison = compare(
            state, store.query(prompt=prompt_name), gates=["tokens.mean noninferior 10%"], min_calls=40, resamples=0
        )
    finally:
        store.close()
    usage = comparison.usage
    assert usage["baseline"].calls + usage["candidate"].calls == 160 == sum(comparison.calls.values())
    # Every token the server counted is in the arms' totals, and priced by the table: gpt-4o-mini $0.15/$0.60 per M.
    assert (
        usage["baseline"].input_tokens + usage["candidate"].input_tokens,
        usage["baseline"].output_tokens + usage["candidate"].output_tokens,
    ) == served
    for arm in ("baseline", "candidate"):
        expected = (usage[arm].input_tokens * 0.15 + usage[arm].output_tokens * 0.60) / 1e6
        assert usage[arm].cost == pytest.approx(expected, rel=1e-9) and usage[arm].unpriced_models == []
    tokens, cost = comparison.metrics["tokens.mean"], comparison.metrics["cost.mean"]
    assert tokens.candidate_mean is not None and tokens.baseline_mean is not None
    assert tokens.candidate_mean > tokens.baseline_mean + 10  # the longer prompt
    assert cost.delta is not None and cost.delta > 0
    assert tokens.baseline_mean == pytest.approx(
        (usage["baseline"].input_tokens + usage["baseline"].output_tokens) / usage["baseline"].calls
    )
    assert usage["candidate"].cost is not None
    assert cost.candidate_mean == pytest.approx(usage["candidate"].cost / usage["candidate"].calls)
    assert comparison.verdict == "fail"  # more than 10% more tokens per call, with evidence enough

    status = run(
        local_registry.uri, "rollout", "status", prompt_name, "--store", url, "--min-calls", "40",
        "--gate", "cost.mean noninferior 10%", "--report", str(tmp_path / "s.html"),
    )  # fmt: skip
    assert status.exit_code == 0, status.output
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    assert {"tokens.mean", "cost.mean"} <= set(rows)
    assert f"baseline: {usage['baseline'].input_tokens:,} in / {usage['baseline'].output_tokens:,} out tokens" in (
        status.stdout
    )
    assert "gate cost.mean noninferior 10%: FAIL" in status.stdout
    page = (tmp_path / "s.html").read_text()
    assert "tokens.mean" in page and f"{usage['candidate'].input_tokens:,} in" in page


def test_status_shows_tokens_per_arm_for_a_streamed_feature(local_registry: Registry, prompt_name: str) -> None:
    """A chat feature that streams (a tracked generator through the real `openai` SDK) has tokens and cost per arm."""
    with provider_rollout(local_registry, prompt_name) as (server, client):

        @promptops.track(prompt=prompt_name, rollout_key="user")
        def chat(user: str, text: str, *, prompt: Prompt) -> Iterator[str]:
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": prompt.format(text=text)}],
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if chunk.usage is not None:
                    promptops.record_usage(
                        input_tokens=chunk.usage.prompt_tokens,
                        output_tokens=chunk.usage.completion_tokens,
                        response_model=chunk.model,
                    )
                elif chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

        for index in range(120):
            assert "".join(chat(f"user-{index}", "the third quarter's numbers"))
        assert promptops.flush(timeout=60)
        served = (server.input_tokens, server.output_tokens)

    url = promptops.get_settings().capture
    assert url is not None
    status = run(local_registry.uri, "rollout", "status", prompt_name, "--store", url, "--min-calls", "30")
    assert status.exit_code == 0, status.output
    assert {"tokens.mean", "cost.mean"} <= {line.split()[0] for line in status.stdout.splitlines() if line.strip()}
    state = read_rollout(local_registry.client, prompt_name)
    assert state is not None
    store = CaptureStore.open(url)
    try:
        usage = compare(state, store.query(prompt=prompt_name), min_calls=30, resamples=0).usage
    finally:
        store.close()
    assert usage["baseline"].calls + usage["candidate"].calls == 120  # every streamed call kept its usage
    assert (
        usage["baseline"].input_tokens + usage["candidate"].input_tokens,
        usage["baseline"].output_tokens + usage["candidate"].output_tokens,
    ) == served  # what the server counted, split between the arms
    for arm in ("baseline", "candidate"):  # and the status line shows each arm's totals
        total = usage[arm]
        assert f"{arm}: {total.input_tokens:,} in / {total.output_tokens:,} out tokens in {total.calls:,} calls" in (
            status.stdout
        )
    assert (
        usage["candidate"].input_tokens / usage["candidate"].calls
        > usage["baseline"].input_tokens / usage["baseline"].calls
    )  # the longer prompt


def test_feedback_refuses_malformed_arguments() -> None:
    for args in (("", "thumbs", 1), ("abc", "no spaces", 1), ("abc", "thumbs", float("nan")), ("abc", "thumbs", "up")):
        with pytest.raises(ValueError, match="feedback"):
            feedback(*args)  # type: ignore[arg-type]


def test_a_forked_child_gives_and_flushes_feedback_while_the_parent_held_its_lock(rollout_prompt: str) -> None:
    from promptops.rollout import _feedback  # pyright: ignore[reportPrivateUsage]

    url = promptops.get_settings().capture
    assert url is not None
    with _feedback._lock:  # pyright: ignore[reportPrivateUsage] - the worker holds it a moment after each write
        pid = os.fork()
        if pid == 0:  # child: its exit-time flush waits for feedback, so a lock held forever would hang it
            code = 1
            try:
                promptops.feedback("0" * 32, "thumbs", 1)
                code = 0 if promptops.flush(timeout=30) else 3
            except BaseException:
                traceback.print_exc(file=sys.__stderr__)
            finally:
                os._exit(code)
    deadline = time.monotonic() + 60
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung giving or flushing feedback", pytrace=False)
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    assert feedback_values(CaptureStore.open(url)) == {"thumbs": {"0" * 32: 1.0}}
