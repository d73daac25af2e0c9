"""One OpenTelemetry span per tracked call: which prompt version produced which output.

`CallSpan` is built once per decorated function (names, parameter layout, static attributes) so a call only
fills in what varies. Everything here runs inside the user's call: a failure of ours is logged as an internal
error and the call goes on untraced; the user's exception is recorded (redacted) and re-raised untouched.
Attribute names are a contract (dashboards and tests rely on them): see `docs/tracing.md`.
"""

from __future__ import annotations

import time
import traceback
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from . import tracing as _tracing
from ._config import Settings, get_settings
from ._errors import log_internal_error
from ._usage import StreamUsage, report_usage, usage_sink
from .prompts import Prompt, replay_active

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "CallSpan",
    "StreamSpan",
    "activate",
    "joined_items",
    "prompt_identity_attributes",
    "record_usage",
    "value_attribute",
]

# Fixed attribute names.
FUNCTION = "promptops.function"
PROMPT_NAME = "promptops.prompt.name"
PROMPT_VERSION = "promptops.prompt.version"
PROMPT_ALIAS = "promptops.prompt.alias"
PROMPT_SOURCE = "promptops.prompt.source"
ROLLOUT_ID = "promptops.rollout.id"
ROLLOUT_ARM = "promptops.rollout.arm"
REPLAY = "promptops.replay"
INPUTS = "promptops.inputs"
OUTPUT = "promptops.output"
STREAM_ITEMS = "promptops.stream.items"
STREAM_FIRST_ITEM_MS = "promptops.stream.first_item_ms"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"  # issue 12; the name as opentelemetry-semantic-conventions has it
# Request parameters copied from the prompt version's model config, where it has them.
# OpenInference names (`tracing/_conventions.py` has them all; these few are set in the call, see `_openinference`).
OI_SPAN_KIND = "openinference.span.kind"
OI_INPUT_VALUE = "input.value"
OI_INPUT_MIME_TYPE = "input.mime_type"
OI_OUTPUT_VALUE = "output.value"
OI_OUTPUT_MIME_TYPE = "output.mime_type"
OI_TEMPLATE_VARIABLES = "llm.prompt_template.variables"
JSON_MIME_TYPE = "application/json"  # inputs and output are recorded as JSON text
_MODEL_CONFIG_ATTRIBUTES = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}

_otel: Any = None  # (trace, context, Status, StatusCode), imported on first traced call
# OpenTelemetry's current-context variable, its `Context` class and the span's key in it, when its runtime context is
# the default one (contextvars): `activate` and `_end` then set and reset the variable themselves. Eight Python calls
# less per traced call (~0.6 µs, issue 11) for what `context.attach(trace.set_span_in_context(span))` does.
_context_var: Any = None
_Context: Any = None
_span_key = ""


def _api() -> Any:
    global _otel, _mlflow_parent
    if _otel is None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode

        from .tracing._mlflow_tracing import mlflow_parent

        _bind_context(context)
        _mlflow_parent = mlflow_parent
        _otel = (trace, context, Status, StatusCode)
    return _otel


def _bind_context(context: Any) -> None:
    """Bind `_context_var` when OpenTelemetry keeps its context in a context variable (else the public API is used).

    Another runtime context (`OTEL_PYTHON_CONTEXT`, a vendor's) or another OpenTelemetry layout keeps the public
    `attach`/`detach`, which work with any.
    """
    global _context_var, _Context, _span_key
    from contextvars import ContextVar

    _context_var = None
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
        from opentelemetry.trace import propagation

        runtime = getattr(context, "_RUNTIME_CONTEXT", None)
        variable = getattr(runtime, "_current_context", None)
        key = getattr(propagation, "_SPAN_KEY", None)
        if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar) and isinstance(key, str):
            _context_var, _Context, _span_key = cast(Any, variable), context.Context, key
    except Exception:  # another layout: the public API
        pass


