"""The helpers promptops offers for users' own tests."""

from __future__ import annotations

import promptops
from promptops.testing import SpanCapture


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
