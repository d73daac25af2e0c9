"""What replay calls: a `module:function` decorated with `@promptops.track`, or a LangChain Runnable.

Stored inputs are JSON data keyed by parameter name (see `promptops._binding.ArgumentBinder`). Calling the
target again rebuilds them: positional-only parameters go by position, `*args` and `**kwargs` are spread, and a
parameter annotated with a dataclass or pydantic model (also inside `list[...]`, `X | None`, ...) gets that type
back, validated by pydantic.

A Runnable (anything with `invoke` and `ainvoke`, such as a LangChain chain) that contains a
`promptops_langchain.pinned_prompt()` is invoked on each record's inputs as the chain input (see
`RunnableTarget`). It is recognised by duck typing: promptops never imports LangChain.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .._config import Selector
from .._errors import PromptopsError
from .._span import joined_items
from .._track import track_info

__all__ = ["ReplayError", "RunnableTarget", "Target", "load_target"]


class ReplayError(PromptopsError):
    """A replay cannot start: bad target, version, dataset, scorer or gate. One line naming the fix."""


def _is_structured(annotation: Any) -> bool:
    """Whether an annotation mentions a dataclass or a pydantic model anywhere (then pydantic rebuilds it)."""
    if isinstance(annotation, type):
        if dataclasses.is_dataclass(annotation):
            return True
        return any(
            base.__module__.startswith("pydantic") and base.__name__ == "BaseModel"
            for base in inspect.getmro(annotation)  # pyright: ignore[reportUnknownArgumentType]
        )
    return any(_is_structured(argument) for argument in typing.get_args(annotation))


class _Rebuilder:
    """Turns stored JSON values back into the annotated types of one function's parameters."""

    def __init__(self, function: Callable[..., Any]) -> None:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # an unresolvable forward reference: pass values as stored
            hints = {}
        self._adapters: dict[str, Any] = {}
        structured = {name: hint for name, hint in hints.items() if name != "return" and _is_structured(hint)}
        if structured:
            import pydantic

            self._adapters = {name: pydantic.TypeAdapter(hint) for name, hint in structured.items()}

    def __call__(self, name: str, value: Any) -> Any:
        adapter = self._adapters.get(name)
        return adapter.validate_python(value) if adapter is not None and value is not None else value


