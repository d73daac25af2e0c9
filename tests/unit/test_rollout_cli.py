"""`promptops rollout ...` against the real sqlite MLflow registry."""

from __future__ import annotations

import pytest

from promptops.rollout import read_rollout
from tests.conftest import Registry
from tests.unit.test_cli import assert_usage_error, run


@pytest.fixture
def two_versions(registry: Registry, prompt_name: str) -> str:
    registry.register(prompt_name, "v1 {{text}}", alias="production")
    registry.register(prompt_name, "v2 {{text}}")
    return prompt_name


def test_start_set_share_status_list_rollback(registry: Registry, two_versions: str) -> None:
    name = two_versions
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


def test_promote_moves_the_alias(registry: Registry, two_versions: str) -> None:
    assert run(registry.uri, "rollout", "start", two_versions, "--candidate", "2").exit_code == 0
    result = run(registry.uri, "rollout", "promote", two_versions)
    assert result.exit_code == 0, result.output
    assert int(registry.client.get_prompt_version_by_alias(two_versions, "production").version) == 2


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
    registry: Registry, two_versions: str, args: tuple[str, ...], fragments
) -> None:
    result = run(registry.uri, "rollout", *(arg.format(name=two_versions) for arg in args))
    assert_usage_error(result, *fragments)


def test_a_second_start_is_refused(registry: Registry, two_versions: str) -> None:
    assert run(registry.uri, "rollout", "start", two_versions, "--candidate", "2").exit_code == 0
    assert_usage_error(run(registry.uri, "rollout", "start", two_versions, "--candidate", "2"), "already running")
