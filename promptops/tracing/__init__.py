"""Where promptops' spans go: the application's OpenTelemetry set-up if it has one, else our own exporter.

* `tracer()` is called by `@promptops.track` on every call: after the first call it costs two identity
  checks (the settings object, the global tracer provider). It returns `None` when tracing is off
  (`trace_exporter="none"` and no application provider), so the decorator skips span work entirely.
* If the application set a global `TracerProvider`, spans go there whatever `trace_exporter` says; promptops
  never replaces a user's OpenTelemetry set-up and never calls `trace.set_tracer_provider()`.
* Otherwise promptops builds a *private* `TracerProvider` with a bounded `BatchSpanProcessor` and the
  exporter `trace_exporter` names: `"mlflow"`, `"otlp"`, `"console"`. Nothing here imports the OpenTelemetry
  SDK, an exporter, httpx or MLflow until the first span is wanted; the MLflow exporter imports MLflow (for
  a non-HTTP store) in the export thread, never in the application's.

`flush()`, `shutdown()` and `stats()` are wired into `promptops.flush()`, `promptops.shutdown()` and
`promptops.stats()`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .. import _config  # pyright: ignore[reportPrivateUsage]
from .._version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

    from ._provider import Setup

__all__ = ["flush", "for_replay", "shutdown", "stats", "tracer", "use_provider"]

# The current set-up (settings it was made for, the global provider seen then, the tracer). One object,
# replaced atomically, so a reader never pairs a tracer with other settings.
_PROVIDER = __name__ + "._provider"
_setup: Setup | None = None
_trace_api: Any = None  # opentelemetry.trace, once imported
_override: tuple[Tracer | None] | None = None  # set by use_provider(): wins over everything else
# The tracer of the application's own global provider, when spans go there: those spans get their OpenInference
# attributes in the call (promptops' own exporters add them in the export thread instead). Set by `refresh()`.
_app_tracer: Tracer | None = None


def tracer() -> Tracer | None:
    """The tracer promptops' spans are made with, or `None` when tracing is off.

    Cheap on every call: the set-up is cached per settings object and rebuilt only when `configure()`
    replaced the settings or the application set its own global tracer provider since.

    Returns:
        A tracer of the application's global provider if it set one, else of promptops' private provider;
        `None` if `trace_exporter` is `"none"` (and the application has no provider).
    """
    setup = _setup
    if (
        setup is not None
        and setup.settings is _config.current
        and setup.global_provider is _trace_api._TRACER_PROVIDER  # an identity check: no env read
    ):
        return setup.tracer
    from ._provider import refresh

    return refresh()


@contextlib.contextmanager
def use_provider(provider: TracerProvider | None) -> Generator[None]:
    """Send promptops' spans to `provider` (or record none, with `None`) inside the block; for tests.

    Process-wide, and it wins over the application's global provider and `trace_exporter`. The previous
    routing is restored on exit (`promptops.testing.capture_spans()` is built on this).

    Args:
        provider: The tracer provider to use, or `None` for no spans at all.

    Yields:
        Nothing; spans made in the block go to `provider`.
    """
    global _override, _setup
    previous = _override
    _override = (provider.get_tracer("promptops", __version__) if provider is not None else None,)
    _setup = None  # the next tracer() call decides again
    try:
        yield
    finally:
        _override = previous
        _setup = None


@contextlib.contextmanager
def for_replay(experiment_name: str | None, *, to_mlflow: bool) -> Generator[bool]:
    """Where a replay's spans go inside the block (issue 12: never among the application's traces).

    Only promptops' own `"mlflow"` exporter is re-routed: with `to_mlflow`, the block's spans go to the
    experiment `experiment_name` of the same tracking store (through a provider of their own, drained before the
    block ends, at most `ATEXIT_MAX` seconds while it makes progress); without, nowhere. The application's own
    provider, a test's (`use_provider`), OTLP and the console keep receiving them. Process-wide, like
    `use_provider`: a call the process makes outside the replay meanwhile goes the same way.

    Args:
        experiment_name: The replay's experiment.
        to_mlflow: Whether the replay is logged to MLflow at all.

    Yields:
        Whether the block's spans go to `experiment_name`.
    """
    from ._provider import replay_routing

    with replay_routing(experiment_name, to_mlflow=to_mlflow) as routed:
        yield routed


def flush(timeout: float = 5.0) -> bool:
    """Export every span ended so far, waiting at most `timeout` seconds (even for a dead endpoint).

    Args:
        timeout: Seconds to wait at most.

    Returns:
        `True` if everything was handed to the exporter and the export calls returned in time.
    """
    provider = sys.modules.get(_PROVIDER)
    return provider.flush(timeout) if provider is not None else True  # no span made yet: nothing to flush


def shutdown(timeout: float = 5.0) -> bool:
    """Flush, then stop promptops' private exporter; the next span builds a new one.

    The application's own tracer provider, if it set one, is never shut down by promptops.

    Args:
        timeout: Seconds to wait at most, even when the endpoint is dead or never answers.

    Returns:
        `True` if everything finished within the deadline.
    """
    provider = sys.modules.get(_PROVIDER)
    return provider.shutdown(timeout) if provider is not None else True


def stats() -> dict[str, int]:
    """Span export counters of this process (monotonic; tests compare differences).

    Returns:
        `spans_exported` (accepted by the exporter), `spans_dropped` (export queue full, or ended after
        shutdown), `spans_failed` (in batches the exporter could not deliver), `export_failures` (such
        batches), `export_retries` (OTLP export attempts retried after a transient error, counted instead of
        logged, and batches the `mlflow` exporter sent again because a tracking server that timed out did not
        store them), `prompt_links` and `prompt_links_failed` (traces the `mlflow` exporter linked, or could not
        link, to their prompt versions), `spans_queued` (waiting for export now), `spans_exporting` (in
        the batch being exported now, which may be retrying against a failing endpoint) and
        `prompt_links_queued` (stored traces waiting for their prompt link: into a tracking server, links are
        sent after the spans, a few at a time).
    """
    provider = sys.modules.get(_PROVIDER)
    if provider is None:  # don't import the OpenTelemetry SDK just to say nothing happened
        from ._counters import NAMES

        return dict.fromkeys((*NAMES, "spans_queued", "spans_exporting", "prompt_links_queued"), 0)
    return provider.stats()
