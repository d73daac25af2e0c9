"""`promptops rollout ...` against the real sqlite MLflow registry."""

from __future__ import annotations

import pytest

from promptops.rollout import read_rollout
from tests.conftest import Registry
from tests.unit.test_cli import assert_usage_error, run


def test_start_set_share_status_list_rollback(registry: Registry, rollout_prompt: str) -> None:
    name = rollout_prompt
    result = run(registry.uri, "rollout", "start", name, "--candidate", "2", "--share", "0.3", "--key", "user_id")
    assert result.exit_code == 0, result.output
    assert "candidate version 2 at share 0.3" in result.stdout
    assert read_rollout(registry.client, name).key == "user_id"  # type: ignore[union-attr]

    assert run(registry.uri, "rollout", "set-share", name, "60%").exit_code == 0
    assert read_rollout(registry.client, name).share == 0.6  # type: ignore[union-attr]

    status = run(registry.uri, "rollout", "status", name)
    assert status.exit_code == 0 and "running" in status.stdout and "share 0.6" in status.stdout
    listed = run(registry.uri, "rollout", "list")
    assert listed.exit_code == 0 and name in listed.stdout

    result = run(registry.uri, "rollout", "rollback", name)
    assert result.exit_code == 0, result.output
    assert read_rollout(registry.client, name).status == "rolled_back"  # type: ignore[union-attr]
    assert int(registry.client.get_prompt_version_by_alias(name, "production").version) == 1


def test_promote_moves_the_alias(registry: Registry, rollout_prompt: str) -> None:
    assert run(registry.uri, "rollout", "start", rollout_prompt, "--candidate", "2").exit_code == 0
    result = run(registry.uri, "rollout", "promote", rollout_prompt)
    assert result.exit_code == 0, result.output
    assert int(registry.client.get_prompt_version_by_alias(rollout_prompt, "production").version) == 2


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("start", "{name}", "--candidate", "7"), ("no version 7",)),
        (("start", "{name}", "--candidate", "2", "--share", "1.2"), ("outside 0..1",)),
        (("start", "{name}", "--candidate", "2", "--share", "half"), ("not a number",)),
        (("start", "{name}", "--candidate", "two"), ("not a version number",)),
        (("start", "no-such-prompt-x", "--candidate", "2"), ("no prompt 'no-such-prompt-x'",)),
        (("set-share", "{name}", "0.5"), ("no rollout", "is running")),
        (("promote", "{name}"), ("no rollout",)),
        (("status", "{name}"), ("never had a rollout",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    registry: Registry, rollout_prompt: str, args: tuple[str, ...], fragments
) -> None:
    result = run(registry.uri, "rollout", *(arg.format(name=rollout_prompt) for arg in args))
    assert_usage_error(result, *fragments)


def test_a_second_start_is_refused(registry: Registry, rollout_prompt: str) -> None:
    assert run(registry.uri, "rollout", "start", rollout_prompt, "--candidate", "2").exit_code == 0
    assert_usage_error(run(registry.uri, "rollout", "start", rollout_prompt, "--candidate", "2"), "already running")


def test_registry_text_is_printed_with_escapes(registry: Registry, rollout_prompt: str) -> None:
    # Anyone who can write the prompt's tags chooses this text: it must not drive the terminal. (An OSC sequence
    # and a bidi override: click strips only CSI sequences from output that is not a terminal.)
    hostile = "\x1b]0;owned\x07\u202e"
    assert run(registry.uri, "rollout", "start", rollout_prompt, "--candidate", "2", "--key", "user").exit_code == 0
    registry.client.set_prompt_tag(rollout_prompt, "promptops.rollout.baseline", "production" + hostile)
    for args in (
        ("status", rollout_prompt),
        ("list",),
        ("set-share", rollout_prompt, "0.2"),
        ("rollback", rollout_prompt),
    ):
        result = run(registry.uri, "rollout", *args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output and "\u202e" not in result.output
        assert "production\\x1b]0;owned\\x07\\u202e" in result.stdout
