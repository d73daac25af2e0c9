"""What each process knows of the rollouts: one registry read per prompt per TTL, in the background.

The rollout state of a prompt is read the way prompts are (issue 14): from memory on the call path; a read of
the prompt's tags starts in a daemon thread once 80% of `cache_ttl` has passed (one in flight per prompt);
when the registry fails, the last state seen stays in force, retried after a few seconds. The first time a
process meets a prompt it reads the state's last-known-good copy from disk (one small file, once) and starts
the registry read: a process restarted during an outage keeps serving the arms it served.

Before a running rollout is published to callers, its candidate version is fetched into the prompt cache,
so no call waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .. import prompts
from .._config import Settings, get_settings, on_change
from .._errors import PromptUnavailableError, log_internal_error
from .._fork import fork_waits
from .._instrumentation import suppress_instrumentation
from ..prompts import Prompt
from ..prompts._registry import MlflowRegistry, RegistryError, RestRegistry, redact_uri
from ._state import RolloutState, tag_dict

__all__ = ["BUCKETS_KEPT", "NOT_QUIET", "Entry", "RolloutCache", "retire", "rollout_cache"]

logger = logging.getLogger("promptops")
_REFRESH_AHEAD = 0.8
_RETRY_AFTER = 5.0
_FORMAT = 1
BUCKETS_KEPT = 10_000  # sticky keys remembered per rollout (about 1 MB): a busy service's active users


@dataclass(slots=True)
class Entry:
    """What a process knows of one prompt's rollout, and the labelled prompt copies it hands out."""

    state: RolloutState | None  # None: no rollout running (or not known yet)
    refresh_at: float
    tags: dict[str, str] | None = None  # the rollout tags last read, to save the disk copy only on change
    failing: bool = False
    # (copy from the prompt cache, the same copy labelled with the arm): one object per arm, reused per call.
    baseline: tuple[Prompt, Prompt] | None = None
    candidate: tuple[Prompt, Prompt] | None = None
    # The candidate's key in the prompt cache, built at its first use rather than per call.
    candidate_key: tuple[str, tuple[str, int]] | None = None
    # Sticky keys' buckets in this rollout (`_state.bucket`), so a returning key costs a dict lookup, not a hash.
    # Kept across reads while the rollout id is the same; emptied when it reaches `BUCKETS_KEPT` keys.
    buckets: dict[str, float] = field(default_factory=dict[str, float])


NOT_QUIET = Entry(None, float("-inf"))
"""`KeyReader.quiet` before any state was seen: always due."""


def retire(entry: Entry | None) -> None:
    """Mark an entry the cache no longer holds as due, so a `KeyReader.quiet` holding it lets calls through."""
    if entry is not None:
        entry.refresh_at = float("-inf")


class _RestTags(RestRegistry):
    """Reads a prompt's tags over MLflow's REST API, with the prompt reads' client, credentials and timeout."""

    def prompt_tags(self, name: str) -> dict[str, str] | None:
        """The prompt's tags, or `None` when there is no such prompt. Raises `RegistryError`."""
        try:
            response = self._client.get(self._base + "/api/2.0/mlflow/registered-models/get", params={"name": name})
        except self._httpx.HTTPError as exc:
            raise RegistryError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code == 404:
            return None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            if isinstance(body, dict) and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":  # pyright: ignore[reportUnknownMemberType]
                return None
            raise RegistryError(f"HTTP {response.status_code}: {response.text[:200]}")
        model: dict[str, Any] = cast(dict[str, Any], body.get("registered_model") or {})  # pyright: ignore[reportUnknownMemberType]
        return tag_dict(model.get("tags"))


class _ClientTags(MlflowRegistry):
    """Reads a prompt's tags through the MLflow client's registry store (sqlite, Databricks, ...)."""

    def prompt_tags(self, name: str) -> dict[str, str] | None:
        """The prompt's tags, or `None` when there is no such prompt. Raises `RegistryError`."""
        try:
            # MlflowClient.get_prompt() answers None for *any* failure: an outage would read as "no rollout".
            store: Any = self._get_client()._get_registry_client().store
            model: Any = store.get_registered_model(name)
        except Exception as exc:
            if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise RegistryError(f"{type(exc).__name__}: {exc}") from None
        return tag_dict(model.tags)


