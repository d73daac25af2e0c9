"""Scorers written as plain functions: `FunctionScorer` calls one per item, passing the arguments it declares.

A function declares any of `inputs`, `output`, `baseline` (the reference: the baseline output, or
`expected` in reference mode), `expected`, `latency_ms` and `error`, by name, and returns a number, a
`(number, reason)` tuple, a `Score`, or `None` (not applicable). A scorer bug must not lose a replay that
took minutes of model calls: an exception or an unusable return value makes that item's value `None` with
the reason, and is logged once per scorer.
"""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from ._base import CALL_RAISED, Score, ScoreInput, Scorer, ScorerError

__all__ = ["PARAMETERS", "FunctionScorer", "check_name"]

logger = logging.getLogger("promptops.scorers")

PARAMETERS: Final = ("inputs", "output", "baseline", "expected", "latency_ms", "error")
"""The parameters a scorer function may declare, by name."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: object, what: str) -> str:
    """Validate a metric name: an identifier, so that gates (`name.mean >= 0.8`) and reports can use it.

    Args:
        name: The proposed name.
        what: What it names, for the message.

    Returns:
        The name.

    Raises:
        ScorerError: It is not an identifier.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ScorerError(
            f"{what}: a scorer name must be an identifier (letters, digits, _), got {name!r}; "
            "give one with @promptops.scorer(name=...)"
        )
    return name


def _argument(parameter: str, item: ScoreInput) -> Any:
    if parameter == "inputs":
        return item.inputs
    if parameter == "output":
        return item.output
    if parameter == "baseline":
        return item.reference
    if parameter == "expected":
        return item.expected
    if parameter == "latency_ms":
        return item.latency_ms
    return item.error


class FunctionScorer(Scorer):
    """A `Scorer` that calls a function once per item; calling the scorer itself calls the function.

    Args:
        function: `def f(inputs, output, baseline, expected, latency_ms, error)`, declaring any of these
            parameters (others must have defaults); returns a number, `(number, reason)`, a `Score` or `None`.
        name: The metric name (default: the function's name).
        higher_is_better: Whether a larger value is an improvement.

    Raises:
        ScorerError: The function cannot be a scorer (an async function, an unknown required parameter, no
            usable name).
    """

    def __init__(self, function: Callable[..., Any], *, name: str | None = None, higher_is_better: bool = True) -> None:
        what = getattr(function, "__qualname__", None) or repr(function)
        self.name = check_name(name if name is not None else getattr(function, "__name__", None), f"scorer {what}")
        self.higher_is_better = higher_is_better
        self.function = function
        if inspect.iscoroutinefunction(function):
            raise ScorerError(f"scorer {self.name!r}: async functions cannot be scorers; make it a plain def")
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError) as exc:
            raise ScorerError(f"scorer {self.name!r}: cannot read the function's parameters ({exc})") from None
        wanted: list[str] = []
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                wanted = list(PARAMETERS)
                break
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            known = parameter.name in PARAMETERS and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
            if known:
                wanted.append(parameter.name)
            elif parameter.default is inspect.Parameter.empty:
                raise ScorerError(
                    f"scorer {self.name!r}: unknown parameter {parameter.name!r}; a scorer function takes any of "
                    f"{', '.join(PARAMETERS)} (by name)"
                )
        self.parameters: tuple[str, ...] = tuple(wanted)
        self.__doc__ = function.__doc__
        self.__wrapped__ = function
        self._warned = False
        self._warn_lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself (so a decorated function stays usable as a function)."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<FunctionScorer {self.name!r} of {getattr(self.function, '__qualname__', self.function)!r}>"

    def score(self, items: Sequence[ScoreInput]) -> list[Score]:
        """Call the function for each item.

        An item whose call raised gets `Score(None, "call raised")` unless the function declares `error`
        (then it is called, with `output=None`).

        Args:
            items: The records to score.

        Returns:
            One `Score` per item.
        """
        sees_errors = "error" in self.parameters
        scores: list[Score] = []
        for item in items:
            if item.error is not None and item.output is None and not sees_errors:
                scores.append(Score(None, CALL_RAISED))
                continue
            try:
                result = self.function(**{parameter: _argument(parameter, item) for parameter in self.parameters})
            except Exception as exc:
                self._warn("raised", exc)
                detail = (str(exc).strip().splitlines() or [""])[0][:200]
                reason = f"scorer raised {type(exc).__name__}" + (f": {detail}" if detail else "")
                scores.append(Score(None, reason))
                continue
            scores.append(self._to_score(result))
        return scores

    def _to_score(self, result: Any) -> Score:
        reason: Any = None
        value: Any = result
        if isinstance(result, Score):
            value, reason = result.value, result.reason
        elif isinstance(result, tuple) and len(result) == 2:  # pyright: ignore[reportUnknownArgumentType]
            value, reason = result  # pyright: ignore[reportUnknownVariableType]
        if value is None and (reason is None or isinstance(reason, str)):
            return Score(None, reason)
        if isinstance(value, numbers.Real) and (reason is None or isinstance(reason, str)):
            number = float(value)
            if math.isnan(number):
                return Score(None, reason or "scorer returned NaN")
            return Score(number, reason)
        message = f"scorer returned {result!r:.80}; expected a number, (number, reason), a Score or None"
        self._warn("returned an unusable value", None, message)
        return Score(None, message)

    def _warn(self, what: str, exc: BaseException | None, message: str | None = None) -> None:
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        logger.warning(
            "scorer %r %s; its value is None for such records: %s",
            self.name,
            what,
            message or f"{type(exc).__name__}: {exc}",
            exc_info=exc,
        )
