"""Resolution of a prompt to the freshest copy that can be had without blocking the caller.

Memory first: a fresh entry is returned at the cost of a dict lookup. An alias entry past 80% of its TTL is
still returned, and one background refresh per prompt starts (refresh-ahead, so a prompt in use picks up an
alias move within the TTL; however many callers arrive, there is one refresh in flight). Versions never
change and never expire.

A miss waits for the registry at most `registry_timeout`; the fetch runs in a daemon thread so the wait is a
hard bound whatever the network does. A fetch still running past that budget is abandoned, never reused: the
next call that wants the prompt starts a new one, and a late answer of the abandoned fetch is dropped if a newer
one has been applied (issue 11: a server dripping its answer kept a refresh, and so a stale alias, forever). When the registry fails, the last-known-good disk copy, then the
decorator's `fallback=` are used, and the failure is remembered so the next callers don't wait again: they
get the same answer at once while a background refresh retries.

MLflow, by contrast, evicts an expired alias and fetches it on the caller's thread (HTTP timeout 120 s,
up to 7 retries by default).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

from .._config import Selector, Settings
from .._errors import PromptNotFoundError, PromptUnavailableError, log_internal_error
from .._fork import fork_waits
from .._instrumentation import suppress_instrumentation
from ._disk import DiskCache
from ._prompt import Prompt
from ._registry import Registry, RegistryError, RegistryNotFound, describe, make_registry, redact_uri

__all__ = ["Entry", "Resolver"]

logger = logging.getLogger("promptops")

Key = tuple[str, Selector]
_REFRESH_AHEAD = 0.8  # refresh an alias once 80% of its TTL has passed
_RETRY_AFTER = 5.0  # after a failed fetch, seconds before the next attempt (capped by the TTL)
_FIRST_USE_ALLOWANCE = 30.0  # extra wait, once, while a local store's MLflow client is imported


@dataclass(slots=True)
class Entry:
    """A memory-cached prompt."""

    served: Prompt  # the copy callers get: source "cache" (or "disk" while the registry is unreachable)
    refresh_at: float  # monotonic time from which a call starts a background refresh; inf for versions
    failing: bool = False  # the last refresh failed (logged once per outage)


@dataclass
class _Failure:
    at: float
    reason: str
    not_found: bool


@dataclass(slots=True)
class _Fetch:
    """A fetch in flight: its outcome, its order among the key's fetches, and when it stops being worth waiting for."""

    future: Future[Prompt]
    generation: int
    expires: float