def _first_mlflow_parent(settings: Settings) -> Any:
    _api()  # binds `_mlflow_parent` to the real check
    return _mlflow_parent(settings)


_mlflow_parent: Callable[[Settings], Any] = _first_mlflow_parent


_values_cache: tuple[Settings | None, Callable[..., str] | None, Any] = (None, None, None)
_dumps_encoded: Callable[..., str] | None = None  # `_serialize.dumps_encoded`, imported with the serializer
_EncodedText: type[Any] | None = None  # `_serialize.EncodedText`, imported with the serializer


def _values(settings: Settings) -> tuple[Callable[..., str], Any]:
    """The serializer and this settings' redactor (imported on first use, cached per settings object)."""
    global _values_cache, _dumps_encoded, _EncodedText
    cached_settings, dumps, redactor = _values_cache
    if cached_settings is settings and dumps is not None:
        return dumps, redactor
    from ._redact import redactor_for
    from ._serialize import EncodedText, dumps_encoded, dumps_for_span

    _dumps_encoded, _EncodedText = dumps_encoded, EncodedText
    _values_cache = (settings, dumps_for_span, redactor_for(settings))
    return dumps_for_span, _values_cache[2]


def value_attribute(value: Any) -> str | None:
    """`value` as a span records it (JSON text, redacted, cut to `max_value_chars`); `None` when values are off.

    For spans promptops makes outside a tracked call: the replay's span of each call (issue 12), whose inputs
    and output MLflow shows as the trace's request and response.
    """
    settings = get_settings()
    return _value_text(settings, value, None) if settings.record_values else None


def _value_text(settings: Settings, value: Any, encoded: Any) -> str:
    """A value's span text: from its capture conversion when the call has one (`encoded`), else converted here.

    Plain data's capture text (`EncodedText`) is the span's text as it is: it was made within the span's limit.
    """
    if encoded is not None and type(encoded) is _EncodedText:
        return encoded.text
    dumps, redactor = _values(settings)
    if encoded is not None and _dumps_encoded is not None:
        return _dumps_encoded(encoded, max_chars=settings.max_value_chars)
    return dumps(value, max_chars=settings.max_value_chars, redactor=redactor)


_attributes_cache: dict[int, tuple[Prompt, dict[str, Any]]] = {}


def _prompt_attributes(prompt: Prompt) -> dict[str, Any]:
    """The span attributes a prompt contributes, as a fresh dict.

    Memoised per prompt object: the memory cache hands every call the same object, so a warm call copies a
    small dict instead of rebuilding it.
    """
    cached = _attributes_cache.get(id(prompt))
    if cached is not None and cached[0] is prompt:
        return dict(cached[1])
    attributes = _build_prompt_attributes(prompt)
    if len(_attributes_cache) >= 256:  # bounded: fallbacks and overrides make new objects now and then
        _attributes_cache.clear()
    _attributes_cache[id(prompt)] = (prompt, attributes)
    return dict(attributes)


def prompt_identity_attributes(prompt: Prompt) -> dict[str, Any]:
    """The attributes saying which prompt copy served a call: name, version, source and alias."""
    attributes: dict[str, Any] = {
        PROMPT_NAME: prompt.name,
        PROMPT_VERSION: prompt.version,
        PROMPT_SOURCE: prompt.source,
    }
    if prompt.alias is not None:
        attributes[PROMPT_ALIAS] = prompt.alias
    if prompt.rollout_arm is not None:  # a running rollout chose this copy (issue 14)
        attributes[ROLLOUT_ID] = prompt.rollout_id
        attributes[ROLLOUT_ARM] = prompt.rollout_arm
    return attributes


def _build_prompt_attributes(prompt: Prompt) -> dict[str, Any]:
    from .tracing._conventions import remember_prompt  # once per prompt copy: the export thread reads it

    remember_prompt(prompt)
    attributes = prompt_identity_attributes(prompt)
    config = prompt.model_config
    if config:
        model = config.get("model_name") or config.get("model")
        if isinstance(model, str):
            attributes[GEN_AI_REQUEST_MODEL] = model
        for key, attribute in _MODEL_CONFIG_ATTRIBUTES.items():
            value = config.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[attribute] = value
    return attributes


