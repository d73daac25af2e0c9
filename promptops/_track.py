"""`@promptops.track`: resolve the pinned prompt for each call and hand it to the wrapped function.

Signatures, metadata, methods, classmethods and staticmethods behave as undecorated: plain functions get a
`functools.wraps` closure (the hot path; see `_plain_function_wrapper`), everything else a wrapt
`FunctionWrapper`. The wrapper for plain, async, generator and async generator functions is chosen once, at
decoration time, and everything that does not depend on the call (the injection rule, the fallback prompt)
is computed then too.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextvars import Token
from time import monotonic, perf_counter_ns
from typing import Any, NamedTuple, TypeVar, overload

from . import (
    _config,  # pyright: ignore[reportPrivateUsage]
    tracing,
)
from . import prompts as _prompts
from ._config import Selector, Settings, get_settings, parse_selector
from ._errors import PromptUnavailableError, log_internal_error
from ._span import CallSpan, StreamSpan, activate
from ._uri import redact_uri
from ._usage import StreamUsage, UsageCollector, passed_on, usage_of, usage_sink
from .capture import CallCapture
from .capture._capture import DEFERRED
from .prompts import NO_OVERRIDES, Prompt, Template, active_prompt, overrides, resolver, selector_for

__all__ = ["track"]

F = TypeVar("F", bound=Callable[..., Any])


class _Spec:
    """What a decorated function needs per call, computed at decoration time."""

    __slots__ = (
        "assign",
        "cached_key",
        "call",
        "capture",
        "decorator_selector",
        "fallback",
        "inject",
        "name",
        "positional_index",
        "rollout_keys",
        "rollout_settings",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        name: str,
        selector: Selector | None,
        fallback: Template | None,
        span_name: str | None = None,
        capture: bool = True,
        sample_rate: float | None = None,
        rollout_key: str | None = None,
    ):
        self.name = name
        # Rollouts (issue 14): the settings under which calls without an override take part, and their keys. The
        # rollout machinery is imported by the first decoration, not by `import promptops` (issue 16).
        from .rollout._assign import KeyReader, assign

        self.assign = assign
        self.rollout_settings: Settings | None = None
        self.rollout_keys = KeyReader(func, rollout_key)
        self.call = CallSpan(func, span_name)
        self.capture = CallCapture(func, enabled=capture, sample_rate=sample_rate)
        self.decorator_selector = selector
        # The cache key for the settings last seen, so a memory hit costs no resolution-order walk.
        # One tuple, assigned atomically: threads racing a configure() never pair a key with other settings.
        self.cached_key: tuple[Settings | None, tuple[str, Selector]] = (None, (name, ("alias", "")))
        self.fallback = (
            Prompt(name=name, version=0, template=fallback, alias=None, source="fallback")
            if fallback is not None
            else None
        )
        parameter = inspect.signature(func).parameters.get("prompt")
        self.inject = parameter is not None and parameter.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        )
        # A caller may pass `prompt` positionally; then it is theirs, not ours to inject.
        self.positional_index: int | None = None
        if self.inject and parameter is not None and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            self.positional_index = list(inspect.signature(func).parameters).index("prompt")

    def selector(self) -> Selector:
        settings = get_settings()
        selector = selector_for(self.name, self.decorator_selector, settings)
        if overrides.get() is NO_OVERRIDES:
            self.cached_key = (settings, (self.name, selector))
            pinned = self.decorator_selector is not None or self.name in settings.pins
            self.rollout_settings = None if pinned else settings
        return selector

    def arm(self, prompt: Prompt, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool) -> Prompt:
        """`prompt`, or the candidate of a running rollout, labelled with the call's arm (issue 14)."""
        if self.rollout_settings is _config.current and overrides.get() is NO_OVERRIDES:
            return self.assign(self.name, prompt, self.rollout_keys, args, kwargs, bound)
        return prompt

    # `rollout` is positional: a keyword-only parameter keeps CPython 3.11 from specialising the call (~100 ns).
    def hit(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool, rollout: bool = True) -> Prompt | None:
        """The fresh memory copy for this call, in the call's rollout arm (`rollout`), or `None`.

        Skips the resolution-order walk: valid while the settings are the ones the cached key was computed for and
        no override is active (which is also when a rollout may apply, so `arm`'s own checks are not repeated).
        The warm path of every wrapper: one call, whose body is the only copy (issue 16).
        """
        settings, key = self.cached_key
        if settings is _config.current and overrides.get() is NO_OVERRIDES:
            current = _prompts.current
            if current is not None:
                entry = current.entries.get(key)
                if entry is not None:
                    now = monotonic()
                    if now < entry.refresh_at:
                        # No rollout of this prompt while the rollout state last seen is fresh (`KeyReader.quiet`):
                        # the call skips `assign` (issue 16: ~330 ns); a due state or a new one takes it there.
                        if rollout and self.rollout_settings is settings and now >= self.rollout_keys.quiet.refresh_at:
                            return self.assign(self.name, entry.served, self.rollout_keys, args, kwargs, bound)
                        return entry.served
        return None

    def cold(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool) -> Prompt:
        """The prompt for a call `hit` had none for: full resolution, then the call's rollout arm."""
        return self.arm(self.resolve(self.selector()), args, kwargs, bound)

    def lookup(self) -> Prompt:
        """The prompt for this call, without a rollout arm: a memory hit (the common case), else full resolution."""
        return self.hit((), {}, False, False) or self.resolve(self.selector())

    def resolve(self, selector: Selector) -> Prompt:
        try:
            return resolver().resolve(self.name, selector, self.fallback)
        except PromptUnavailableError:
            raise
        except Exception:
            log_internal_error("prompt resolution")
            if self.fallback is not None:
                return self.fallback
            raise PromptUnavailableError(
                f"prompt {self.name!r} could not be resolved because of an internal error in promptops "
                "(logged above); pass fallback= to @promptops.track to keep serving meanwhile",
                name=self.name,
                selector=str(selector),
                uri=redact_uri(get_settings().tracking_uri),
            ) from None

    def given(self, wrapped: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Prompt | None:
        """The prompt the caller passed explicitly, if any (tests do this to run without a registry)."""
        if "prompt" in kwargs:
            value = kwargs["prompt"]
            return value if isinstance(value, Prompt) else None
        if self.positional_index is not None:
            index = self.positional_index - (1 if hasattr(wrapped, "__self__") else 0)
            if len(args) > index:
                value = args[index]
                return value if isinstance(value, Prompt) else None
        return None

    def caller_supplies(self, wrapped: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        if "prompt" in kwargs:
            return True
        if self.positional_index is None:
            return False
        return len(args) > self.positional_index - (1 if hasattr(wrapped, "__self__") else 0)


def _prepare(spec: _Spec, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prompt:
    if spec.inject and spec.caller_supplies(wrapped, args, kwargs):
        given = spec.given(wrapped, args, kwargs)
        if given is not None:
            return given
        return spec.lookup()
    bound = hasattr(wrapped, "__self__")
    prompt = spec.hit(args, kwargs, bound) or spec.cold(args, kwargs, bound)
    if spec.inject:
        kwargs["prompt"] = prompt
    return prompt


def _supplied(spec: _Spec, wrapped: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Prompt | None:
    """The `Prompt` the caller passed, if any.

    Such a call is a test's, not traffic: it is neither traced nor captured, since its prompt need not exist in
    the registry and a record of it would pass for a production call of that version (issue 17).
    """
    if spec.inject and spec.caller_supplies(wrapped, args, kwargs):
        return spec.given(wrapped, args, kwargs)
    return None


def _unobserved(prompt: Prompt, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    token = active_prompt.set(prompt)
    try:
        return func(*args, **kwargs)
    finally:
        active_prompt.reset(token)


async def _aunobserved(prompt: Prompt, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    token = active_prompt.set(prompt)
    try:
        return await func(*args, **kwargs)
    finally:
        active_prompt.reset(token)


def _sync_wrapper(spec: _Spec) -> Callable[..., Any]:
    # The hot path: one closure, the memory hit inlined (each Python call costs ~100 ns on small machines).
    inject = spec.inject and spec.positional_index is None
    set_active, reset_active = active_prompt.set, active_prompt.reset

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if inject and "prompt" not in kwargs:
            bound = hasattr(wrapped, "__self__")
            kwargs["prompt"] = prompt = spec.hit(args, kwargs, bound) or spec.cold(args, kwargs, bound)
        elif (given := _supplied(spec, wrapped, args, kwargs)) is not None:
            return _unobserved(given, wrapped, args, kwargs)
        else:
            prompt = _prepare(spec, wrapped, args, kwargs)
        tracer = tracing.tracer()
        if _observed(spec, tracer):
            return _run(spec, tracer, prompt, wrapped, args, kwargs, hasattr(wrapped, "__self__"))
        token = set_active(prompt)
        try:
            return wrapped(*args, **kwargs)
        finally:
            reset_active(token)

    return wrapper


def _observed(spec: _Spec, tracer: Any) -> bool:
    """Whether a call needs the slow path: a span, or a capture record."""
    if tracer is not None:
        return True
    if not spec.capture.enabled:
        return False
    settings = _config.current
    return settings is None or settings.capture is not None


class _Observation(UsageCollector):
    """One call's span and capture bookkeeping, shared by the sync and async paths.

    Capture is decided at the start (`admit`), and arguments the record must convert now are converted once, for
    the span and the record alike (issue 11: they were converted twice); so is a mutable return value. A call whose
    record is kept is the usage sink while it runs (`_run`): `record_usage()` inside it lands in its record.
    Every traced call runs this, so calls go straight to the span's and the capture's pieces, positionally: each
    Python call less is ~0.1 µs of the ~12 µs promptops adds to a traced, captured call (issue 11).
    """

    __slots__ = (
        "args", "began", "bound", "inputs", "kwargs", "prompt", "settings", "span", "spec", "token", "writer",
    )  # fmt: skip

    def __init__(
        self,
        spec: _Spec,
        tracer: Any,
        prompt: Prompt,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bound: bool,
    ) -> None:
        self.spec, self.prompt, self.args, self.kwargs, self.bound = spec, prompt, args, kwargs, bound
        self.settings = settings = _config.current or get_settings()
        capture = spec.capture
        self.writer = writer = capture.admit(settings) if capture.enabled else None
        self.usage = None  # `UsageCollector.__init__`, without the call
        inputs: Any = DEFERRED
        if writer is not None and not capture.deferrable(args, kwargs, bound):
            named = capture.bind(args, kwargs, bound)
            inputs = (named, capture.encode(settings, named))
        self.inputs = inputs
        self.span: Any = None
        self.token: object = None
        if tracer is not None:
            span = spec.call.open(
                tracer, prompt, settings, args, kwargs, bound, inputs[1] if inputs is not DEFERRED else None, True
            )
            if span is not None and (token := activate(span)) is not None:
                self.span, self.token = span, token
        self.began = perf_counter_ns()

    def failed(self, exc: BaseException, listened: Token[Any] | None = None) -> None:
        ended = perf_counter_ns()
        if self.span is not None:
            call = self.spec.call
            masked = call.masked(self.settings, self.args, self.kwargs, bound=self.bound)
            call.fail(self.span, self.token, self.settings, exc, masked)
        if self.writer is not None:
            self._hand_over(ended, None, False, exc, listened)

    def succeeded(self, result: Any, listened: Token[Any] | None = None) -> None:
        ended = perf_counter_ns()
        writer = self.writer
        encoded = None
        if writer is not None and not self.spec.capture.immutable(result):
            if self.usage is None:
                self.usage = usage_of(result)  # a returned provider response carries its usage
            encoded = self.spec.capture.encode(self.settings, result)  # one conversion for span and record
        if self.span is not None:
            self.spec.call.finish(self.span, self.token, self.settings, result, encoded)
        if writer is not None:
            if encoded is not None:
                self._hand_over(ended, encoded, True, None, listened)
            else:
                self._hand_over(ended, result, False, None, listened)

    def _hand_over(
        self, ended: int, output: Any, encoded: bool, error: BaseException | None, listened: Token[Any] | None
    ) -> None:
        usage = self.usage
        if usage is not None and listened is not None:
            passed_on(listened, usage)  # an enclosing tracked call (or replay) counts these tokens too
        self.spec.capture.hand_over(
            self.writer, self.settings, self.prompt, self.args, self.kwargs, self.bound, self.inputs, output,  # pyright: ignore[reportArgumentType]
            encoded, error, self.began, ended, None, self.span, usage,
        )  # fmt: skip


def _run(
    spec: _Spec,
    tracer: Any,
    prompt: Prompt,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    bound: bool,
) -> Any:
    """Call `func` inside its span (if `tracer`) and submit the capture record afterwards.

    A call whose record is kept is the usage sink while it runs: `record_usage()` inside it lands in its record.
    `bound` (`args` lack a method's receiver) is positional: every traced call makes this call.
    """
    observation = _Observation(spec, tracer, prompt, args, kwargs, bound)
    token = active_prompt.set(prompt)
    listened = usage_sink.set(observation) if observation.writer is not None else None
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        active_prompt.reset(token)
        if listened is not None:
            usage_sink.reset(listened)
        observation.failed(exc, listened)
        raise
    active_prompt.reset(token)
    if listened is not None:
        usage_sink.reset(listened)
    observation.succeeded(result, listened)
    return result


async def _arun(
    spec: _Spec,
    tracer: Any,
    prompt: Prompt,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    bound: bool,
) -> Any:
    """`_run` for coroutine functions."""
    observation = _Observation(spec, tracer, prompt, args, kwargs, bound)
    token = active_prompt.set(prompt)
    listened = usage_sink.set(observation) if observation.writer is not None else None
    try:
        result = await func(*args, **kwargs)
    except BaseException as exc:
        active_prompt.reset(token)
        if listened is not None:
            usage_sink.reset(listened)
        observation.failed(exc, listened)
        raise
    active_prompt.reset(token)
    if listened is not None:
        usage_sink.reset(listened)
    observation.succeeded(result, listened)
    return result


def _stream(
    spec: _Spec,
    tracer: Any,
    prompt: Prompt,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    bound: bool,
) -> StreamSpan | None:
    """The span and capture bookkeeping of one generator call, or `None` when neither is wanted."""
    if not _observed(spec, tracer):
        return None
    settings = get_settings()
    capture = spec.capture
    # As `_Observation`: admitted at the start, and arguments that must be converted now are converted once, for
    # the span and the record alike; so is the joined output at the end (issue 11).
    writer = capture.admit(settings) if capture.enabled else None
    inputs: Any = DEFERRED
    if writer is not None and not capture.deferrable(args, kwargs, bound):
        named = capture.bind(args, kwargs, bound)
        inputs = (named, capture.encode(settings, named))

    def convert(output: Any) -> Any:
        return None if capture.immutable(output) else capture.encode(settings, output)

    def on_end(output: Any, encoded: Any, exc: BaseException | None, began: int, first: int | None, ended: int) -> None:
        if writer is not None and stream is not None:
            usage = stream.sink.ended(stream.last) if stream.sink is not None else None
            capture.hand_over(
                writer, settings, prompt, args, kwargs, bound, inputs, output if encoded is None else encoded,
                encoded is not None, exc, began, ended, first, stream.span, usage,
            )  # fmt: skip

    stream = StreamSpan.start(
        tracer, spec.call, prompt, settings, args, kwargs, bound=bound,
        inputs=inputs[1] if inputs is not DEFERRED else None,
        on_end=on_end if writer is not None else None, convert=convert if writer is not None else None,
    )  # fmt: skip
    if stream is not None and writer is not None:
        stream.sink = StreamUsage()  # the record keeps what the stream reports while it runs (issue 14)
    return stream


def _plain_function_wrapper(spec: _Spec, func: Callable[..., Any]) -> Callable[..., Any]:
    """The sync path for a plain function, as a plain closure.

    A wrapt `FunctionWrapper` costs about 700 ns per call here (measured in benchmarks/; for a plain function
    wrapt 2.5 looks up `__self__` on every call and clears the AttributeError), more than the rest of the hot
    path. A plain function still binds as a method (functions are descriptors), and
    `functools.wraps` keeps the name, docstring and `inspect.signature`. wrapt stays for what needs it:
    classmethod/staticmethod objects, other callables, and (async) generator functions, whose
    `inspect.is*function` checks must stay true while we resolve at call time.
    """
    inject = spec.inject and spec.positional_index is None
    set_active, reset_active = active_prompt.set, active_prompt.reset
    get_tracer = tracing.tracer
    hit, cold = spec.hit, spec.cold  # bound once: every attribute load counts on this path (benchmarks/run.py)

    @functools.wraps(func)
    def tracked(*args: Any, **kwargs: Any) -> Any:
        if inject and "prompt" not in kwargs:
            kwargs["prompt"] = prompt = hit(args, kwargs, False) or cold(args, kwargs, False)
        elif not spec.inject:  # reads it with current_prompt()
            prompt = hit(args, kwargs, False) or cold(args, kwargs, False)
        elif (given := _supplied(spec, func, args, kwargs)) is not None:
            return _unobserved(given, func, args, kwargs)
        else:  # `prompt` is positional and the caller did not pass it
            prompt = _prepare(spec, func, args, kwargs)
        tracer = get_tracer()
        if _observed(spec, tracer):
            return _run(spec, tracer, prompt, func, args, kwargs, False)
        token = set_active(prompt)
        try:
            return func(*args, **kwargs)
        finally:
            reset_active(token)

    return tracked


def _plain_async_wrapper(spec: _Spec, func: Callable[..., Any]) -> Callable[..., Any]:
    """The `async def` path as a plain coroutine function (see `_plain_function_wrapper` for why)."""
    inject = spec.inject and spec.positional_index is None
    set_active, reset_active = active_prompt.set, active_prompt.reset

    @functools.wraps(func)
    async def tracked(*args: Any, **kwargs: Any) -> Any:
        if inject and "prompt" not in kwargs:
            # A memory hit needs no await; a miss waits for the registry in a thread, not on the loop.
            prompt = spec.hit(args, kwargs, False) or await _resolve_off_loop(spec, func, args, kwargs)
            kwargs["prompt"] = prompt
        elif not spec.inject:
            prompt = spec.hit(args, kwargs, False) or await _resolve_off_loop(spec, func, args, kwargs)
        elif (given := _supplied(spec, func, args, kwargs)) is not None:
            return await _aunobserved(given, func, args, kwargs)
        else:
            prompt = await _resolve_off_loop(spec, func, args, kwargs)
        tracer = tracing.tracer()
        if _observed(spec, tracer):
            return await _arun(spec, tracer, prompt, func, args, kwargs, False)
        token = set_active(prompt)
        try:
            return await func(*args, **kwargs)
        finally:
            reset_active(token)

    return tracked


async def _to_thread(spec: _Spec, selector: Selector) -> Prompt:
    import asyncio  # only on a cache miss in async code: keeps `import promptops` light

    return await asyncio.to_thread(spec.resolve, selector)


async def _resolve_off_loop(spec: _Spec, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prompt:
    """Like `_prepare`, but a cache miss waits for the registry in a thread, not on the event loop."""
    if spec.inject and spec.caller_supplies(wrapped, args, kwargs):
        given = spec.given(wrapped, args, kwargs)
        if given is not None:
            return given
    selector = spec.selector()
    try:
        prompt = resolver().cached(spec.name, selector)
    except Exception:
        log_internal_error("prompt cache lookup")
        prompt = None
    if prompt is None:
        prompt = await _to_thread(spec, selector)
    prompt = spec.arm(prompt, args, kwargs, hasattr(wrapped, "__self__"))
    if spec.inject and not spec.caller_supplies(wrapped, args, kwargs):
        kwargs["prompt"] = prompt
    return prompt


def _async_wrapper(spec: _Spec) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if (given := _supplied(spec, wrapped, args, kwargs)) is not None:
            return await _aunobserved(given, wrapped, args, kwargs)
        prompt = await _resolve_off_loop(spec, wrapped, args, kwargs)
        tracer = tracing.tracer()
        if _observed(spec, tracer):
            return await _arun(spec, tracer, prompt, wrapped, args, kwargs, hasattr(wrapped, "__self__"))
        token = active_prompt.set(prompt)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            active_prompt.reset(token)

    return wrapper


def _enter(prompt: Prompt, stream: StreamSpan | None) -> tuple[Any, object, Any]:
    """Make `prompt`, the stream's span and its usage sink current for one step of a stream; undo with `_leave`.

    The one copy of what every step of `_iterate`/`_aiterate` does (issue 16: it was written out four times).
    Two plain calls, not a context manager: this runs once per item of every tracked stream. The sink is set only
    for a captured stream, as `_run` sets it only for a captured call: `record_usage()` in the generator then
    lands in the stream's record (issue 14).
    """
    if stream is None:
        return active_prompt.set(prompt), None, None
    # Per item, so no call that would do nothing: a context variable set and reset cost ~0.25 µs already.
    sink = stream.sink
    listened = None
    if sink is not None:
        listened = usage_sink.set(sink)
        sink.outer = listened.old_value
    return active_prompt.set(prompt), stream.attach() if stream.token_context is not None else None, listened


def _leave(stream: StreamSpan | None, tokens: tuple[Any, object, Any]) -> None:
    """Undo `_enter`: restore the usage sink, detach the span, then restore the previous prompt."""
    if stream is not None:
        if tokens[2] is not None:
            usage_sink.reset(tokens[2])
        if tokens[1] is not None:
            stream.detach(tokens[1])
    active_prompt.reset(tokens[0])


def _generator_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Resolved at call time, so a `use_prompt` block around the call applies however late it is iterated.
        # Asked before `_prepare` injects the prompt: injected, it would pass for the caller's (and the stream
        # would go untraced and uncaptured, as it did for generators that declare `prompt`).
        observe = _supplied(spec, wrapped, args, kwargs) is None
        prompt = _prepare(spec, wrapped, args, kwargs)
        stream = (
            _stream(spec, tracing.tracer(), prompt, args, kwargs, bound=hasattr(wrapped, "__self__"))
            if observe
            else None
        )
        tokens = _enter(prompt, stream)
        try:
            generator = wrapped(*args, **kwargs)
        except BaseException as exc:
            if stream is not None:
                stream.end(exc)
            raise
        finally:
            _leave(stream, tokens)
        iterator = _iterate(generator, prompt, stream)
        if stream is not None:
            stream.guard(iterator)
        return iterator

    return wrapper


def _iterate(
    generator: Generator[Any, Any, Any], prompt: Prompt, stream: StreamSpan | None
) -> Generator[Any, Any, Any]:
    """Drive `generator` step by step with `prompt` (and its span) active during each step.

    send/throw/close pass through. The span ends exactly once: on exhaustion, on an exception, on close
    (early `break` included), or, for an abandoned stream, when this generator is garbage-collected.
    """
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            tokens = _enter(prompt, stream)
            try:
                if to_throw is not None:
                    item = generator.throw(to_throw)
                else:
                    item = generator.send(to_send)
            except StopIteration as stop:
                if stream is not None:
                    stream.end()
                return stop.value
            except BaseException as exc:
                if stream is not None:
                    stream.end(exc)
                raise
            finally:
                _leave(stream, tokens)
                to_throw = None
            if stream is not None:
                stream.item(item)
            try:
                to_send = yield item
            except GeneratorExit:
                tokens = _enter(prompt, stream)
                try:
                    generator.close()
                finally:
                    _leave(stream, tokens)
                raise
            except BaseException as exc:
                to_throw = exc
    finally:
        if stream is not None:
            stream.end()  # closed early: a no-op if it already ended


def _async_generator_wrapper(spec: _Spec) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The selector is taken now (a `use_prompt` block around the call applies); a cache miss is fetched
        # on first iteration, off the event loop.
        selector = spec.selector()
        prompt = given = _supplied(spec, wrapped, args, kwargs)
        if prompt is None:
            try:
                prompt = resolver().cached(spec.name, selector)
            except Exception:
                log_internal_error("prompt cache lookup")
        owner: list[weakref.ref[Any]] = []  # lets the stream's span be guarded by the iterator's lifetime
        iterator = _aiterate(spec, selector, prompt, wrapped, args, kwargs, owner, observe=given is None)
        owner.append(weakref.ref(iterator))
        return iterator

    return wrapper


async def _aiterate(
    spec: _Spec,
    selector: Selector,
    prompt: Prompt | None,
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    owner: list[weakref.ref[Any]],
    *,
    observe: bool,
) -> AsyncGenerator[Any, Any]:
    # The span starts at the first iteration (the prompt may need fetching off the loop first) and ends exactly
    # once: exhaustion, exception, aclose() (from any task), or the event loop finalizing an abandoned stream.
    if prompt is None:
        prompt = await _to_thread(spec, selector)
    if not (spec.inject and spec.caller_supplies(wrapped, args, kwargs)):
        prompt = spec.arm(prompt, args, kwargs, hasattr(wrapped, "__self__"))
    if spec.inject and not spec.caller_supplies(wrapped, args, kwargs):
        kwargs["prompt"] = prompt
    stream = (
        _stream(spec, tracing.tracer(), prompt, args, kwargs, bound=hasattr(wrapped, "__self__")) if observe else None
    )
    iterator = owner[0]() if owner else None
    if stream is not None and iterator is not None:
        stream.guard(iterator)  # abandoned without an event loop to finalize it: still ends once
    tokens = _enter(prompt, stream)
    try:
        generator: AsyncGenerator[Any, Any] = wrapped(*args, **kwargs)
    except BaseException as exc:
        if stream is not None:
            stream.end(exc)
        raise
    finally:
        _leave(stream, tokens)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        while True:
            tokens = _enter(prompt, stream)
            try:
                if to_throw is not None:
                    item = await generator.athrow(to_throw)
                else:
                    item = await generator.asend(to_send)
            except StopAsyncIteration:
                return
            except BaseException as exc:
                if stream is not None:
                    stream.end(exc)
                raise
            finally:
                _leave(stream, tokens)
                to_throw = None
            if stream is not None:
                stream.item(item)
            try:
                to_send = yield item
            except GeneratorExit:
                tokens = _enter(prompt, stream)
                try:
                    await generator.aclose()
                finally:
                    _leave(stream, tokens)
                raise
            except BaseException as exc:
                to_throw = exc
    finally:
        if stream is not None:
            stream.end()


class TrackInfo(NamedTuple):
    """What `@promptops.track` knows about a decorated function (replay reads it through `track_info`).

    Attributes:
        prompt: The prompt's registry name.
        function: The undecorated function.
        selector: The decorator's `version=`/`alias=`, if given.
    """

    prompt: str
    function: Callable[..., Any]
    selector: Selector | None = None


def track_info(obj: Any) -> TrackInfo | None:
    """The `TrackInfo` of a function decorated with `@promptops.track` (also a bound method of one), else `None`."""
    for candidate in (obj, getattr(obj, "__func__", None)):
        if candidate is None:
            continue
        info = getattr(candidate, "_self_promptops_track", None) or getattr(candidate, "__promptops_track__", None)
        if isinstance(info, TrackInfo):
            return info
    return None


def _parameters(func: Any) -> Mapping[str, Any]:
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}


def _unwrap(func: Any) -> Any:
    # classmethod/staticmethod objects (when @track is outermost) keep the function in __func__.
    return getattr(func, "__func__", func)


@overload
def track(
    *,
    prompt: str,
    version: int | None = None,
    fallback: Template | None = None,
    name: str | None = None,
    capture: bool = True,
    sample_rate: float | None = None,
    rollout_key: str | None = None,
) -> Callable[[F], F]: ...
@overload
def track(
    *,
    prompt: str,
    alias: str | None = None,
    fallback: Template | None = None,
    name: str | None = None,
    capture: bool = True,
    sample_rate: float | None = None,
    rollout_key: str | None = None,
) -> Callable[[F], F]: ...
def track(
    *,
    prompt: str,
    version: int | None = None,
    alias: str | None = None,
    fallback: Template | None = None,
    name: str | None = None,
    capture: bool = True,
    sample_rate: float | None = None,
    rollout_key: str | None = None,
) -> Callable[[F], F]:
    """Resolve the pinned version of a registry prompt for every call of the decorated function.

    The function gets the `Prompt` as its `prompt` argument when it declares one; otherwise
    `promptops.current_prompt()` returns it during the call. Each call is an OpenTelemetry span carrying the
    prompt version, the (redacted) inputs and output, and any exception. Works on `def`, `async def`, generators, async
    generators, methods, classmethods and staticmethods. The function's own exceptions pass through unchanged.

    Which version: an active `use_prompt()` override, else `version=`/`alias=` here, else a configured pin,
    else the default alias (`production`). Which copy: memory, then the registry (at most `registry_timeout`),
    then the last-known-good disk copy, then `fallback=`.

    ```python
    @promptops.track(prompt="summarize")
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        return llm(prompt.format(text=text))
    ```

    Args:
        prompt: The prompt's name in the MLflow Prompt Registry.
        version: Always use this version (unless overridden by `use_prompt`).
        alias: Use this alias instead of the configured pin or default alias.
        fallback: A template (MLflow `{{ variable }}` syntax, text or chat messages) to use when no registry or
            disk copy can be had; the prompt then has `version == 0` and `source == "fallback"`.
        name: The span name (default: the function's name).
        capture: `False` opts this function out of capture (its calls are still traced).
        sample_rate: Fraction of this function's calls captured (default: the `sample_rate` setting).
        rollout_key: The argument whose value keeps a caller on one arm while a rollout of the prompt runs
            (`promptops rollout start`): the same value, the same arm, in every process. Without it (and without
            a `promptops.rollout_key()` block or `rollout start --key`), each call draws its arm at random.

    Returns:
        A decorator.

    Raises:
        ValueError: both `version` and `alias` were given, or one is malformed.
    """
    if not isinstance(prompt, str) or not prompt:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError("track(prompt=...) needs the prompt's registry name")
    if version is not None and alias is not None:
        raise ValueError(f"track(prompt={prompt!r}): give version= or alias=, not both")
    selector: Selector | None = None
    if version is not None:
        selector = parse_selector(version, what=f"track(prompt={prompt!r}, version=...)")
        if selector[0] != "version":
            raise ValueError(f"track(prompt={prompt!r}, version={version!r}): use alias= for alias names")
    elif alias is not None:
        selector = ("alias", alias.lstrip("@"))
    if fallback is not None and not isinstance(fallback, (str, list)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"track(prompt={prompt!r}, fallback=...): expected a template string or chat messages")

    def decorate(func: F) -> F:
        target = _unwrap(func)
        if not callable(target):
            raise TypeError(f"@promptops.track applies to functions and methods, not {type(func).__name__}")
        if rollout_key is not None and rollout_key not in _parameters(target):
            raise ValueError(
                f"track(prompt={prompt!r}, rollout_key={rollout_key!r}): {getattr(target, '__name__', target)}() has "
                f"no argument {rollout_key!r}; name one of its arguments, or use `with promptops.rollout_key(value):`"
            )
        spec = _Spec(target, prompt, selector, fallback, name, capture, sample_rate, rollout_key)
        info = TrackInfo(prompt, target, selector)
        if inspect.isasyncgenfunction(target):
            wrapper = _async_generator_wrapper(spec)
        elif inspect.iscoroutinefunction(target):
            if inspect.isfunction(func):
                plain = _plain_async_wrapper(spec, func)
                plain.__promptops_track__ = info  # type: ignore[attr-defined]
                return plain  # type: ignore[return-value]
            wrapper = _async_wrapper(spec)
        elif inspect.isgeneratorfunction(target):
            wrapper = _generator_wrapper(spec)
        elif inspect.isfunction(func):
            plain = _plain_function_wrapper(spec, func)
            plain.__promptops_track__ = info  # type: ignore[attr-defined]
            return plain  # type: ignore[return-value]
        else:
            wrapper = _sync_wrapper(spec)
        import wrapt  # only for descriptors, callables and generators: keeps `import promptops` light

        wrapped = wrapt.FunctionWrapper(func, wrapper)
        wrapped._self_promptops_track = info  # type: ignore[attr-defined]  # `_self_` attributes stay on the proxy
        return wrapped  # type: ignore[return-value]

    return decorate
