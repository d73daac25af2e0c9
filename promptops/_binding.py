"""Binding a call's arguments to the function's parameter names: what spans and capture records call `inputs`.

Spans and capture records bind with the same `CallArguments`, so the two always agree. Built at decoration time;
a call costs a `zip`, not an `inspect.Signature.bind` (issue 16 moved this out of `_serialize`: binding is
not serialisation).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["ArgumentBinder", "CallArguments", "bind_arguments"]


class ArgumentBinder:
    """Maps a call's positional and keyword arguments to the function's parameter names, quickly.

    Build one per function at decoration time; calling it costs a `zip`, not an `inspect.Signature.bind`.

    Args:
        signature: The function's signature, including `self`/`cls` for methods called through the class
            function (the bound instance is then dropped from the result).
        exclude: Parameter names left out (the injected `prompt`).
    """

    __slots__ = ("_exclude", "_first", "_keywords", "_positional", "_signature", "_simple")

    def __init__(self, signature: inspect.Signature, *, exclude: Iterable[str] = ("prompt",)) -> None:
        kinds = inspect.Parameter
        parameters = list(signature.parameters.values())
        self._signature = signature
        self._exclude = tuple(exclude)
        self._simple = all(p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) for p in parameters)
        self._positional = tuple(p.name for p in parameters if p.kind is kinds.POSITIONAL_OR_KEYWORD)
        self._keywords = frozenset(p.name for p in parameters if p.kind is not kinds.POSITIONAL_ONLY)
        first = parameters[0] if parameters else None
        self._first = (
            first.name
            if first is not None
            and first.name in ("self", "cls")
            and first.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
            else None
        )

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind one call's arguments. Never raises.

        Args:
            args: The positional arguments.
            kwargs: The keyword arguments.

        Returns:
            Parameter name to value, in the order given; `*args` as a tuple and `**kwargs` as a dict under their
            own names. Arguments that do not fit the signature: `{"args": [...], "kwargs": {...}}`.
        """
        try:
            bound: dict[str, Any] | None = None
            positional = self._positional
            if self._simple and len(args) <= len(positional):
                bound = dict(zip(positional, args))
                if kwargs:
                    keywords, exclude = self._keywords, self._exclude
                    for name, value in kwargs.items():
                        if name in bound or name not in keywords:
                            bound = None
                            break
                        if name not in exclude:  # the injected `prompt`: left out as it comes
                            bound[name] = value
            if bound is None:
                bound = dict(self._signature.bind(*args, **kwargs).arguments)
            if self._first is not None:
                bound.pop(self._first, None)
            for name in self._exclude:  # one passed positionally
                bound.pop(name, None)
            return bound
        except Exception:  # the call does not fit the signature; it will raise TypeError itself
            return {
                "args": list(args),
                "kwargs": {name: value for name, value in kwargs.items() if name not in self._exclude},
            }


class CallArguments:
    """Binds the calls of one function, whether `args` include the receiver (`self`/`cls`) or not.

    Spans and capture records both record a call's inputs with it, so the two always agree.

    Args:
        func: The decorated function (the plain function for methods).
    """

    __slots__ = ("_bound", "_unbound", "drop_first")

    def __init__(self, func: Callable[..., Any]) -> None:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            signature = inspect.Signature()
        parameters = list(signature.parameters.values())
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.drop_first = bool(parameters) and parameters[0].name in ("self", "cls") and parameters[0].kind in kinds
        self._unbound = ArgumentBinder(signature)
        # Bound calls come without the receiver: bind them against the rest of the signature.
        self._bound = ArgumentBinder(signature.replace(parameters=parameters[1:])) if self.drop_first else self._unbound

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool) -> dict[str, Any]:
        """The call's arguments by parameter name, without `self`/`cls` and the injected `prompt`. Never raises.

        `bound` is positional: a call with keywords costs more, and every traced call binds (issue 11).
        """
        return (self._bound if bound else self._unbound)(args, kwargs)


def bind_arguments(
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    exclude: Iterable[str] = ("prompt",),
) -> dict[str, Any]:
    """Map a call's arguments to parameter names; see `ArgumentBinder` (build one of those on hot paths).

    Args:
        signature: The function's signature.
        args: The positional arguments.
        kwargs: The keyword arguments.
        exclude: Parameter names left out.

    Returns:
        Parameter name to value; `{"args": [...], "kwargs": {...}}` when the arguments do not fit. Never raises.
    """
    return ArgumentBinder(signature, exclude=exclude)(args, kwargs)
