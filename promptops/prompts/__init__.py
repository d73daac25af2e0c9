"""Prompts: the `Prompt` value, registry backends, memory and disk caches, overrides.

`resolver()` returns the process-wide `Resolver` for the current settings; it is rebuilt when `configure()`
changes them.
"""

from __future__ import annotations

import os
import threading

from .._config import Selector, Settings, get_settings, on_change, parse_selector
from .._errors import PromptUnavailableError
from ._context import NO_OVERRIDES, active_prompt, current_prompt, overrides, replay_active, use_prompt
from ._prompt import Message, Prompt, Source, Template
from ._resolver import Resolver

__all__ = [
    "NO_OVERRIDES",
    "Message",
    "Prompt",
    "Resolver",
    "Source",
    "Template",
    "active_prompt",
    "current_prompt",
    "overrides",
    "parse_reference",
    "preload",
    "replay_active",
    "resolver",
    "selector_for",
    "use_prompt",
]

_lock = threading.Lock()
_resolver: Resolver | None = None
current: Resolver | None = None  # the same object as _resolver, read by @track's fast path


def resolver() -> Resolver:
    """The resolver for the current settings."""
    current = _resolver
    if current is None:
        settings = get_settings()
        with _lock:
            current = _resolver or _install(Resolver(settings))
    return current


def _install(new: Resolver | None) -> Resolver:
    global _resolver, current
    old, _resolver = _resolver, new
    current = new
    if old is not None:
        old.close()
    return new  # type: ignore[return-value]


def _settings_changed(settings: Settings | None) -> None:
    with _lock:
        if _resolver is not None and _resolver.settings != settings:
            _install(None)


on_change(_settings_changed)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    if _resolver is not None:
        _resolver.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def selector_for(name: str, decorator: Selector | None, settings: Settings) -> Selector:
    """Which version of `name` to use: override > decorator `version=`/`alias=` > pin > default alias."""
    override = overrides.get().get(name)
    if override is not None:
        return override
    if decorator is not None:
        return decorator
    pin = settings.pins.get(name)
    if pin is not None:
        return pin
    return ("alias", settings.default_alias)


def parse_reference(reference: str) -> tuple[str, Selector | None]:
    """Split `name`, `name@alias` or `name/3` (the CLI's and `preload()`'s notation)."""
    if "@" in reference:
        name, _, alias = reference.partition("@")
        if not name or not alias:
            raise ValueError(f"expected NAME@ALIAS, got {reference!r}")
        return name, ("alias", alias)
    if "/" in reference:
        name, _, version = reference.rpartition("/")
        selector = parse_selector(version, what=f"{reference!r}")
        if not name or selector[0] != "version":
            raise ValueError(f"expected NAME/VERSION, got {reference!r}")
        return name, selector
    if not reference:
        raise ValueError("empty prompt name")
    return reference, None


def preload(prompts: list[str] | tuple[str, ...]) -> dict[str, Prompt]:
    """Resolve prompts now, at start-up, so a service fails fast instead of on its first request.

    Each entry is a name (resolved as a tracked call would: pin, else the default alias), `name@alias` or
    `name/version`. All are fetched concurrently. A last-known-good copy on disk counts as available: a
    restart during a registry outage still starts.

    Args:
        prompts: Prompt references to resolve.

    Returns:
        The resolved prompts by reference.

    Raises:
        PromptUnavailableError: one of them cannot be had; the message names each that failed.
    """
    settings = get_settings()
    current = resolver()
    parsed = [(reference, *parse_reference(reference)) for reference in prompts]
    wanted = [(reference, name, selector_for(name, selector, settings)) for reference, name, selector in parsed]
    for _, name, selector in wanted:  # start every fetch, then wait: one budget for all, not one each
        current.resolve_async(name, selector)
    resolved: dict[str, Prompt] = {}
    errors: list[PromptUnavailableError] = []
    for reference, name, selector in wanted:
        try:
            resolved[reference] = current.resolve(name, selector)
        except PromptUnavailableError as exc:
            errors.append(exc)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        first = errors[0]
        raise PromptUnavailableError(
            "; ".join(str(error) for error in errors), name=first.name, selector=first.selector, uri=first.uri
        )
    return resolved