class Resolver:
    """Resolves prompts for one configuration (registry URI, TTL, budget, cache directory)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uri = settings.tracking_uri
        self.disk = DiskCache(settings.cache_dir, settings.tracking_uri)
        self._registry: Registry | None = None
        self._local = not settings.tracking_uri.startswith(("http://", "https://"))
        self._registry_lock = threading.Lock()
        self._lock = threading.Lock()
        self.entries: dict[Key, Entry] = {}  # read without the lock by @track's fast path; written under it
        self._inflight: dict[Key, _Fetch] = {}
        self._generations = 0  # fetches started, in order; an outcome older than the key's applied one is dropped
        self._applied: dict[Key, int] = {}
        self._failures: dict[Key, _Failure] = {}
        self._retry_after = min(_RETRY_AFTER, settings.cache_ttl)
        self.fetches = 0  # registry round trips started, for stats() and tests
        self._closed = False

    # -- the hot path -------------------------------------------------------------------------------------

    def resolve(self, name: str, selector: Selector, fallback: Prompt | None = None) -> Prompt:
        """Return the prompt, from memory when possible. See the module docstring for the order.

        Raises:
            PromptNotFoundError: the registry has no such prompt/version/alias and there is no fallback.
            PromptUnavailableError: no copy can be had anywhere.
        """
        key = (name, selector)
        entry = self.entries.get(key)
        if entry is not None:
            if time.monotonic() >= entry.refresh_at:
                self._start_fetch(key)
            return entry.served
        return self._resolve_cold(key, fallback)

    def cached(self, name: str, selector: Selector) -> Prompt | None:
        """The memory copy if there is one (starting a refresh when due), else `None`. Never blocks."""
        key = (name, selector)
        entry = self.entries.get(key)
        if entry is None:
            return None
        if time.monotonic() >= entry.refresh_at:
            self._start_fetch(key)
        return entry.served

    def resolve_async(self, name: str, selector: Selector) -> None:
        """Start fetching `name` at `selector` in the background unless it is cached or in flight."""
        key = (name, selector)
        if key not in self.entries:
            self._start_fetch(key)

    def pin(self, prompt: Prompt) -> None:
        """Serve `prompt` for its version from memory from now on, with no registry round trip.

        Replay's Ray workers get the versions the driver resolved this way: they need no registry access.
        """
        with self._lock:
            self.entries[(prompt.name, ("version", prompt.version))] = Entry(replace(prompt, source="cache"), math.inf)

    # -- misses ------------------------------------------------------------------------------------------

    def _resolve_cold(self, key: Key, fallback: Prompt | None) -> Prompt:
        failure = self._failures.get(key)
        if failure is not None and time.monotonic() - failure.at < self._retry_after:
            # Failed moments ago: answer now rather than make every caller wait out the budget again.
            self._start_fetch(key)
            return self._degrade(key, fallback, failure)
        future = self._start_fetch(key, force=True)
        with self._lock:
            running = self._inflight.get(key)
        # Wait until that fetch's own deadline, set when it started (with the one-time allowance if the MLflow
        # client was still to be built then): asking for the budget now could miss the allowance, as the fetch's
        # thread may have built the client meanwhile.
        expires = running.expires if running is not None and running.future is future else None
        timeout = self._budget() if expires is None else max(0.0, expires - time.monotonic())
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            failure = self._note_failure(key, f"no answer within {self.settings.registry_timeout:g}s", not_found=False)
        except RegistryNotFound as exc:
            failure = self._failures.get(key) or _Failure(time.monotonic(), str(exc), not_found=True)
        except RegistryError as exc:
            failure = self._failures.get(key) or _Failure(time.monotonic(), str(exc), not_found=False)
        entry = self.entries.get(key)  # a concurrent fetch may have succeeded meanwhile
        if entry is not None:
            return entry.served
        return self._degrade(key, fallback, failure)

    def _degrade(self, key: Key, fallback: Prompt | None, failure: _Failure) -> Prompt:
        name, selector = key
        if not failure.not_found:
            loaded = self._load_disk(key)
            if loaded is not None:
                return loaded
        if fallback is not None:
            return fallback
        where = redact_uri(self.uri)
        if failure.not_found:
            raise PromptNotFoundError(
                f"prompt {name!r} has no {describe(selector)} in the registry at {where} ({failure.reason}). "
                f"Register it (`promptops prompts register {name} --template-file FILE`), set the alias "
                f"(`promptops prompts alias {name} ALIAS VERSION`), or pass fallback= to @promptops.track.",
                name=name,
                selector=describe(selector),
                uri=where,
            )
        raise PromptUnavailableError(
            f"prompt {name!r} ({describe(selector)}) is unavailable: the registry at {where} failed "
            f"({failure.reason}) and there is no last-known-good copy in {self.disk.root}. Check that the "
            f"registry is reachable (tracking_uri / MLFLOW_TRACKING_URI), call promptops.preload() at start-up "
            f"while it is, or pass fallback= to @promptops.track.",
            name=name,
            selector=describe(selector),
            uri=where,
        )

    def _load_disk(self, key: Key) -> Prompt | None:
        name, selector = key
        try:
            loaded = self.disk.load(name, selector)
        except Exception:
            log_internal_error("disk cache load")
            return None
        if loaded is None:
            return None
        prompt = replace(loaded[0], source="disk", alias=selector[1] if selector[0] == "alias" else None)
        with self._lock:
            if key not in self.entries:
                # Serve it from memory from now on; a call after the retry delay refreshes in the background.
                self.entries[key] = Entry(prompt, time.monotonic() + self._retry_after, failing=True)
        logger.warning(
            "registry at %s unreachable; using last-known-good copy of %r (%s, version %d) from disk",
            redact_uri(self.uri),
            name,
            describe(selector),
            prompt.version,
        )
        return prompt

    # -- fetching ----------------------------------------------------------------------------------------

    def _budget(self) -> float:
        """How long a fetch may take: one registry round trip, plus importing MLflow once for a local store."""
        budget = self.settings.registry_timeout
        if self._local and not (self._registry is not None and self._registry.ready):
            budget += _FIRST_USE_ALLOWANCE  # importing MLflow for a local store is not a registry round trip
        return budget

    def _start_fetch(self, key: Key, *, force: bool = False) -> Future[Prompt]:
        """Start a background fetch of `key` unless one is in flight (or, without `force`, it failed lately).

        A fetch in flight past its budget is not joined: it is abandoned and a new one starts.
        """
        with self._lock:
            now = time.monotonic()
            running = self._inflight.get(key)
            if running is not None and now < running.expires:
                return running.future
            entry = self.entries.get(key)
            if not force and entry is not None and now < entry.refresh_at:
                return _done(entry.served)
            failure = self._failures.get(key)
            if not force and failure is not None and now - failure.at < self._retry_after:
                failed: Future[Prompt] = Future()
                failed.set_exception(RegistryError(failure.reason))
                return failed
            future = Future[Prompt]()
            self._generations += 1
            fetch = _Fetch(future, self._generations, now + self._budget())
            self._inflight[key] = fetch
            self.fetches += 1
        thread = threading.Thread(target=self._fetch, args=(key, fetch), name="promptops-registry", daemon=True)
        thread.start()
        return future

    def _get_registry(self) -> Registry:
        with self._registry_lock:
            if self._closed:  # a fetch started after close(): its registry's connections would never be closed
                raise RegistryError("the resolver was closed (promptops was reconfigured or shut down)")
            if self._registry is None:
                self._registry = make_registry(self.uri, timeout=self.settings.registry_timeout)
            return self._registry

    def _fetch(self, key: Key, fetch: _Fetch) -> None:
        suppress_instrumentation()  # this thread is ours: no orphan GET traces in an instrumented app (issue 12)
        name, selector = key
        registry = self._registry
        try:
            # The first fetch imports and builds the client: a fork waits for it (see promptops._fork).
            with fork_waits() if registry is None or not registry.ready else contextlib.nullcontext():
                prompt = self._get_registry().fetch(name, selector)
        except RegistryError as exc:
            if self._current(key, fetch):
                self._note_failure(key, str(exc), not_found=isinstance(exc, RegistryNotFound))
            self._finish(key, fetch, exc)
            return
        except BaseException as exc:  # a bug of ours or of a backend: never let it escape the thread
            if not self._closed:  # after close(), a fetch in flight may fail on the closed client: expected
                log_internal_error("registry fetch", exc)
            error = RegistryError(f"{type(exc).__name__}: {exc}")
            if self._current(key, fetch):
                self._note_failure(key, str(error), not_found=False)
            self._finish(key, fetch, error)
            return
        refresh_at = float("inf")
        if selector[0] == "alias":
            refresh_at = time.monotonic() + self.settings.cache_ttl * _REFRESH_AHEAD
        with self._lock:
            stale = self._applied.get(key, 0) > fetch.generation  # a newer fetch has answered: this one was abandoned
            previous = self.entries.get(key)
            if not stale:
                self._applied[key] = fetch.generation
                self.entries[key] = Entry(replace(prompt, source="cache"), refresh_at)
                self._failures.pop(key, None)
        if stale:
            self._finish(key, fetch, prompt)
            return
        if previous is not None and previous.failing:
            logger.warning("registry at %s reachable again; %r refreshed", redact_uri(self.uri), name)
        if previous is not None and previous.served.version != prompt.version:
            logger.info("%r %s now resolves to version %d", name, describe(selector), prompt.version)
        try:
            self.disk.save(prompt, selector)
        except OSError as exc:
            logger.warning("cannot write last-known-good copy of %r to %s: %s", name, self.disk.root, exc)
        except Exception:
            log_internal_error("disk cache save")
        self._finish(key, fetch, prompt)

    def _current(self, key: Key, fetch: _Fetch) -> bool:
        """Whether no newer fetch of `key` has answered (a failure of an abandoned fetch is then still news)."""
        with self._lock:
            return self._applied.get(key, 0) <= fetch.generation

    def _finish(self, key: Key, fetch: _Fetch, outcome: Prompt | BaseException) -> None:
        with self._lock:
            if self._inflight.get(key) is fetch:
                del self._inflight[key]
        if isinstance(outcome, BaseException):
            fetch.future.set_exception(outcome)
        else:
            fetch.future.set_result(outcome)

    def _note_failure(self, key: Key, reason: str, *, not_found: bool) -> _Failure:
        now = time.monotonic()
        failure = _Failure(now, reason, not_found)
        with self._lock:
            self._failures[key] = failure
            entry = self.entries.get(key)
            if entry is not None and entry.refresh_at != float("inf"):
                entry.refresh_at = now + self._retry_after
                first = not entry.failing
                entry.failing = True
            else:
                first = False
        if first:
            logger.warning(
                "cannot refresh %r (%s) from %s: %s; serving the cached copy",
                key[0],
                describe(key[1]),
                redact_uri(self.uri),
                reason,
            )
        return failure

    # -- lifecycle ---------------------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Wait for fetches in flight to finish; `False` if some were still running at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [fetch.future for fetch in self._inflight.values()]
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                pending[0].exception(timeout=remaining)
            except FutureTimeout:
                return False

    def after_fork(self) -> None:
        """In a forked child: the parent's fetch threads and connections did not come along; start clean."""
        self._lock = threading.Lock()
        self._registry_lock = threading.Lock()
        self._inflight = {}
        self._registry = None  # the parent's sockets are not ours to use or close

    def close(self) -> None:
        """Release the registry connection. Fetches in flight finish on their own (daemon threads)."""
        self._closed = True
        with self._registry_lock:
            registry, self._registry = self._registry, None
        if registry is not None:
            try:
                registry.close()
            except Exception:
                log_internal_error("registry close")


def _done(prompt: Prompt) -> Future[Prompt]:
    future: Future[Prompt] = Future()
    future.set_result(prompt)
    return future