_openinference_cache: dict[int, tuple[Prompt, dict[str, Any]]] = {}


def _openinference(prompt: Prompt, attributes: dict[str, Any]) -> None:
    """Add the OpenInference attributes known at a call's start, for a span of the application's own provider.

    promptops' own exporters add them in the export thread (`tracing/_conventions.py`); an application's provider
    exports with its own exporters, so they are set on the span (issue 12): the prompt's part (span kind, model,
    template and version) is built once per prompt copy, the call adds its inputs under OpenInference's names, with
    their mime type and, for a registry version, as the template's variables (the output follows in `_set_output`).
    """
    cached = _openinference_cache.get(id(prompt))
    if cached is None or cached[0] is not prompt:
        from .tracing._conventions import openinference_static

        if len(_openinference_cache) >= 256:
            _openinference_cache.clear()
        cached = _openinference_cache[id(prompt)] = (prompt, openinference_static(prompt, _prompt_attributes(prompt)))
    attributes.update(cached[1])
    if (inputs := attributes.get(INPUTS)) is not None:
        attributes[OI_INPUT_VALUE] = inputs
        attributes[OI_INPUT_MIME_TYPE] = JSON_MIME_TYPE
        if prompt.version > 0:  # a registry version's template: the call's arguments are its variables
            attributes[OI_TEMPLATE_VARIABLES] = inputs


def _set_output(span: Span, text: str) -> None:
    """The output attribute, and its OpenInference twins while spans go to the application's own provider."""
    if _tracing._app_tracer is not None:  # pyright: ignore[reportPrivateUsage]
        span.set_attributes({OUTPUT: text, OI_OUTPUT_VALUE: text, OI_OUTPUT_MIME_TYPE: JSON_MIME_TYPE})
    else:
        span.set_attribute(OUTPUT, text)


class CallSpan:
    """How calls of one decorated function become spans."""

    __slots__ = ("arguments", "function", "name")

    def __init__(self, func: Callable[..., Any], name: str | None) -> None:
        from ._binding import CallArguments  # at decoration time, not at `import promptops`

        self.name = name or getattr(func, "__name__", "call")
        self.function = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', self.name)}"
        self.arguments = CallArguments(func)

    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any], *, bound: bool) -> dict[str, Any]:
        """The call's arguments by parameter name, without the receiver and the injected prompt."""
        return self.arguments(args, kwargs, bound)

    def masked(self, settings: Settings, args: tuple[Any, ...], kwargs: dict[str, Any], *, bound: bool) -> list[str]:
        """The argument values masked under a sensitive key, to mask where the call's exception repeats them."""
        try:
            return _values(settings)[1].masked_values(self.inputs(args, kwargs, bound=bound))
        except Exception:
            log_internal_error("span exception")
            return []

    def open(
        self,
        tracer: Tracer,
        prompt: Prompt,
        settings: Settings,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bound: bool = False,
        inputs: Any = None,
        current: bool = False,
    ) -> Span | None:
        """Start the call's span (child of the current one); `None` (the call goes on untraced) if that fails.

        `inputs`: the arguments as the capture `encode()`d them, when it did (one conversion for both). `current`:
        the caller makes the span current (`activate`; it is then current in MLflow's context too, when MLflow's
        tracing makes it: `tracing/_mlflow_tracing.py`). Positional parameters: this runs on every traced call,
        and a call with keywords costs more.
        """
        try:
            attributes = _prompt_attributes(prompt)
            attributes[FUNCTION] = self.function
            if replay_active.get():  # present only under replay: one attribute less on every production span
                attributes[REPLAY] = True
            if settings.record_values:
                attributes[INPUTS] = _value_text(
                    settings, None if inputs is not None else self.inputs(args, kwargs, bound=bound), inputs
                )
            if tracer is _tracing._app_tracer:  # pyright: ignore[reportPrivateUsage]
                _openinference(prompt, attributes)  # the application's exporters will not add them
            if (parent := _mlflow_parent(settings)) is not None:  # inside MLflow's own tracing: one trace (issue 12)
                from .tracing._mlflow_tracing import start_mlflow_span

                span = start_mlflow_span(parent, self.name, attributes, prompt, current=current)
                if span is not None:
                    return span
            return tracer.start_span(self.name, attributes=attributes)
        except Exception:
            log_internal_error("span start")
            return None

    @staticmethod
    def finish(span: Span, token: object, settings: Settings, output: Any, encoded: Any = None) -> None:
        """Record the output (from its capture conversion `encoded`, if any), restore the context, end the span.

        `token`: what `activate(span)` returned.
        """
        try:
            if settings.record_values:
                _set_output(span, _value_text(settings, output, encoded))
        except Exception:
            log_internal_error("span output")
        _end(span, token)

    @staticmethod
    def fail(
        span: Span, token: object, settings: Settings, exc: BaseException, masked: list[str] | None = None
    ) -> None:
        """Record the exception (redacted, `masked` values too) with status ERROR, restore the context, end."""
        try:
            record_exception(span, settings, exc, masked or ())
        except Exception:
            log_internal_error("span exception")
        _end(span, token)


