"""Prompt links to an MLflow tracking server, sent apart from span export, a few at a time (issues 10 and 12).

MLflow's REST API links one trace per request (`POST /api/2.0/mlflow/traces/link-prompts`; MLflow 3.17 has no
batch variant), and a server spends milliseconds on each (a database transaction). Sent one after another inside
the export, they held the export thread to about 25 traces a second: a busier application filled the export
queue and lost spans. Here the exporter hands each batch's links to `LinkSender` and returns; a few threads of
its own send them concurrently, retry what failed for a passing reason, and count the outcome. A burst the server
cannot link as fast as it comes is linked afterwards: the links wait (bounded), the spans never do.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from collections.abc import Callable, Generator
from typing import Literal

from .._instrumentation import suppress_instrumentation

__all__ = ["LINK_THREADS", "MAX_QUEUED_LINKS", "LinkSender", "Outcome"]

LINK_THREADS = 4  # requests in flight at once: about 1.4x one at a time into a one-worker server, more with more
MAX_QUEUED_LINKS = 50_000  # traces waiting for their link, at most (about 15 MB); beyond, counted as failed
RETRY_BUDGET = 30.0  # seconds the server may fail for a passing reason (down, 5xx, 429) before links are given up
PROBE_INTERVAL = 5.0  # then, one link in this many seconds is still tried: linking resumes when the server is back

# What sending one link came to: linked; failed for good (with the reason); or failed for a passing reason.
Outcome = tuple[Literal["linked", "failed", "retry"], str]
Link = tuple[str, list[dict[str, str]]]


class LinkSender:
    """A bounded queue of (trace id, prompt versions) and `LINK_THREADS` daemon threads sending them.

    `send(trace_id, versions)` sends one link and says how it went; `done(linked, failed, reason)` counts outcomes.
    While the server keeps failing for a passing reason, each link is retried with backoff; once it has failed
    for `RETRY_BUDGET` seconds without a success in between, the waiting links are counted as failed without
    being tried (a dead server must not keep an exiting process busy), but for one every `PROBE_INTERVAL` seconds,
    until a link gets through again.
    """

    def __init__(
        self,
        send: Callable[[str, list[dict[str, str]]], Outcome],
        done: Callable[[int, int, str], None],
        *,
        threads: int = LINK_THREADS,
        capacity: int = MAX_QUEUED_LINKS,
        retry_budget: float = RETRY_BUDGET,
    ) -> None:
        self._send = send
        self._done = done
        self._threads_wanted = threads
        self._capacity = capacity
        self._retry_budget = retry_budget
        self._queue: collections.deque[Link] = collections.deque()
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._condition = threading.Condition()
        self._failing_since: float | None = None  # first passing failure since the last success
        self._next_probe = 0.0
        self._closed = False
        self._exports = 0  # span exports running now: links wait for them (see `exporting`)
        self._idle = threading.Event()
        self._idle.set()
        # Whether the next span export is due soon (spans are piling up): set by the provider.
        self.behind: Callable[[], bool] = lambda: False

    @contextlib.contextmanager
    def exporting(self) -> Generator[None]:
        """Hold new link requests while a span batch is being sent: the spans have the server first.

        A server that links slower than traces arrive would otherwise spend itself on links while the span batch
        waits, and the application's export queue fills (spans dropped). The links wait for a gap instead: no
        export running and the next one not due soon (`behind`).
        """
        with self._condition:
            self._exports += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._condition:
                self._exports -= 1
                if not self._exports:
                    self._idle.set()

    def submit(self, links: list[Link]) -> None:
        """Queue `links` for sending; those beyond the queue's capacity are counted as failed at once."""
        if not links:
            return
        with self._condition:
            if self._closed:
                accepted: list[Link] = []
            else:
                room = max(self._capacity - len(self._queue) - self._busy, 0)
                accepted = links[:room]
                self._queue.extend(accepted)
                while len(self._threads) < min(self._threads_wanted, len(self._queue) + self._busy):
                    thread = threading.Thread(target=self._run, name="promptops-prompt-links", daemon=True)
                    self._threads.append(thread)
                    thread.start()
                self._condition.notify(len(accepted))
        if refused := len(links) - len(accepted):
            self._done(0, refused, f"{self._capacity} traces were already waiting for their link")

    def pending(self) -> int:
        """Links queued or being sent now."""
        with self._condition:
            return len(self._queue) + self._busy

    def wait(self, timeout: float) -> bool:
        """Wait until every queued link was sent (or given up); `False` if some are still pending at `timeout`."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.5))
        return True

    def close(self, timeout: float) -> None:
        """Send what is queued within `timeout` seconds, then stop; what is left is counted as failed."""
        self.wait(timeout)
        with self._condition:
            self._closed = True
            left = len(self._queue)
            self._queue.clear()
            self._condition.notify_all()
        if left:
            self._done(0, left, "promptops tracing was shut down before they were sent")

    def _run(self) -> None:
        suppress_instrumentation()  # our link requests stay out of an instrumented application's traces
        while True:
            with self._condition:
                while not self._queue and not self._closed:
                    self._condition.wait()
                if self._closed and not self._queue:
                    return
                trace_id, versions = self._queue.popleft()
                self._busy += 1
            try:
                linked, reason = self._link(trace_id, versions)
                self._done(int(linked), int(not linked), reason)
            finally:
                with self._condition:
                    self._busy -= 1
                    self._condition.notify_all()

    def _link(self, trace_id: str, versions: list[dict[str, str]]) -> tuple[bool, str]:
        delay = 0.1
        while True:
            if self._given_up():
                return False, "the MLflow server kept failing"
            self._wait_for_a_gap()
            try:
                kind, reason = self._send(trace_id, versions)
            except Exception as exc:  # pragma: no cover - send() reports its failures as outcomes
                kind, reason = "failed", f"{type(exc).__name__}: {exc}"
            if kind == "linked":
                self._failing_since = None
                return True, ""
            if kind == "failed":
                return False, reason
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
            elif now - self._failing_since > self._retry_budget or self._closed:
                return False, reason
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)

    def _wait_for_a_gap(self) -> None:
        """Hold while a span batch is being sent or the next one is due soon: spans before links, always.

        Under a load the server cannot take whole, the links wait until it eases (bounded by the queue's capacity);
        an export in flight holds them at most for its timeout.
        """
        while not self._closed and (not self._idle.is_set() or self.behind()):
            if self._idle.wait(0.05):
                time.sleep(0.05)  # behind: poll the queue until the export catches up

    def _given_up(self) -> bool:
        """The server has failed for the whole budget: links are given up untried, but for one probe a while."""
        failing_since = self._failing_since
        now = time.monotonic()
        if failing_since is None or now - failing_since <= self._retry_budget:
            return False
        with self._condition:
            if now < self._next_probe:
                return True
            self._next_probe = now + PROBE_INTERVAL  # this link is the probe: sent once, not retried
        return False
