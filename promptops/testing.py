"""Helpers for testing code that uses promptops: see the spans your tracked functions record; an offline model.

```python
from promptops.testing import capture_spans

with capture_spans() as spans:
    summarize("some text")
assert spans.finished()[0].attributes["promptops.prompt.version"] == 3
```

The pytest plugin (installed with promptops) offers the same as the `promptops_spans` fixture, with the test's
captures kept in a temporary store and nothing exported to MLflow (`isolated()`).

`OfflineModel` is a deterministic stand-in for an LLM that reads its prompt (length, format, tone), with seeded
nondeterminism: the demo, the replay benchmarks and your own tests can run without a provider.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ._offline_model import OfflineModel, PromptInput, PromptReading

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["OfflineModel", "PromptInput", "PromptReading", "SpanCapture", "capture_spans", "isolated"]


class SpanCapture:
    """The spans promptops recorded inside a `capture_spans()` block, through the real OpenTelemetry SDK."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        """Read spans from `exporter` (made by `capture_spans()`)."""
        self.exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        """Spans ended so far, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def clear(self) -> None:
        """Forget the spans recorded so far."""
        self.exporter.clear()

    def dump(self) -> list[dict[str, Any]]:
        """Every span as plain data: name, attributes, status and events (handy for asserting what leaked)."""
        return [
            {
                "name": span.name,
                "attributes": {key: _plain(value) for key, value in (span.attributes or {}).items()},
                "status": {"code": span.status.status_code.name, "description": span.status.description},
                "events": [
                    {"name": event.name, "attributes": {k: _plain(v) for k, v in (event.attributes or {}).items()}}
                    for event in span.events
                ],
            }
            for span in self.finished()
        ]

    @contextlib.contextmanager
    def disabled(self) -> Generator[None]:
        """Inside the block, promptops records no spans (as with `trace_exporter="none"`)."""
        from .tracing import use_provider

        with use_provider(None):
            yield


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        items: tuple[Any, ...] = value  # pyright: ignore[reportUnknownVariableType]
        return list(items)
    return value


@contextlib.contextmanager
def isolated(directory: str | os.PathLike[str]) -> Generator[None]:
    """Keep the block's tracked calls out of production data: captures go to `directory`, traces nowhere.

    Inside the block capture writes to `directory/captures.db` and the `mlflow` exporter is off
    (`trace_exporter="none"`; `capture_spans()` still sees every span); a `configure()` inside the block wins.
    Afterwards the configuration is what it was. The pytest plugin's fixtures use it with the test's
    `tmp_path` (issue 12: a test's calls had been captured into the project's `.promptops/captures.db`).

    ```python
    import tempfile
    from promptops.testing import isolated

    with tempfile.TemporaryDirectory() as directory, isolated(directory):
        promptops.get_settings().capture  # sqlite:///.../captures.db inside directory
    ```

    Args:
        directory: Where the temporary capture store lives (the caller removes it).

    Yields:
        Nothing.
    """
    from . import _config, capture  # pyright: ignore[reportPrivateUsage]

    os.makedirs(directory, exist_ok=True)
    url = "sqlite:///" + os.path.join(os.path.abspath(directory), "captures.db")
    with _config.overridden(capture=url, trace_exporter="none"):
        try:
            yield
        finally:
            capture.flush(timeout=10.0)  # the block's records land in its store, not in the one restored next


@contextlib.contextmanager
def capture_spans() -> Generator[SpanCapture]:
    """Send promptops' spans to an in-memory exporter for the duration of the block.

    Spans are exported synchronously, so they are visible as soon as they end. Whatever provider promptops
    used before (the application's or its own) is restored afterwards.

    Yields:
        A `SpanCapture` to read the spans from.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .tracing import use_provider

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with use_provider(provider):
            yield SpanCapture(exporter)
    finally:
        provider.shutdown()