def activate(span: Span) -> object | None:
    """Make `span` current; the token to hand `CallSpan.finish`/`fail`, or `None` (the span is ended) on failure."""
    try:
        trace, context, _, _ = _otel or _api()
        variable = _context_var
        if variable is not None:  # what `context.attach(trace.set_span_in_context(span))` does, in C calls
            values = variable.get().copy()
            values[_span_key] = span
            return variable.set(_Context(values))
        return context.attach(trace.set_span_in_context(span))
    except Exception:
        log_internal_error("span context")
        span.end()
        return None


def _end(span: Span, token: object) -> None:
    try:
        if _context_var is not None:
            _context_var.reset(token)
        else:
            _otel[1].detach(token)  # `activate` imported it
    except Exception:
        log_internal_error("span context")
    try:
        span.end()
    except Exception:
        log_internal_error("span end")


def record_exception(span: Span, settings: Settings, exc: BaseException, masked: Iterable[str] = ()) -> None:
    """Status ERROR and an `exception` event whose message and stack trace went through redaction.

    `masked`: argument values masked under a sensitive key (`CallSpan.masked`), masked in the message too. The
    message and stack trace are cut to `max_value_chars` before they are redacted (issue 11).
    """
    from ._serialize import bounded_text

    _, _, Status, StatusCode = _api()
    _, redactor = _values(settings)
    masked = tuple(masked)
    limit = settings.max_value_chars
    message = bounded_text(_safe_str(exc), limit, redactor, masked)
    stacktrace = bounded_text(
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), limit, redactor, masked
    )
    kind = (
        f"{type(exc).__module__}.{type(exc).__qualname__}"
        if type(exc).__module__ != "builtins"
        else type(exc).__qualname__
    )
    span.add_event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": message,
            "exception.stacktrace": stacktrace,
            "exception.escaped": True,
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {message}"))


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"


def joined_items(items: list[Any]) -> Any:
    """A stream's output as recorded: its items concatenated when they are all strings, else the list of them.

    Spans, capture records and replay (which joins a replayed stream the same way, so outputs compare) use it.
    """
    return "".join(items) if items and all(isinstance(item, str) for item in items) else items


