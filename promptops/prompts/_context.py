"""Per-context state: `use_prompt` overrides and the prompt of the tracked call in progress.

Both live in `contextvars`, so they follow the code across `await`s and into asyncio tasks created inside
the block, and stay separate between threads (a thread started inside a block does not inherit it unless the
caller runs it in `contextvars.copy_context()`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from .._config import Selector, parse_selector
from ._prompt import Prompt

__all__ = ["current_prompt", "use_prompt"]

NO_OVERRIDES: Mapping[str, Selector] = MappingProxyType({})
overrides: ContextVar[Mapping[str, Selector]] = ContextVar("promptops_overrides", default=NO_OVERRIDES)
active_prompt: ContextVar[Prompt | None] = ContextVar("promptops_prompt", default=None)
# True while replay runs a call (spans say `promptops.replay=true`; capture skips the call).
replay_active: ContextVar[bool] = ContextVar("promptops_replay", default=False)


@contextlib.contextmanager
def use_prompt(name: str, *, version: int | str | None = None, alias: str | None = None) -> Generator[None]:
    """Make every tracked call inside the block use this version (or alias) of prompt `name`.

    Takes precedence over the decorator's `version=`/`alias=`, configured pins and the default alias. Nested
    blocks stack; leaving a block restores what was there before. Safe across threads and asyncio tasks.

    ```python
    with promptops.use_prompt("summarize", version=4):
        summarize("...")   # runs on version 4 of "summarize"
    ```

    Args:
        name: The prompt's registry name.
        version: A version number.
        alias: An alias (give either `version` or `alias`).

    Raises:
        ValueError: neither or both of `version` and `alias` were given.
    """
    if (version is None) == (alias is None):
        raise ValueError("use_prompt() takes exactly one of version= or alias=")
    if version is not None:
        selector = parse_selector(version, what=f"use_prompt({name!r}, version=...)")
        if selector[0] != "version":
            raise ValueError(f"use_prompt({name!r}, version={version!r}): a version is a number; use alias= for names")
    else:
        selector = ("alias", str(alias).lstrip("@"))
    token = overrides.set(MappingProxyType({**overrides.get(), name: selector}))
    try:
        yield
    finally:
        overrides.reset(token)


def current_prompt() -> Prompt | None:
    """The prompt of the tracked call in progress, or `None` outside a tracked call.

    Lets a function that does not declare a `prompt` parameter reach it, and lets helpers it calls do so too.
    """
    return active_prompt.get()
