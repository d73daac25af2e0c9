"""`CallCapture`: what `@promptops.track` calls for each call to have it captured. The hot path.

Built once per decorated function (its `module:qualname`, how its arguments bind, its tags, its own
`capture=`/`sample_rate=`). `admit()` decides, before touching any value, whether the call is captured at
all (capture configured, enabled for the function, sampled in, not a replay); `hand_over()` then only queues
it. `submit()` (a finished call's arguments) and `submit_inputs()` (inputs already by name) are the two
together; `@track` calls them separately, admitting at the start of the call.

Deferred versus immediate conversion: when every argument and the output are immutable scalars (`str`,
`int`, `float`, `bool`, `None`, `bytes`, or tuples of these), the values are queued as they are and the
writer thread serialises and redacts them later: they cannot change meanwhile, and the caller saves the
conversion. Any other value (a list, a dict, a model, a dataclass) could be mutated by the application after
the call, so it is converted and redacted right away, in the caller's thread. A tracked call converts such
inputs once, at its start, for its span and its record alike (issue 11: they were converted twice), so the
record holds the inputs the function was called with; its output is converted when it returns.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import _config  # pyright: ignore[reportPrivateUsage]
from .._config import get_settings
from .._errors import log_internal_error
from .._usage import Usage
from ..prompts import Prompt, replay_active
from . import _writer  # pyright: ignore[reportPrivateUsage]

__all__ = ["DEFERRED", "CallCapture"]

_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
_random = random.random
_time_ns = time.time_ns
DEFERRED: Any = ({}, None)
"""`hand_over(inputs=DEFERRED)`: the caller checked that the arguments are immutable (`deferrable()`)."""
_encode_tools: Any = None  # (redactor_for, encode, encode_plain), imported on the first value converted on the hot path
_EncodedText: Any = None  # `_serialize.EncodedText`, imported with them
_NO_KWARGS: dict[str, Any] = {}  # never written to: the keyword arguments of a record whose inputs are converted


def _immutable(value: Any) -> bool:
    kind: type[Any] = type(value)  # pyright: ignore[reportUnknownVariableType]
    if kind in _IMMUTABLE or kind is Prompt:
        return True
    if kind is tuple:
        return all(type(item) in _IMMUTABLE for item in value)
    return False


def _error_info(error: BaseException) -> tuple[str, str]:
    kind = type(error)
    module = getattr(kind, "__module__", "builtins")
    name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    try:
        message = str(error)
    except Exception:
        message = f"<unprintable {kind.__qualname__}>"
    return name, message


def _span_ids(span: Any) -> tuple[int, int] | None:
    """`(trace_id, span_id)` of an OpenTelemetry `Span` or `SpanContext`, or `None` when not valid."""
    try:
        get = getattr(span, "get_span_context", None)
        context = get() if get is not None else span
        return (context.trace_id, context.span_id) if getattr(context, "is_valid", False) else None
    except Exception:
        return None


def _named_inputs(**inputs: Any) -> None:
    """The stand-in signature of `CallCapture.named()` captures (their inputs arrive already by name)."""


class CallCapture:
    """Captures the calls of one tracked function into the capture store.

    Args:
        func: The decorated function (the plain function for methods: its `self`/`cls` is never captured).
        enabled: `False` (`track(capture=False)`) opts the function out.
        sample_rate: Fraction of this function's calls captured; `None` uses the `sample_rate` setting.
        tags: Stored with every record of this function.
    """

    __slots__ = ("_arguments", "_cached", "_drop_first", "enabled", "function", "sample_rate", "tags")

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        enabled: bool = True,
        sample_rate: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from .._binding import CallArguments

        name = getattr(func, "__name__", "call")
        self.function = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', name)}"
        self.enabled = enabled
        if sample_rate is not None and not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.tags: dict[str, str] = {str(key): str(value) for key, value in (tags or {}).items()}
        self._arguments = CallArguments(func)
        self._drop_first = self._arguments.drop_first
        self._cached: tuple[Any, Any] = (None, None)  # (settings, writer) last used

    @classmethod
    def named(
        cls,
        function: str,
        *,
        enabled: bool = True,
        sample_rate: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> CallCapture:
        """A capture for calls that are not a decorated function's (a LangChain chain run, say).

        Its records carry `function` as their function name; submit them with `submit_inputs()`.

        Args:
            function: The `function` of its records (what `datasets.from_captures(function=...)` and replay's
                target lookup match), e.g. `"langchain:summarize"`.
            enabled: `False` opts these calls out.
            sample_rate: Fraction of the calls captured; `None` uses the `sample_rate` setting.
            tags: Stored with every record.

        Returns:
            The capture.
        """
        capture = cls(_named_inputs, enabled=enabled, sample_rate=sample_rate, tags=tags)
        capture.function = function
        return capture

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool) -> dict[str, Any]:
        """The call's arguments by parameter name, without `self`/`cls` and the injected `prompt`. Never raises."""
        return self._arguments(args, kwargs, bound)

    def admit(self, settings: _config.Settings) -> _writer.Writer | None:
        """The writer to hand a call to if the call is captured, else `None`. Never raises.

        Captured: enabled for this function, capture configured, sampled in (the sample is drawn here, once per
        call) and not a replay. Decided before any value is touched.
        """
        try:
            if not self.enabled or settings.capture is None:
                return None
            rate = self.sample_rate if self.sample_rate is not None else settings.sample_rate
            if (rate < 1.0 and not _random() < rate) or replay_active.get():
                return None
            cached_settings, writer = self._cached
            if cached_settings is not settings or not writer.alive:
                writer = _writer.writer_for(settings)
                self._cached = (settings, writer)
            return writer
        except Exception:
            log_internal_error("capture")
            return None

    def deferrable(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool) -> bool:
        """Whether every argument is immutable, so the writer thread can convert them later (see the module doc)."""
        immutable = _IMMUTABLE
        for value in args:
            if type(value) not in immutable and not _immutable(value):
                # The receiver of a method called through its class is not recorded: it does not count.
                if not (self._drop_first and not bound and value is args[0]):
                    return False
        for value in kwargs.values():
            if type(value) not in immutable and not _immutable(value):
                return False
        return True

    @staticmethod
    def immutable(value: Any) -> bool:
        """Whether the writer thread may convert `value` later (an immutable scalar, or a tuple of them)."""
        return type(value) in _IMMUTABLE or _immutable(value)

    def submit(
        self,
        prompt: Prompt,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        bound: bool,
        output: Any = None,
        error: BaseException | None = None,
        started_ns: int,
        ended_ns: int,
        first_item_ns: int | None = None,
        span_context: Any = None,
    ) -> None:
        """Queue one finished call for capture. Never raises, never blocks; returns at once when not captured.

        Args:
            prompt: The prompt the call used.
            args: The call's positional arguments (the `prompt`, if passed positionally, is left out when
                bound; pass the arguments as the function received them).
            kwargs: Its keyword arguments (an injected `prompt` is left out of the record).
            bound: `True` when `args` exclude the receiver (`self`/`cls`) of a method.
            output: The return value (for streams: the items joined, strings concatenated, else a list).
            error: The exception the call raised, if it did (then `output` is ignored).
            started_ns: When the call started, in nanoseconds of any clock (`time.perf_counter_ns()`).
            ended_ns: When it ended (the stream was exhausted or closed), same clock.
            first_item_ns: When a stream yielded its first item, same clock.
            span_context: The call's OpenTelemetry span or `SpanContext`, if one was recording.
            usage: The tokens the call reported (`promptops._usage`), if it reported any.
        """
        settings = _config.current or get_settings()
        writer = self.admit(settings)
        if writer is not None:
            self.hand_over(
                writer, settings, prompt, args, kwargs, bound, None, output, False, error,
                started_ns, ended_ns, first_item_ns, span_context,
            )  # fmt: skip

    def submit_inputs(
        self,
        prompt: Prompt | None,
        inputs: Mapping[str, Any],
        *,
        output: Any = None,
        error: BaseException | None = None,
        started_ns: int,
        ended_ns: int,
        first_item_ns: int | None = None,
        span_context: Any = None,
        usage: Usage | None = None,
    ) -> None:
        """Queue one finished call whose inputs are already a mapping by name. Never raises, never blocks.

        `submit()` for calls that have no signature to bind (see `named()`); the same checks (capture
        configured, enabled, sampled in, not a replay), redaction and size limits apply. The inputs are
        converted at once: they could be mutated after the call.

        Args:
            prompt: The prompt the call used, if any.
            inputs: The call's inputs by name (stored as the record's `inputs`; replay passes them back).
            output: The return value.
            error: The exception the call raised, if it did (then `output` is ignored).
            started_ns: When the call started, in nanoseconds of any clock (`time.perf_counter_ns()`).
            ended_ns: When it ended, same clock.
            first_item_ns: When a stream produced its first item, same clock.
            span_context: The call's OpenTelemetry span or `SpanContext`, if one was recording.
            usage: The tokens the call reported (`promptops._usage`), if it reported any.
        """
        settings = _config.current or get_settings()
        writer = self.admit(settings)
        if writer is not None:
            named = dict(inputs)
            self.hand_over(
                writer, settings, prompt, (), {}, False, (named, self.encode(settings, named)), output, False,
                error, started_ns, ended_ns, first_item_ns, span_context, usage,
            )  # fmt: skip

    def hand_over(
        self,
        writer: _writer.Writer,
        settings: _config.Settings,
        prompt: Prompt | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bound: bool,
        inputs: tuple[Mapping[str, Any], Any] | None,
        output: Any,
        output_encoded: bool,
        error: BaseException | None,
        started_ns: int,
        ended_ns: int,
        first_item_ns: int | None,
        span_context: Any,
        usage: Usage | None = None,
    ) -> None:
        """Queue a call `admit()` accepted: the one hand-over to the writer. Never raises, never blocks.

        Args:
            writer: What `admit()` returned.
            settings: The settings `admit()` was given.
            prompt: The prompt the call used, if any.
            args: The positional arguments (ignored when `inputs` is given).
            kwargs: The keyword arguments (ignored when `inputs` is given).
            bound: `True` when `args` exclude the receiver of a method.
            inputs: The inputs by name and their `encode()`d form, when the caller converted them already (a
                traced call shares the conversion with its span); `DEFERRED` when the caller found them all
                immutable (`deferrable()`); `None`: decided here.
            output: The return value.
            output_encoded: `output` is already an `encode()`d value.
            error: The exception the call raised, if it did (then `output` is ignored).
            started_ns: When the call started (`time.perf_counter_ns()`).
            ended_ns: When it ended, same clock.
            first_item_ns: When a stream produced its first item, same clock.
            span_context: The call's OpenTelemetry span or `SpanContext`, if one was recording.
            usage: The tokens the call reported (`promptops._usage`), if it reported any.
        """
        try:
            if inputs is DEFERRED:
                named = None
            elif inputs is not None:
                named, encoded = inputs
                args, kwargs, bound = encoded, _NO_KWARGS, False
            elif not self.deferrable(args, kwargs, bound):
                named = self.bind(args, kwargs, bound)
                args, kwargs = self.encode(settings, named), _NO_KWARGS
            else:
                named = None
            queued: Any = args
            if type(queued) is _EncodedText:
                # Queued as its text: a str is nothing for the collector to track while the record waits (an object
                # per record that survives young collections is what made capture's collections dear; issue 11).
                queued = queued.text
            error_info: tuple[str, str] | None = None
            if error is not None:
                error_info = self._error_info(
                    settings, error, named if named is not None else self.bind(args, kwargs, bound)
                )
                output = None
            elif not output_encoded and type(output) not in _IMMUTABLE and not _immutable(output):
                output = self.encode(settings, output)
            if span_context is not None:
                # The ids only: a queued record holding the span would keep it, and everything it refers to, alive
                # past the span processor's export, into the collector's oldest generation (issue 11).
                span_context = _span_ids(span_context)
            writer.put(
                (
                    self, settings, prompt, queued, kwargs, bound, output, error_info, started_ns, ended_ns,
                    first_item_ns, span_context, _time_ns(), usage,
                )
            )  # fmt: skip
        except Exception:
            log_internal_error("capture")

    @staticmethod
    def _error_info(settings: _config.Settings, error: BaseException, inputs: Mapping[str, Any]) -> tuple[str, str]:
        """The exception's type and its message, cut and redacted now.

        The message may repeat an argument masked under a sensitive key (issue 11): only the inputs can tell.
        """
        from .._redact import redactor_for
        from .._serialize import bounded_text

        name, message = _error_info(error)
        redactor = redactor_for(settings)
        return name, bounded_text(message, settings.capture_max_value_chars, redactor, redactor.masked_values(inputs))

    @staticmethod
    def encode(settings: _config.Settings, value: Any) -> Any:
        """`value` converted and redacted now, with the capture limits (an `Encoded`, or plain data's `EncodedText`).

        Never raises.
        """
        global _encode_tools, _EncodedText
        if _encode_tools is None:
            from .._redact import redactor_for
            from .._serialize import EncodedText, encode, encode_plain

            _EncodedText = EncodedText
            _encode_tools = (redactor_for, encode, encode_plain)
        redactor_for, encode, encode_plain = _encode_tools
        redactor = redactor_for(settings)
        limit = settings.capture_max_value_chars
        # Plain data (the common arguments: strings, numbers, small dicts and lists of them) becomes its JSON text
        # at once, within the span's limit too: the span records that text and the writer thread parses it.
        plain = encode_plain(value, max_chars=min(limit, settings.max_value_chars), redactor=redactor)
        if plain is not None:
            return plain
        return encode(value, max_chars=limit, redactor=redactor, max_total_chars=limit * _writer.MAX_TOTAL_FACTOR)