def _reader(uri: str, timeout: float) -> _RestTags | _ClientTags:
    if uri.startswith(("http://", "https://")):
        return _RestTags(uri, timeout=timeout)
    return _ClientTags(uri, timeout=timeout)


class RolloutCache:
    """The rollout states known to this process, for one configuration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries: dict[str, Entry] = {}  # read without the lock on the call path; written under it
        digest = hashlib.sha256(settings.tracking_uri.encode()).hexdigest()[:12]
        self.root = settings.cache_dir / "rollouts" / digest
        self._lock = threading.Lock()
        self._inflight: set[str] = set()
        self._reader: _RestTags | _ClientTags | None = None
        self._retry_after = min(_RETRY_AFTER, settings.cache_ttl)
        self.reads = 0  # registry reads started, for tests

    def entry(self, name: str) -> Entry:
        """What is known of `name`'s rollout now. Never waits for the registry; starts a read when due."""
        entry = self.entries.get(name)
        if entry is None:
            return self._first_sight(name)
        if time.monotonic() >= entry.refresh_at:
            self._start_read(name)
        return entry

    def _first_sight(self, name: str) -> Entry:
        state, tags = self._load_disk(name)
        with self._lock:
            entry = self.entries.get(name)
            if entry is None:
                # Until the first read answers, the disk copy (or no rollout) is in force; no call waits for it.
                entry = self.entries[name] = Entry(state, float("inf"), tags)
        self._start_read(name)
        return entry

    def _start_read(self, name: str) -> None:
        with self._lock:
            if name in self._inflight:
                return
            self._inflight.add(name)
            self.reads += 1
        thread = threading.Thread(target=self._read_in_background, args=(name,), name="promptops-rollout", daemon=True)
        thread.start()

    def _read_in_background(self, name: str) -> None:
        suppress_instrumentation()  # this thread is ours: no orphan GET traces in an instrumented app (issue 12)
        self._read(name)

    def refresh(self, name: str) -> RolloutState | None:
        """Read `name`'s rollout from the registry now, on this thread (CLI and tests). Raises `RegistryError`."""
        self._read(name, raise_errors=True)
        entry = self.entries.get(name)
        return entry.state if entry is not None else None

    def _read(self, name: str, *, raise_errors: bool = False) -> None:
        try:
            with self._lock:
                self._inflight.add(name)
            reader = self._reader
            # The first read imports and builds the client: a fork waits for it (see promptops._fork).
            with fork_waits() if reader is None or not reader.ready else contextlib.nullcontext():
                if reader is None:
                    reader = self._reader = _reader(self.settings.tracking_uri, self.settings.registry_timeout)
                tags = reader.prompt_tags(name)
            rollout_tags = {key: value for key, value in (tags or {}).items() if key.startswith("promptops.rollout.")}
            state = RolloutState.from_tags(name, rollout_tags)
            if state is not None and state.running:
                # The candidate is in memory before any call is assigned to it (a failure keeps the last state).
                prompts.resolver().resolve(name, ("version", state.candidate))
            self._publish(name, state, rollout_tags)
        except Exception as exc:
            self._note_failure(name, exc)
            self._load_candidate(name)
            if raise_errors:
                raise
            if not isinstance(exc, (RegistryError, PromptUnavailableError)):
                log_internal_error("rollout state read", exc)
        finally:
            with self._lock:
                self._inflight.discard(name)

    def _publish(self, name: str, state: RolloutState | None, tags: dict[str, str]) -> None:
        refresh_at = time.monotonic() + self.settings.cache_ttl * _REFRESH_AHEAD
        with self._lock:
            previous = self.entries.get(name)
            entry = self.entries[name] = Entry(state, refresh_at, tags)
            retire(previous)
            if state is not None and previous is not None and previous.state is not None:
                if previous.state.id == state.id:
                    entry.buckets = previous.buckets  # a bucket depends only on the rollout id and the key
        if previous is not None and previous.failing:
            logger.warning("rollout state of %r read again from %s", name, redact_uri(self.uri))
        before = previous.state if previous is not None else None
        if before != state and state is not None and (previous is not None or state.running):
            logger.info("rollout %s of %r is %s at share %g", state.id, name, state.status, state.share)
        if previous is None or previous.tags != tags:
            try:
                self._save_disk(name, tags)
            except OSError as exc:
                logger.warning("cannot write the rollout state of %r to %s: %s", name, self.root, exc)

    def _load_candidate(self, name: str) -> None:
        """With the registry failing, the candidate of the state in force from wherever the prompt cache has it.

        A process started during an outage takes the state from disk: without this its candidate's keys would
        get the baseline until the registry answers (the prompt cache's background fetch does not use the disk).
        """
        entry = self.entries.get(name)
        state = entry.state if entry is not None else None
        if state is None or not state.running:
            return
        try:
            prompts.resolver().resolve(name, ("version", state.candidate))  # memory, registry, then disk
        except PromptUnavailableError:
            pass  # no copy anywhere: those keys keep the baseline until the registry answers
        except Exception as exc:
            log_internal_error("rollout candidate load", exc)

    def _note_failure(self, name: str, exc: BaseException) -> None:
        with self._lock:
            entry = self.entries.get(name)
            if entry is None:
                entry = self.entries[name] = Entry(None, 0.0)
            entry.refresh_at = time.monotonic() + self._retry_after
            first = not entry.failing
            entry.failing = True
        if first:
            logger.warning(
                "cannot read the rollout state of %r from %s (%s); keeping the last state seen",
                name,
                redact_uri(self.uri),
                exc,
            )

    @property
    def uri(self) -> str:
        """The registry URI."""
        return self.settings.tracking_uri

    # -- the disk copy ------------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.root / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"

    def _load_disk(self, name: str) -> tuple[RolloutState | None, dict[str, str] | None]:
        path = self._path(name)
        try:
            data = json.loads(path.read_bytes())
            if data.get("format") != _FORMAT or data.get("uri") != self.uri or data.get("prompt") != name:
                raise ValueError("written for another format, registry or prompt")
            tags = {str(key): str(value) for key, value in dict(data["tags"]).items()}
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("ignoring unreadable rollout state %s (%s)", path, exc)
            return None, None
        return RolloutState.from_tags(name, tags), tags

    def _save_disk(self, name: str, tags: dict[str, str]) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"format": _FORMAT, "uri": self.uri, "prompt": name, "saved_at": time.time(), "tags": tags}
        )
        # A unique temporary file: several processes of one application share the cache directory.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(payload)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- lifecycle ---------------------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Wait for reads in flight; `False` if some were still running at the deadline."""
        deadline = time.monotonic() + timeout
        while self._inflight:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def after_fork(self) -> None:
        """In a forked child: the parent's read threads and connections did not come along."""
        self._lock = threading.Lock()
        self._inflight = set()
        self._reader = None

    def close(self) -> None:
        """Release the registry connection."""
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:
                log_internal_error("rollout reader close")


_lock = threading.Lock()
current: RolloutCache | None = None  # read by the call path


def rollout_cache() -> RolloutCache:
    """The rollout cache for the current settings."""
    cache = current
    if cache is None:
        settings = get_settings()
        with _lock:
            cache = current or _install(RolloutCache(settings))
    return cache


def _install(new: RolloutCache | None) -> RolloutCache:
    global current
    old, current = current, new
    if old is not None:
        old.close()  # (a decorator holding one of its entries as `quiet` meets new settings: it resolves anew)
    return new  # type: ignore[return-value]


def _settings_changed(settings: Settings | None) -> None:
    with _lock:
        if current is not None and current.settings != settings:
            _install(None)


on_change(_settings_changed)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    if current is not None:
        current.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