class StreamSpan:
    """One generator call: its span (if traced) stays open until the stream is exhausted, closed or collected.

    Ends exactly once. Keeps the joined output (strings concatenated, anything else as a list; bounded by
    the larger of `max_value_chars` and, when captured, `capture_max_value_chars`), the item count and the time to the first item, for the span and for `on_end` (capture).
    A `weakref.finalize` on the wrapping generator ends it when an abandoned stream is garbage-collected, even
    one never started (whose `finally` would never run).
    """

    __slots__ = (
        "__weakref__",
        "_done",
        "_first_ns",
        "_items",
        "_keep",
        "_limit",
        "_parts",
        "_size",
        "_start_ns",
        "convert",
        "inputs",
        "last",
        "on_end",
        "settings",
        "sink",
        "span",
        "token_context",
    )

    def __init__(
        self,
        span: Span | None,
        settings: Settings,
        context: Context | None,
        on_end: Callable[[Any, Any, BaseException | None, int, int | None, int], None] | None = None,
        convert: Callable[[Any], Any] | None = None,
    ) -> None:
        self.span = span
        self.settings = settings
        self.token_context = context  # the context with this span current, attached around each step
        self.on_end = on_end  # (output, converted output or None, exception, started_ns, first_item_ns, ended_ns)
        self.convert = convert  # the capture's conversion of the output, shared with the span (issue 11)
        self._start_ns = time.perf_counter_ns()
        self._first_ns: int | None = None
        self._items = 0
        self._parts: list[Any] = []
        self._size = 0
        self._keep = on_end is not None or (span is not None and settings.record_values)
        # Kept up to what a capture record stores, not a span (issue 10: a long stream was cut at the span's
        # limit, silently). Past the limit `encode` cuts the output and marks it; parts beyond 10x the limit
        # are not even kept (memory), and the marker's count then leaves them out.
        limit = settings.max_value_chars
        if on_end is not None and settings.capture is not None:
            limit = max(limit, settings.capture_max_value_chars)
        self._limit = limit * 10
        self._done = False
        self.inputs: tuple[CallSpan, tuple[Any, ...], dict[str, Any], bool] | None = None  # for `masked` on error
        self.sink: StreamUsage | None = None  # a captured stream's usage sink, set around each step (issue 14)
        self.last: Any = None  # the last item: an OpenAI stream's final chunk carries the usage

    @classmethod
    def start(
        cls,
        tracer: Tracer | None,
        call: CallSpan,
        prompt: Prompt,
        settings: Settings,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        bound: bool,
        inputs: Any = None,
        on_end: Callable[[Any, Any, BaseException | None, int, int | None, int], None] | None = None,
        convert: Callable[[Any], Any] | None = None,
    ) -> StreamSpan | None:
        """Start the span (if `tracer`) without making it current: each step attaches it. `None` on failure.

        `inputs`: the arguments as the capture converted them, if it did; `convert`: the capture's conversion of the
        output (`None` when the record needs none now), whose result the span records too and `on_end` receives.
        """
        span = (
            call.open(tracer, prompt, settings, args, kwargs, bound=bound, inputs=inputs)
            if tracer is not None
            else None
        )
        try:
            context = _api()[0].set_span_in_context(span) if span is not None else None
            stream = cls(span, settings, context, on_end, convert)
            stream.inputs = (call, args, kwargs, bound)
            return stream
        except Exception:
            log_internal_error("stream span")
            if span is not None:
                span.end()
            return None

    def attach(self) -> object:
        """Make the span current for one step of the stream."""
        return _api()[1].attach(self.token_context) if self.token_context is not None else None

    def detach(self, token: object) -> None:
        """Undo `attach` after the step."""
        if token is None:
            return
        try:
            _api()[1].detach(token)
        except Exception:
            log_internal_error("stream span context")

    def item(self, value: Any) -> None:
        """Count one item and keep it for the joined output (bounded: see `__init__`)."""
        self._items += 1
        self.last = value
        if self._first_ns is None:
            self._first_ns = time.perf_counter_ns()
        if self._keep and self._size <= self._limit:
            self._parts.append(value)
            self._size += len(value) if isinstance(value, str) else 16

    def end(self, exc: BaseException | None = None) -> None:
        """End once: the span gets the joined output, item count and time to first item; then `on_end`."""
        if self._done:
            return
        self._done = True
        ended_ns = time.perf_counter_ns()
        parts = self._parts
        output = joined_items(parts)
        encoded = None
        if self.convert is not None and exc is None:
            try:
                encoded = self.convert(output)
            except Exception:
                log_internal_error("stream capture")
        span = self.span
        if span is not None:
            try:
                span.set_attribute(STREAM_ITEMS, self._items)
                if self._first_ns is not None:
                    span.set_attribute(STREAM_FIRST_ITEM_MS, (self._first_ns - self._start_ns) / 1e6)
                if self.settings.record_values:
                    _set_output(span, _value_text(self.settings, output, encoded))
                if exc is not None:
                    inputs = self.inputs
                    masked = inputs[0].masked(self.settings, *inputs[1:3], bound=inputs[3]) if inputs else []
                    record_exception(span, self.settings, exc, masked)
            except Exception:
                log_internal_error("stream span end")
            try:
                span.end()
            except Exception:
                log_internal_error("span end")
        if self.on_end is not None:
            try:
                self.on_end(output, encoded, exc, self._start_ns, self._first_ns, ended_ns)
            except Exception:
                log_internal_error("stream capture")

    def guard(self, owner: object) -> None:
        """End when `owner` (the wrapping generator) is garbage-collected unfinished."""
        weakref.finalize(owner, self.end)


