"""One trace with MLflow's own tracing (issue 12): `@mlflow.trace`, `mlflow.start_span` and MLflow's autologging.

MLflow keeps its spans apart from OpenTelemetry's by default (`MLFLOW_USE_DEFAULT_TRACER_PROVIDER=true`): its own
`TracerProvider`, and its own runtime context (`mlflow.tracing.provider.mlflow_runtime_context`) instead of
OpenTelemetry's. A promptops span made with promptops' tracer inside an `@mlflow.trace` function therefore started
a second, unrelated trace, and an `@mlflow.trace` function inside a tracked call did the same. MLflow's exporter
also only exports spans its in-memory trace manager registered when they started, so a span of ours cannot simply
be a parent of MLflow's.

So promptops' span becomes an MLflow span (made by MLflow's tracer, registered by MLflow's span processor, exported
with the rest of the trace by MLflow's exporter) when:

* an MLflow span is current (a tracked function called inside `@mlflow.trace`, `mlflow.start_span` or an
  autologged LangChain run): promptops' span is its child;
* no span is current but the application has MLflow tracing running (MLflow's tracer provider is set up: after
  its first MLflow span, autologged call or `mlflow.tracing.enable()`), `trace_exporter` is `"mlflow"` and the
  application has no OpenTelemetry provider of its own: promptops' span is the root of an MLflow trace, so MLflow
  spans made inside the call (an `@mlflow.trace` helper, an autologged model call) are its children.

Either way the span is current in MLflow's context too (nested MLflow spans find it), carries MLflow's
`mlflow.spanInputs`/`mlflow.spanOutputs`/`mlflow.spanType` beside promptops' attributes, and the prompt version is
registered with MLflow's trace manager the way `mlflow.genai.load_prompt` registers it, so MLflow's exporter links
the trace to it (the prompt filter and the version's Traces tab find the trace). Prompts served from `fallback=`
(version 0) are not registered: no registry version made them.

Per call this costs one `sys.modules` look-up until MLflow's tracing is imported, then a context-variable read and
an attribute read; the MLflow path itself runs only inside MLflow's tracing, at MLflow's cost per span.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, SpanContext
from opentelemetry.util.types import Attributes, AttributeValue

from .. import tracing
from .._errors import log_internal_error

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Status, StatusCode

    from .._config import Settings
    from ..prompts import Prompt

__all__ = ["MlflowSpan", "mlflow_parent", "start_mlflow_span"]

_PROVIDER_MODULE = "mlflow.tracing.provider"
INPUTS = "promptops.inputs"
OUTPUT = "promptops.output"
MLFLOW_INPUTS = "mlflow.spanInputs"
MLFLOW_OUTPUTS = "mlflow.spanOutputs"
MLFLOW_SPAN_TYPE = "mlflow.spanType"
MLFLOW_REQUEST_ID = "mlflow.traceRequestId"
SCOPE = "promptops"

# (ContextVar behind MLflow's runtime context, MLflow's provider wrapper), bound once MLflow's tracing is imported;
# () when the installed MLflow has neither (then promptops keeps its own traces).
_bound: tuple[Any, Any] | tuple[()] | None = None
_root: Any = None  # an empty OpenTelemetry Context: "start a root MLflow span"
_modules = sys.modules


def _bind() -> tuple[Any, Any] | tuple[()]:
    global _bound, _root
    module = sys.modules[_PROVIDER_MODULE]
    runtime = getattr(module, "mlflow_runtime_context", None)
    variable = getattr(runtime, "_current_context", None)
    wrapper = getattr(module, "provider", None)
    if variable is None or wrapper is None or not hasattr(wrapper, "_isolated_tracer_provider"):
        _bound = ()  # an MLflow without the isolated runtime context: nothing to join
        return _bound
    from opentelemetry.context import Context

    _root = Context()
    _bound = (variable, wrapper)
    return _bound


def mlflow_parent(settings: Settings) -> Context | None:
    """The context to start promptops' span in as an MLflow span, or `None` for promptops' own tracer (cheap).

    Args:
        settings: The call's settings (a root span joins MLflow only with `trace_exporter="mlflow"`).

    Returns:
        MLflow's current context when an MLflow span is current; an empty context when the span should be the root
        of an MLflow trace; `None` otherwise, and always under `promptops.tracing.use_provider()` (tests).
    """
    bound = _bound
    if bound is None:
        if _PROVIDER_MODULE not in _modules:  # MLflow's tracing not imported: nothing to join
            return None
        bound = _bind()
    if not bound:
        return None
    variable, wrapper = bound
    context = variable.get()
    if context:
        span = trace_api.get_current_span(context)
        if span.is_recording() and tracing._override is None:  # pyright: ignore[reportPrivateUsage]
            return context
        return None
    provider = wrapper._isolated_tracer_provider
    if provider is None or tracing._override is not None:  # pyright: ignore[reportPrivateUsage]
        return None
    setup = tracing._setup  # pyright: ignore[reportPrivateUsage]
    if (
        settings.trace_exporter != "mlflow"
        or setup is None
        or setup.private is None  # the application's own provider, or none
        or isinstance(provider, trace_api.NoOpTracerProvider)  # mlflow.tracing.disable()
    ):
        return None
    return _root


def start_mlflow_span(
    context: Context, name: str, attributes: dict[str, Any], prompt: Prompt, *, current: bool
) -> MlflowSpan | None:
    """Start promptops' span as an MLflow span in `context`; `None` if MLflow did not register it.

    Args:
        context: From `mlflow_parent`.
        name: The span name.
        attributes: promptops' attributes (`promptops.inputs` becomes MLflow's span inputs too).
        prompt: The prompt serving the call: its version is registered for MLflow's prompt link.
        current: Make the span current in MLflow's context until it ends (not for streams, whose steps run in
            the consumer's context).

    Returns:
        The span, or `None` (then promptops' own tracer makes it).
    """
    from mlflow.entities.model_registry import PromptVersion
    from mlflow.tracing import provider as mlflow_provider
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from mlflow.tracing.utils import encode_span_id, get_otel_attribute

    provider: Any = mlflow_provider  # MLflow's private helpers, untyped

    tracer = provider._get_tracer(SCOPE)  # pyright: ignore[reportPrivateUsage]
    otel: Any = tracer.start_span(name, context=context, attributes=attributes)
    try:
        request_id: Any = get_otel_attribute(otel, MLFLOW_REQUEST_ID)
        manager = InMemoryTraceManager.get_instance()
        live = manager.get_span_from_id(request_id, encode_span_id(otel.context.span_id)) if request_id else None
        if live is None:  # MLflow did not register it (a halted trace, sampling): promptops traces the call
            otel.end()
            return None
        if (inputs := attributes.get(INPUTS)) is not None:
            otel.set_attribute(MLFLOW_INPUTS, inputs)  # JSON text already: what MLflow stores for span inputs
        if prompt.version > 0:
            version = PromptVersion(prompt.name, prompt.version, template=prompt.template)
            manager.register_prompt(request_id, version)
        token: object = provider.set_span_in_context(live) if current else None
    except Exception:
        otel.end()  # an MLflow span left open would hold its whole trace back from export
        log_internal_error("mlflow span start")
        return None
    return MlflowSpan(otel, token)


class MlflowSpan(Span):
    """promptops' span made by MLflow's tracer: MLflow's input/output/type attributes kept in step with ours."""

    __slots__ = ("_model", "_span", "_token")

    def __init__(self, span: Any, token: object) -> None:
        self._span = span
        self._token = token  # MLflow's context token, detached when the span ends
        self._model = False  # a gen_ai.* attribute was set: MLflow's type LLM, else CHAIN

    def _translated(self, key: str, value: Any) -> None:
        if key == OUTPUT:
            self._span.set_attribute(MLFLOW_OUTPUTS, value)
        elif key == INPUTS:
            self._span.set_attribute(MLFLOW_INPUTS, value)
        elif key.startswith("gen_ai."):
            self._model = True

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (and MLflow's counterpart, if it has one)."""
        self._span.set_attribute(key, value)
        self._translated(key, value)

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Set attributes (and MLflow's counterparts)."""
        self._span.set_attributes(attributes)
        for key, value in attributes.items():
            self._translated(key, value)

    def end(self, end_time: int | None = None) -> None:
        """Leave MLflow's context, set MLflow's span type, end the span (MLflow exports the trace at its root)."""
        token, self._token = self._token, None
        if token is not None:
            from mlflow.tracing import provider as mlflow_provider

            provider: Any = mlflow_provider  # MLflow's private helpers, untyped
            provider.detach_span_from_context(token)
        self._span.set_attribute(MLFLOW_SPAN_TYPE, '"LLM"' if self._model else '"CHAIN"')
        self._span.end(end_time)

    def get_span_context(self) -> SpanContext:
        """The span's context (its trace id is the MLflow trace's)."""
        return self._span.get_span_context()

    def is_recording(self) -> bool:
        """Whether the span records."""
        return bool(self._span.is_recording())

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        """Add an event (an exception, recorded by promptops)."""
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        """Link another span."""
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        """Rename the span."""
        self._span.update_name(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status (ERROR when the call raised)."""
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record an exception event."""
        self._span.record_exception(exception, attributes, timestamp, escaped)
