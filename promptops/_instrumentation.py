"""Keep promptops' own background I/O out of the application's traces.

An application with OpenTelemetry auto-instrumentation (httpx, requests, SQLAlchemy) would otherwise see a span
for every registry read and capture write promptops makes, as orphan traces of their own (issue 12).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["suppress_instrumentation"]


def suppress_instrumentation() -> None:
    """Mark this thread's OpenTelemetry context so instrumentations skip what it does, for the thread's life.

    Only for threads promptops starts (the capture writer, registry fetches): the context is never detached.
    """
    try:
        from opentelemetry import context

        key: Any
        try:
            # Optional package (instrumentations bring it): imported by name so type checking does not need it.
            utils: Any = importlib.import_module("opentelemetry.instrumentation.utils")
            key = getattr(utils, "_SUPPRESS_INSTRUMENTATION_KEY", None)
        except ImportError:
            key = getattr(context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
        ctx = context.set_value("suppress_instrumentation", True)  # the key older instrumentations read
        if key is not None:
            ctx = context.set_value(key, True, ctx)
        context.attach(ctx)  # for the thread's whole life: never detached
    except Exception:  # pragma: no cover - no OpenTelemetry API: nothing to suppress
        pass
