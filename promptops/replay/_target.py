"""What replay calls: a `module:function` decorated with `@promptops.track`, loaded and called on stored inputs.

Stored inputs are JSON data keyed by parameter name (see `promptops._serialize.ArgumentBinder`). Calling the
target again rebuilds them: positional-only parameters go by position, `*args` and `**kwargs` are spread, and a
parameter annotated with a dataclass or pydantic model (also inside `list[...]`, `X | None`, ...) gets that type
back, validated by pydantic.
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
from .._track import track_info

__all__ = ["ReplayError", "Target", "load_target"]


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
            return _joined(list(result))
        return result

    async def acall(self, inputs: Mapping[str, Any]) -> Any:
        """Call an async target (awaiting it, or draining an async generator)."""
        args, kwargs = self.arguments(inputs)
        result = self.obj(*args, **kwargs)
        if inspect.isasyncgen(result):
            return _joined([item async for item in result])
        if inspect.isawaitable(result):
            return await result
        return result


def _joined(items: list[Any]) -> Any:
    return "".join(items) if items and all(isinstance(item, str) for item in items) else items


def load_target(spec: str) -> Target:
    """Import `module:function` (or `module:Class.method` for a static or class method) and check it is tracked.

    The current directory is importable, as for `python -m`.

    Raises:
        ReplayError: the module or attribute does not exist, or it is not decorated with `@promptops.track`.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ReplayError(f"target {spec!r} is not module:function; write e.g. myapp.llm:summarize")
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
        raise ReplayError(
            f"{spec} is not decorated with @promptops.track(prompt=...): replay overrides the prompt it resolves; "
            "decorate it, or replay the tracked function it calls"
        )
    if not callable(obj):
        raise ReplayError(f"{spec} is not callable")
    return Target(spec, obj, info.prompt, info.function, info.selector)
