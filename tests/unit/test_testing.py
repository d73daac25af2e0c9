"""The helpers promptops offers for users' own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptops
from promptops.testing import SpanCapture, isolated
from tests.conftest import Registry


def test_pytest_fixture_is_registered_by_the_plugin(promptops_spans: SpanCapture) -> None:
    @promptops.track(prompt="greeting", fallback="Hello {{ who }}")
    def greet(who: str, *, prompt: promptops.Prompt) -> str:
        return str(prompt.format(who=who))

    assert greet("Ada") == "Hello Ada"
    (span,) = promptops_spans.finished()
    assert span.attributes is not None
    assert span.attributes["promptops.prompt.source"] == "fallback"
    assert span.attributes["promptops.output"] == '"Hello Ada"'
    assert promptops_spans.dump()[0]["status"] == {"code": "UNSET", "description": None}
    promptops_spans.clear()
    assert promptops_spans.finished() == []


def test_fixture_keeps_the_test_out_of_production_data(pytester: pytest.Pytester, registry: Registry) -> None:
    # Issue 12: a test using `promptops_spans` wrote its calls into the project's .promptops/captures.db (and
    # its traces into ./mlflow.db), so test traffic fed later replays. Run such a test as a user would.
    registry.register("isolated-prompt", "Hello {{ who }}", alias="production")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        f"""
        import promptops

        def test_user(promptops_spans, tmp_path):
            promptops.configure(tracking_uri={registry.uri!r})

            @promptops.track(prompt="isolated-prompt")
            def greet(who, *, prompt):
                return prompt.format(who=who)

            assert greet("Ada") == "Hello Ada"
            assert len(promptops_spans.finished()) == 1
            assert promptops.flush(10)
            settings = promptops.get_settings()
            assert settings.trace_exporter == "none"
            assert settings.capture == "sqlite:///" + str(tmp_path / "promptops" / "captures.db")
            from promptops.capture import CaptureStore

            assert len(list(CaptureStore.open(settings.capture).query())) == 1  # captured, into the test's store
        """
    )
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1)
    project = pytester.path
    assert not (project / ".promptops" / "captures.db").exists()
    assert not (project / "mlflow.db").exists()
    assert promptops.get_settings().capture == "sqlite:///" + str(project / ".promptops" / "captures.db")


def test_isolated_restores_the_configuration(tmp_path: Path) -> None:
    promptops.configure(capture="sqlite:///" + str(tmp_path / "mine.db"), trace_exporter="console")
    with isolated(tmp_path / "test-store"):
        inside = promptops.get_settings()
        assert (inside.capture, inside.trace_exporter) == (
            "sqlite:///" + str(tmp_path / "test-store" / "captures.db"),
            "none",
        )
        promptops.configure(sample_rate=0.5)  # a configure() inside the block wins there ...
        assert promptops.get_settings().sample_rate == 0.5
    after = promptops.get_settings()  # ... and is forgotten with the block
    assert (after.capture, after.trace_exporter, after.sample_rate) == (
        "sqlite:///" + str(tmp_path / "mine.db"),
        "console",
        1.0,
    )
