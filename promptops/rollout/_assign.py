"""Which arm a call takes: the sticky key of a call, `rollout_key()` blocks, and the labelled prompt copies.

Only calls that would use the rollout's baseline alias take part: `use_prompt`, `version=`/`alias=` on the
decorator and configured pins keep winning (the decorator does not ask us for those calls).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import random
from collections.abc import Callable, Generator, Mapping
from contextvars import ContextVar
from time import monotonic
from typing import Any

from .. import prompts
from .._errors import log_internal_error
from ..prompts import Prompt
from . import _cache  # pyright: ignore[reportPrivateUsage]
from ._state import RolloutState, bucket

__all__ = ["KeyReader", "assign", "rollout_key"]

_UNSET: Any = object()
_block_key: ContextVar[Any] = ContextVar("promptops_rollout_key", default=_UNSET)
_random = random.random


@contextlib.contextmanager
def rollout_key(value: object) -> Generator[None]:
    """Give every tracked call inside the block this sticky rollout key (a user id, a session id, ...).

    While a rollout of a prompt is running, calls with the same key get the same arm (baseline or candidate)
    in every process, for as long as the share is unchanged; raising the share only moves keys to the
    candidate. The block's key takes precedence over the decorator's `rollout_key=` argument. Blocks nest and
    follow the code across `await`s, like `use_prompt`.

    ```python
    with promptops.rollout_key(user.id):
        summarize(text)
    ```

    Args:
        value: The key (compared as `str(value)`). `None` means no key: the arm is drawn per call.
    """
    token = _block_key.set(value)
    try:
        yield
    finally:
        _block_key.reset(token)


class KeyReader:
    """Reads a call's sticky key: the `rollout_key()` block, else the named argument. Built at decoration time.

    Attributes:
        argument: The argument named by `rollout_key=`.
        quiet: The rollout state (`_cache.Entry`) `assign` last found with no rollout running for the function's
            prompt: until its `refresh_at` the decorator's warm path skips `assign` altogether. An entry the cache
            replaces gets `refresh_at = -inf` (`_cache.retire`), so a new state is seen by the next call.
    """

    __slots__ = ("_indexes", "_signature", "argument", "quiet")

    def __init__(self, func: Callable[..., Any], argument: str | None) -> None:
        self.argument = argument
        self.quiet: _cache.Entry = _cache.NOT_QUIET
        try:
            self._signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self._signature = None
        self._indexes: dict[str, tuple[int | None, Any]] = {}

    def _index(self, name: str) -> tuple[int | None, Any]:
        # (positional index, default) of a parameter, computed once per name.
        found = self._indexes.get(name)
        if found is None:
            index: int | None = None
            default: Any = None
            if self._signature is not None:
                parameters = list(self._signature.parameters.values())
                for position, parameter in enumerate(parameters):
                    if parameter.name == name:
                        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                            index = position
                        if parameter.default is not parameter.empty:
                            default = parameter.default
                        break
            found = self._indexes[name] = (index, default)
        return found

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], state: RolloutState, bound: bool) -> Any:
        """The key of a call, or `None` (no key: the arm is drawn at random)."""
        value = _block_key.get()
        if value is not _UNSET:
            return value
        name = self.argument or state.key
        if name is None:
            return None
        if name in kwargs:
            return kwargs[name]
        index, default = self._index(name)
        if index is not None:
            if bound:
                index -= 1
            if 0 <= index < len(args):
                return args[index]
        return default


def _labelled(served: Prompt, state: RolloutState, arm: str) -> Prompt:
    return dataclasses.replace(served, rollout_id=state.id, rollout_arm=arm)


def assign(
    name: str, served: Prompt, keys: KeyReader, args: tuple[Any, ...], kwargs: Mapping[str, Any], bound: bool
) -> Prompt:
    """The prompt this call gets: `served` (the baseline alias's copy) or the candidate, labelled with the arm.

    Never raises and never waits for the registry: on any trouble the call keeps `served`.
    """
    try:
        cache = _cache.current or _cache.rollout_cache()
        entry = cache.entries.get(name)
        if entry is None or monotonic() >= entry.refresh_at:
            entry = cache.entry(name)
        state = entry.state
        if state is None or not state.running:
            keys.quiet = entry  # nothing to assign until this state is due or replaced
            return served
        if served.alias != state.baseline:
            return served
        key = keys(args, kwargs, state, bound)
        if key is None:
            point = _random()
        else:
            text = key if type(key) is str else str(key)
            buckets = entry.buckets
            point = buckets.get(text)
            if point is None:
                point = bucket(state.id, text)
                if len(buckets) >= _cache.BUCKETS_KEPT:
                    buckets.clear()
                buckets[text] = point
        if point < state.share:
            resolver = prompts.current
            wanted = entry.candidate_key
            if wanted is None:
                wanted = entry.candidate_key = (name, ("version", state.candidate))
            found = resolver.entries.get(wanted) if resolver is not None else None
            if found is not None:
                candidate = found.served
                memo = entry.candidate
                if memo is None or memo[0] is not candidate:
                    memo = entry.candidate = (candidate, _labelled(candidate, state, "candidate"))
                return memo[1]
            # The candidate is not in memory (the cache was just rebuilt): start fetching it, serve the baseline.
            prompts.resolver().resolve_async(name, ("version", state.candidate))
        memo = entry.baseline
        if memo is None or memo[0] is not served:
            memo = entry.baseline = (served, _labelled(served, state, "baseline"))
        return memo[1]
    except Exception:
        log_internal_error("rollout assignment")
        return served
