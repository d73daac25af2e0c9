"""Scorers by name: the built-ins, those registered with `@scorer` or `register()`, and `module:function`.

`resolve()` is what `promptops replay --scorer NAME` and `replay.run(scorers=[...])` go through: every name
is checked before anything runs, and an unknown one is a one-line `ScorerError` listing what exists and the
closest match.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, overload

from ._base import Scorer, ScorerError
from ._function import FunctionScorer, check_name

__all__ = ["BUILTINS", "available", "get", "register", "resolve", "scorer"]


def _rouge(kind: str) -> Callable[[str | None], Scorer]:
    def make(argument: str | None) -> Scorer:
        del argument
        from ._text import Rouge

        return Rouge(kind)

    return make


def _simple(class_name: str, module: str) -> Callable[[str | None], Scorer]:
    def make(argument: str | None) -> Scorer:
        del argument
        return getattr(importlib.import_module(module, __package__), class_name)()

    return make


def _semantic(argument: str | None) -> Scorer:
    from ._semantic import Semantic

    return Semantic(argument)


# Factories, so that naming a scorer imports only its own module; the argument is what follows `name:`.
_FACTORIES: dict[str, Callable[[str | None], Scorer]] = {
    "rouge1": _rouge("rouge1"),
    "rouge2": _rouge("rouge2"),
    "rougeL": _rouge("rougeL"),
    "bleu": _simple("Bleu", "._text"),
    "semantic": _semantic,
    "exact_match": _simple("ExactMatch", "._text"),
    "length_ratio": _simple("LengthRatio", "._text"),
    "latency": _simple("Latency", "._properties"),
    "errors": _simple("Errors", "._properties"),
}
BUILTINS: tuple[str, ...] = tuple(_FACTORIES)
"""The built-in scorer names."""
_WITH_ARGUMENT = {"semantic": "a model name or path"}

_registered: dict[str, Scorer] = {}
_lock = threading.Lock()


def register(scorer: Scorer) -> Scorer:
    """Make a scorer available by its name (`--scorer NAME`, `resolve(["NAME"])`) in this process.

    Registering a name again replaces the earlier scorer (a module imported twice, a notebook cell run again).

    Args:
        scorer: The scorer; its `name` must be an identifier and not a built-in name.

    Returns:
        The scorer.

    Raises:
        ScorerError: The name is a built-in's or not an identifier.
    """
    name = check_name(scorer.name, f"scorer {scorer!r}")
    if name in _FACTORIES:
        raise ScorerError(f"{name!r} is a built-in scorer; give yours another name: @promptops.scorer(name=...)")
    with _lock:
        _registered[name] = scorer
    return scorer


def unregister(name: str) -> None:
    """Forget a registered scorer (tests use it); unknown names are ignored.

    Args:
        name: The scorer's name.
    """
    with _lock:
        _registered.pop(name, None)


def available() -> list[str]:
    """The scorer names `get()` accepts: the built-ins, then registered scorers in alphabetical order.

    Returns:
        Names.
    """
    with _lock:
        return [*BUILTINS, *sorted(_registered)]


def _unknown(name: str) -> ScorerError:
    names = available()
    message = f"unknown scorer {name!r}; available: {', '.join(names)}"
    # Case and `-` are the usual slips (`rouge-l`, `ROUGEL`); a prefix (`length`) names one scorer.
    wanted = name.lower().replace("-", "_")
    folded = {candidate.lower(): candidate for candidate in names}
    close = [folded[match] for match in difflib.get_close_matches(wanted, list(folded), n=1, cutoff=0.75)]
    prefixed = [candidate for candidate in names if len(wanted) >= 3 and candidate.lower().startswith(wanted)]
    suggestion = close[0] if close else prefixed[0] if len(prefixed) == 1 else None
    if suggestion is not None:
        return ScorerError(f"{message}; did you mean {suggestion!r}?")
    return ScorerError(f"{message}; or give your own as module:function")


def _import(spec: str) -> Scorer:
    module_name, _, attribute = spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not module_name or not attribute:
        raise ScorerError(f"scorer {spec!r}: expected module:function, e.g. myapp.scorers:is_json")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # The `promptops` console script does not put the working directory on sys.path, `python -m` does.
            if exc.name != module_name.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise ScorerError(f"cannot import scorer {spec!r}: {type(exc).__name__}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ScorerError(f"cannot import scorer {spec!r}: {module_name} has no attribute {attribute!r}")
        found = getattr(found, part)
    return _coerce(found, repr(spec))


def _coerce(value: Any, what: str) -> Scorer:
    if isinstance(value, Scorer):
        return value
    if isinstance(value, type):
        if not issubclass(value, Scorer):
            raise ScorerError(f"scorer {what} is the class {value.__name__}, not a Scorer subclass or a function")
        try:
            return value()
        except TypeError as exc:
            raise ScorerError(f"scorer {what}: cannot create {value.__name__}() without arguments ({exc})") from None
    if callable(value):
        return FunctionScorer(value)
    raise ScorerError(f"scorer {what} is a {type(value).__name__}, not a Scorer or a function")


def get(name: str) -> Scorer:
    """The scorer a name stands for.

    Accepted: a built-in name (`rougeL`, `bleu`, `semantic`, ...), `semantic:<model name or path>`, the name
    of a scorer registered with `@scorer` or `register()`, or `module:function` (imported; the function, a
    `Scorer` instance or a `Scorer` subclass).

    Args:
        name: The name.

    Returns:
        A scorer (a new one for built-ins).

    Raises:
        ScorerError: Unknown name, or a `module:function` that cannot be imported or is not a scorer.
    """
    text = name.strip()
    base, colon, argument = text.partition(":")
    factory = _FACTORIES.get(base)
    if factory is not None:
        if not colon:
            return factory(None)
        if base not in _WITH_ARGUMENT:
            raise ScorerError(f"scorer {base!r} takes no argument, got {text!r}")
        if not argument.strip():
            raise ScorerError(f"scorer {text!r}: give {_WITH_ARGUMENT[base]} after {base + ':'!r}")
        return factory(argument.strip())
    with _lock:
        registered = _registered.get(text)
    if registered is not None:
        return registered
    if colon:
        return _import(text)
    raise _unknown(text)


def resolve(specs: Sequence[str | Scorer | Callable[..., Any]]) -> list[Scorer]:
    """Turn scorer names, `Scorer` objects and functions into scorers, checking them all first.

    ```python
    from promptops.scorers import resolve


    def is_short(output):
        return len(output) < 80


    scorers = resolve(["rougeL", "bleu", is_short])
    assert [s.name for s in scorers] == ["rougeL", "bleu", "is_short"]
    ```

    Args:
        specs: Names (see `get()`), `Scorer` instances or subclasses, or functions (wrapped in a
            `FunctionScorer` named after the function, not registered).

    Returns:
        The scorers, in order.

    Raises:
        ScorerError: An unknown name, an unusable object, or two scorers with the same name (their metrics
            would collide).
    """
    given: Sequence[Any] = [specs] if isinstance(specs, (str, Scorer)) else specs
    scorers: list[Scorer] = []
    for spec in given:
        if isinstance(spec, str):
            scorers.append(get(spec))
        else:
            scorers.append(_coerce(spec, repr(spec)))
    seen: set[str] = set()
    for one in scorers:
        if one.name in seen:
            raise ScorerError(f"two scorers are named {one.name!r}; each metric needs its own name")
        seen.add(one.name)
    return scorers


@overload
def scorer(function: Callable[..., Any], /) -> FunctionScorer: ...


@overload
def scorer(
    *, name: str | None = None, higher_is_better: bool = True
) -> Callable[[Callable[..., Any]], FunctionScorer]: ...


def scorer(
    function: Callable[..., Any] | None = None, /, *, name: str | None = None, higher_is_better: bool = True
) -> FunctionScorer | Callable[[Callable[..., Any]], FunctionScorer]:
    """Make a function a scorer and register it by name, so `--scorer NAME` finds it once its module is imported.

    The function declares any of `inputs`, `output`, `baseline`, `expected`, `latency_ms` and `error` (by
    name) and returns a number, `(number, reason)`, a `Score`, or `None` when the record is not applicable.
    `baseline` is what the output is compared with: the baseline output, or the record's `expected` in
    reference mode. The decorated name stays callable as the function.

    ```python
    import json

    import promptops.scorers


    @promptops.scorers.scorer
    def is_json(output):
        try:
            json.loads(output)
        except (TypeError, ValueError):
            return 0.0, "not JSON"
        return 1.0


    assert is_json('{"ok": true}') == 1.0
    assert promptops.scorers.get("is_json") is is_json
    ```

    Args:
        function: The function (when used as `@scorer` without parentheses).
        name: The metric name; default: the function's name.
        higher_is_better: Whether a larger value is an improvement.

    Returns:
        A `FunctionScorer` (or, with keyword arguments only, a decorator making one).

    Raises:
        ScorerError: The function cannot be a scorer, or the name is a built-in's.
    """

    def decorate(target: Callable[..., Any]) -> FunctionScorer:
        made = FunctionScorer(target, name=name, higher_is_better=higher_is_better)
        register(made)
        return made

    if function is not None:
        return decorate(function)
    return decorate