def record_usage(
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    model: str | None = None,
    response_model: str | None = None,
    operation: str | None = None,
    finish_reasons: list[str] | None = None,
    provider: str | None = None,
) -> None:
    """Report what the model call inside a tracked function used, as OpenTelemetry GenAI attributes.

    Sets `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`, `gen_ai.request.model`,
    `gen_ai.response.model`, `gen_ai.operation.name`, `gen_ai.response.finish_reasons` and
    `gen_ai.provider.name` on the current span (the tracked call's). The tokens, the model (`response_model`,
    else `model`) and the provider are also kept with the call's capture record, where `promptops rollout
    status` compares the arms' tokens and cost, and during a replay they count towards the call's `tokens` and
    `cost` metrics. Report each model call once (a call's reports are summed). Does nothing outside a traced,
    captured or replayed call. Never raises.

    ```python
    @promptops.track(prompt="summarize")
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        reply = client.chat(prompt.format(text=text))
        promptops.record_usage(input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens)
        return reply.text
    ```

    Args:
        input_tokens: Tokens in the request.
        output_tokens: Tokens generated.
        model: The model asked for (`gen_ai.request.model`).
        response_model: The model that answered (`gen_ai.response.model`).
        operation: The GenAI operation, e.g. `"chat"` or `"text_completion"`.
        finish_reasons: Why generation stopped, e.g. `["stop"]`.
        provider: Who served the model, e.g. `"openai"` or `"anthropic"` (`gen_ai.provider.name`).
    """
    try:
        if usage_sink.get() is not None:  # a replay or the call's capture record counts its tokens (issues 13, 14)
            report_usage(input_tokens, output_tokens, response_model or model, provider)
        if _otel is None:
            return  # nothing was ever traced in this process
        span = _otel[0].get_current_span()
        if not span.is_recording():
            return
        values = {
            GEN_AI_INPUT_TOKENS: input_tokens,
            GEN_AI_OUTPUT_TOKENS: output_tokens,
            GEN_AI_REQUEST_MODEL: model,
            GEN_AI_RESPONSE_MODEL: response_model,
            GEN_AI_OPERATION: operation,
            GEN_AI_FINISH_REASONS: list(finish_reasons) if finish_reasons is not None else None,
            GEN_AI_PROVIDER_NAME: provider,
        }
        if _tracing._app_tracer is not None and OI_SPAN_KIND in getattr(span, "attributes", ()):  # pyright: ignore[reportPrivateUsage]
            from .tracing._conventions import openinference_attributes

            values.update(openinference_attributes({**values, OI_SPAN_KIND: "LLM"}), **{OI_SPAN_KIND: "LLM"})
        span.set_attributes({key: value for key, value in values.items() if value is not None})
    except Exception:
        log_internal_error("record_usage")