class Target:
    """A tracked function, ready to be called with a dataset record's inputs.

    Attributes:
        spec: `module:function` as given.
        prompt_name: The prompt the function resolves (what `--candidate` overrides).
        function_id: `module:qualname`, as capture records name the function.
        selector: The decorator's `version=`/`alias=`, if any (with pins and the default alias it decides what
            `--baseline production` means).
        is_async: Whether calls must be awaited (`async def` or an async generator).
    """

    def __init__(
        self,
        spec: str,
        obj: Callable[..., Any],
        prompt_name: str,
        function: Callable[..., Any],
        selector: Selector | None,
    ) -> None:
        """Wrap a loaded target; use `load_target()`."""
        self.spec = spec
        self.obj = obj
        self.prompt_name = prompt_name
        self.selector = selector
        self.function_id = f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', spec)}"
        self.is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        signature = inspect.signature(obj)
        self._parameters = [p for p in signature.parameters.values() if p.name != "prompt"]
        self._rebuild = _Rebuilder(function)

    def arguments(self, inputs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for a call with these stored inputs.

        Raises:
            TypeError: the inputs do not fit the signature (a missing required argument, an unknown name).
            pydantic.ValidationError: a structured input does not validate against its annotation.
        """
        names = {p.name for p in self._parameters}
        if set(inputs) == {"args", "kwargs"} and not names & {"args", "kwargs"}:
            # Stored when the original call did not fit the signature: replay it as it was made.
            return list(inputs["args"]), dict(inputs["kwargs"])
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        unknown = set(inputs) - names
        for parameter in self._parameters:
            if parameter.name not in inputs:
                continue
            value = self._rebuild(parameter.name, inputs[parameter.name])
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(value)
            elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
                kwargs.update(value)
            else:
                kwargs[parameter.name] = value
        if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self._parameters):
            raise TypeError(
                f"{self.spec} has no parameter {sorted(unknown)[0]!r} (the record's inputs: {sorted(inputs)})"
            )
        return args, kwargs

    def call(self, inputs: Mapping[str, Any]) -> Any:
        """Call a sync target; a generator's items are joined (strings concatenated, else a list), as capture does."""
        args, kwargs = self.arguments(inputs)
        result = self.obj(*args, **kwargs)
        if inspect.isgenerator(result):
            return joined_items(list(result))
        return result

    async def acall(self, inputs: Mapping[str, Any]) -> Any:
        """Call an async target (awaiting it, or draining an async generator)."""
        args, kwargs = self.arguments(inputs)
        result = self.obj(*args, **kwargs)
        if inspect.isasyncgen(result):
            return joined_items([item async for item in result])
        if inspect.isawaitable(result):
            return await result
        return result


# -- LangChain Runnables (duck-typed) ---------------------------------------------------------------------------

# Where LangChain's composites keep their parts, for runnables whose get_graph() fails.
_PARTS = ("first", "middle", "last", "steps__", "bound", "runnable", "fallbacks", "mapper", "default", "branches")
_PLAIN = (str, int, float, bool, type(None))


def _is_runnable(obj: Any) -> bool:
    return (
        not isinstance(obj, type) and callable(getattr(obj, "invoke", None)) and callable(getattr(obj, "ainvoke", None))
    )


def _components(obj: Any) -> list[Any]:
    """Every runnable inside `obj`, from its graph (LangChain's own walk, through lambdas' dependencies too)."""
    try:
        nodes = obj.get_graph().nodes.values()
        return [node.data for node in nodes if not isinstance(node.data, type)]
    except Exception:  # a custom runnable whose graph cannot be drawn: walk the usual attributes
        found: list[Any] = []
        pending: list[tuple[Any, int]] = [(obj, 0)]
        seen: set[int] = set()
        while pending:
            item, depth = pending.pop()
            if id(item) in seen or depth > 64:
                continue
            seen.add(id(item))
            if isinstance(item, (Mapping, list, tuple)):
                pending.extend((value, depth + 1) for value in _items(item))
                continue
            if not _is_runnable(item):
                continue
            found.append(item)
            for name in _PARTS:
                part = getattr(item, name, None)
                if part is not None:
                    pending.append((part, depth + 1))
        return found


def _items(container: Any) -> list[Any]:
    if isinstance(container, Mapping):
        mapping: Mapping[Any, Any] = container  # pyright: ignore[reportUnknownVariableType]
        return list(mapping.values())
    return list(container)


def _bindings(obj: Any) -> list[Mapping[str, Any]]:
    """The configs of the `RunnableBinding` layers around a runnable (`with_config`, `bind`), outermost first."""
    layers: list[Mapping[str, Any]] = []
    while len(layers) < 64:
        config = getattr(obj, "config", None)
        bound = getattr(obj, "bound", None)
        if not isinstance(config, Mapping) or bound is None:
            break
        layers.append(config)  # pyright: ignore[reportUnknownArgumentType]
        obj = bound
    return layers


def _handlers(config: Mapping[str, Any]) -> list[Any]:
    callbacks: Any = config.get("callbacks")
    if isinstance(callbacks, (list, tuple)):
        return _items(callbacks)
    return _items(getattr(callbacks, "handlers", None) or [])


def runnable_function_id(obj: Any) -> str:
    """How capture records of a Runnable's top-level runs name it: `langchain:<name>`.

    The name is that of a `PromptOpsCallbackHandler(name=...)` bound to it, else its run name
    (`.with_config(run_name=...)`), else `get_name()`: what the handler records for a run of it.
    """
    layers = _bindings(obj)
    for config in layers:
        for handler in _handlers(config):
            function = getattr(handler, "promptops_function", None)
            if isinstance(function, str) and function:
                return function
    for config in layers:
        run_name = config.get("run_name")
        if isinstance(run_name, str) and run_name:
            return f"langchain:{run_name}"
    get_name = getattr(obj, "get_name", None)
    name = get_name() if callable(get_name) else type(obj).__name__
    return f"langchain:{name}"


class RunnableTarget(Target):
    """A LangChain Runnable with a pinned prompt, ready to be invoked with a dataset record's inputs.

    The pinned prompt is found by the `promptops_prompt` attribute `pinned_prompt()` runnables have; when the
    chain holds several, its metadata names the one replay overrides
    (`chain.with_config(metadata={"promptops_prompt": NAME})`).

    Inputs: a record's inputs are the chain input as a dict. A chain whose input is not a dict (a string, a list
    of messages) was captured as `{"input": value}`; it gets `value` back, unless its input schema is an object
    (then the dict is passed as it is). The output is returned as it is when it is a string, number, boolean or
    `None`, else as JSON data (a message becomes its fields), as capture stores it.

    Calls go through `invoke` in replay's thread pool, or `ainvoke` under asyncio when some step can only run
    asynchronously (a `RunnableLambda` of an `async def`).
    """

    def __init__(self, spec: str, obj: Any) -> None:
        """Inspect a loaded runnable; use `load_target()`.

        Raises:
            ReplayError: it holds no pinned prompt, or several and its metadata does not say which.
        """
        self.spec = spec
        self.obj = obj
        components = _components(obj)
        pinned: dict[str, Any] = {}
        for component in components:
            name = getattr(component, "promptops_prompt", None)
            if isinstance(name, str) and name:
                pinned.setdefault(name, component)
        wanted: str | None = None
        for config in _bindings(obj):
            metadata: Any = config.get("metadata")
            if isinstance(metadata, Mapping) and "promptops_prompt" in metadata:
                wanted = str(_get(metadata, "promptops_prompt"))
                break
        if not pinned:
            raise ReplayError(
                f"{spec} is a Runnable without a pinned prompt: build its prompt with "
                "promptops_langchain.pinned_prompt(NAME) so replay can override the version"
            )
        if wanted is not None:
            if wanted not in pinned:
                raise ReplayError(
                    f"{spec}: its metadata names prompt {wanted!r}, but its pinned prompts are {sorted(pinned)}"
                )
            name = wanted
        elif len(pinned) > 1:
            raise ReplayError(
                f"{spec} uses prompts {', '.join(sorted(pinned))}; name the one to replay with "
                f".with_config(metadata={{'promptops_prompt': {sorted(pinned)[0]!r}}})"
            )
        else:
            name = next(iter(pinned))
        selector: Any = getattr(pinned[name], "promptops_selector", None)
        self.prompt_name = name
        self.selector: Selector | None = selector if isinstance(selector, tuple) else None
        self.function_id = runnable_function_id(obj)
        # A RunnableLambda of an async function keeps `afunc` and has no `func`: its invoke() raises.
        self.is_async = any(hasattr(c, "afunc") and not hasattr(c, "func") for c in components)
        self._mapping, self._required = _input_shape(obj)

    def chain_input(self, inputs: Mapping[str, Any]) -> Any:
        """The chain input for stored inputs: the dict, or `value` for `{"input": value}` of a non-dict chain."""
        if not self._mapping and set(inputs) == {"input"}:
            return inputs["input"]
        return dict(inputs)

    def arguments(self, inputs: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """`([chain input], {})`.

        Raises:
            TypeError: the chain takes a dict and the inputs lack some of its required keys.
        """
        if self._mapping:
            missing = [name for name in self._required if name not in inputs]
            if missing:
                raise TypeError(f"{self.spec} needs input(s) {missing} (the record's inputs: {sorted(inputs)})")
        return [self.chain_input(inputs)], {}

    def call(self, inputs: Mapping[str, Any]) -> Any:
        """`invoke` the runnable on the record's inputs."""
        return _as_data(self.obj.invoke(self.arguments(inputs)[0][0]))

    async def acall(self, inputs: Mapping[str, Any]) -> Any:
        """`ainvoke` the runnable on the record's inputs."""
        return _as_data(await self.obj.ainvoke(self.arguments(inputs)[0][0]))


def _get(mapping: Any, key: str) -> Any:
    return mapping[key]


def _input_shape(obj: Any) -> tuple[bool, list[str]]:
    """Whether the runnable takes a dict (its input schema is an object), and the keys it requires."""
    try:
        schema: Any = obj.get_input_jsonschema()
    except Exception:  # no schema to go by: a dict input is passed as it is
        return True, []
    if not isinstance(schema, Mapping) or schema.get("type") != "object":  # pyright: ignore[reportUnknownMemberType]
        return False, []
    required: list[Any] = list(schema.get("required") or [])  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    return True, [name for name in required if isinstance(name, str)]


def _as_data(output: Any) -> Any:
    """A runnable's output as replay compares it: plain values as they are, anything else as JSON data."""
    if isinstance(output, _PLAIN):
        return output
    from .._config import get_settings
    from .._serialize import to_jsonable

    return to_jsonable(output, max_chars=get_settings().max_value_chars)


def load_target(spec: str) -> Target:
    """Import `module:function` (or `module:Class.method`, or a Runnable) and check replay can override its prompt.

    The current directory is importable, as for `python -m`.

    Raises:
        ReplayError: the module or attribute does not exist, or it is neither decorated with `@promptops.track`
            nor a Runnable with a pinned prompt.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ReplayError(f"target {spec!r} is not module:function; write e.g. myapp.llm:summarize")
    # A path such as ../../etc is not a module name: importlib would raise TypeError on it (issue 11).
    for part, what in ((module_name, "module"), (attribute, "attribute")):
        if not all(name.isidentifier() for name in part.split(".")):
            raise ReplayError(
                f"target {spec!r}: {part!r} is not a Python {what} name; write module:function with dotted names, "
                "e.g. myapp.llm:summarize, and run from the directory that contains the package"
            )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ReplayError(
                f"cannot import {module_name!r} for target {spec!r}: no module named {exc.name!r}; run from the "
                "directory that contains it or put it on PYTHONPATH"
            ) from None
        raise ReplayError(f"importing {module_name!r} failed: {exc}") from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            names = [name for name in dir(obj) if not name.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ReplayError(f"{module_name} has no attribute {attribute!r} (target {spec!r}){hint}")
        obj = getattr(obj, part)
    info = track_info(obj)
    if info is None:
        if _is_runnable(obj):
            return RunnableTarget(spec, obj)
        raise ReplayError(
            f"{spec} is not decorated with @promptops.track(prompt=...): replay overrides the prompt it resolves; "
            "decorate it, replay the tracked function it calls, or give a LangChain Runnable built with "
            "promptops_langchain.pinned_prompt()"
        )
    if not callable(obj):
        raise ReplayError(f"{spec} is not callable")
    return Target(spec, obj, info.prompt, info.function, info.selector)
