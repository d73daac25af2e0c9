"""Guarded rollout against a real `mlflow server` (issue 14): two application processes, the CLI, an outage.

Each application is a separate Python process with its own cache directory, reading the registry over HTTP
as a deployed service would. The test steers the rollout with the `promptops rollout` commands and asks the
applications, over a pipe, which arm each of a list of sticky keys gets. Timing bounds are generous (a loaded
2-core machine): the test polls until the change is seen and reports how long it took when it is not.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import promptops
from promptops.capture import CaptureStore
from promptops.rollout import read_rollout
from tests.integration.conftest import MlflowServer, child_env
from tests.unit.test_cli import run

TTL = 2.0  # seconds: the applications' cache_ttl
SEEN_WITHIN = 60.0  # the bound on seeing a change (TTL plus a slow registry read on a loaded machine)
KEYS = 5000

_APP = """
import json, math, sys

import promptops
from promptops.rollout import rollout_cache

args = json.loads(sys.argv[1])
promptops.configure(
    tracking_uri=args["uri"], cache_dir=args["cache_dir"], cache_ttl=args["ttl"], registry_timeout=2.0,
    trace_exporter="none", capture=None,
)
name = args["name"]

@promptops.track(prompt=name)  # no rollout_key=: the key is the one `rollout start --key` names
def reply(user_id, text, *, prompt):
    return prompt

for line in sys.stdin:
    request = json.loads(line)
    arms, errors = [], []
    for index in range(request["count"]):
        try:
            prompt = reply(f"user-{index}", "hello")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        arms.append([prompt.rollout_arm, prompt.version])
    entry = rollout_cache().entries.get(name)
    state = entry.state if entry is not None else None
    print(json.dumps({
        "arms": arms,
        "errors": errors,
        "rollout": None if state is None else {"id": state.id, "status": state.status, "share": state.share},
        "read": entry is not None and math.isfinite(entry.refresh_at),
        "failing": entry is not None and entry.failing,
    }), flush=True)
"""


class App:
    """One application process; `call(n)` makes tracked calls with keys `user-0` .. `user-{n-1}`."""

    def __init__(self, label: str, uri: str, name: str, cache_dir: Path) -> None:
        self.label = label
        self.log = cache_dir.parent / f"{label}.log"
        args = {"uri": uri, "name": name, "cache_dir": str(cache_dir), "ttl": TTL}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _APP, json.dumps(args)],
                cwd=cache_dir.parent,
                env=child_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def call(self, count: int) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"count": count}) + "\n")
        self.process.stdin.flush()
        try:
            answer: dict[str, Any] = json.loads(self._lines.get(timeout=120))
        except queue.Empty:
            pytest.fail(f"{self.label} did not answer in 120 s:\n{self.log.read_text()}", pytrace=False)
        assert answer["errors"] == [], answer["errors"][:3]
        return answer

    def arms(self, count: int = KEYS) -> list[tuple[str | None, int]]:
        """The (arm, version) of keys `user-0` .. `user-{count-1}`, in order."""
        return [(arm, version) for arm, version in self.call(count)["arms"]]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the application's loop ends
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)  # it reads to the end of the output, then the pipe can be closed
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Callable[[str, str, str], App]]:
    """Starts application processes (each in its own directory unless given one); stops them at the end."""
    started: list[App] = []

    def start(label: str, uri: str, name: str, directory: str | None = None) -> App:
        cache_dir = tmp_path / (directory or label) / ".promptops"
        cache_dir.parent.mkdir(exist_ok=True)
        app = App(label, uri, name, cache_dir)
        started.append(app)
        return app

    yield start
    for app in started:
        app.close()


def wait_until(apps: list[App], seen: Callable[[dict[str, Any]], bool], what: str) -> float:
    """Poll every app with a few calls until `seen(answer)` holds in each; the seconds it took."""
    started = time.monotonic()
    pending = list(apps)
    last: dict[str, Any] = {}
    while pending:
        for app in list(pending):
            answer = app.call(5)
            last[app.label] = {key: answer[key] for key in ("rollout", "read", "failing")}
            if seen(answer):
                pending.remove(app)
        if pending and time.monotonic() - started > SEEN_WITHIN:
            pytest.fail(f"{what}: not seen in {SEEN_WITHIN:g} s by {[a.label for a in pending]}: {last}", pytrace=False)
        if pending:
            time.sleep(0.2)
    return time.monotonic() - started


def candidate_share(arms: list[tuple[str | None, int]]) -> float:
    return sum(arm == "candidate" for arm, _ in arms) / len(arms)


@pytest.fixture
def rolled(server: MlflowServer, prompt_name: str) -> str:
    """A prompt on the server with version 1 @production and a version 2 to roll out."""
    server.register(prompt_name, "v1 {{text}}", alias="production")
    server.register(prompt_name, "v2 {{text}}")
    return prompt_name


def start(server: MlflowServer, name: str, share: str) -> None:
    result = run(server.url, "rollout", "start", name, "--candidate", "2", "--share", share, "--key", "user_id")
    assert result.exit_code == 0, result.output


def test_two_processes_follow_start_set_share_and_rollback(server: MlflowServer, rolled: str, apps) -> None:
    first, second = apps("first", server.url, rolled), apps("second", server.url, rolled)
    # Both have read the registry once (no rollout): what follows is picked up by a refresh, not a first read.
    wait_until([first, second], lambda answer: answer["read"], "the first read")
    assert set(first.arms(50)) == {(None, 1)}

    start(server, rolled, "0.3")
    state = read_rollout(server.client, rolled)
    assert state is not None and state.key == "user_id"
    took = wait_until([first, second], lambda answer: (answer["rollout"] or {}).get("id") == state.id, "start")
    arms = first.arms()
    assert abs(candidate_share(arms) - 0.3) <= 0.03, (candidate_share(arms), took)
    assert all(version == (2 if arm == "candidate" else 1) for arm, version in arms)
    assert arms == [
        (state.arm_for(f"user-{i}"), 2 if state.arm_for(f"user-{i}") == "candidate" else 1) for i in range(KEYS)
    ]
    assert first.arms() == arms  # across calls
    assert second.arms() == arms  # across processes

    result = run(server.url, "rollout", "set-share", rolled, "0.6")
    assert result.exit_code == 0, result.output
    wait_until([first, second], lambda answer: (answer["rollout"] or {}).get("share") == 0.6, "set-share 0.6")
    raised = first.arms()
    assert abs(candidate_share(raised) - 0.6) <= 0.03
    assert all(after[0] == "candidate" for before, after in zip(arms, raised, strict=True) if before[0] == "candidate")
    assert second.arms() == raised

    result = run(server.url, "rollout", "rollback", rolled)
    assert result.exit_code == 0, result.output
    wait_until([first, second], lambda answer: (answer["rollout"] or {}).get("status") != "running", "rollback")
    assert set(first.arms()) == {(None, 1)}  # every call back on the baseline, unlabelled
    assert set(second.arms()) == {(None, 1)}


@pytest.mark.server_outage
def test_registry_down_during_a_rollout_keeps_every_arm(server: MlflowServer, rolled: str, apps) -> None:
    first, second = apps("first", server.url, rolled), apps("second", server.url, rolled)
    wait_until([first, second], lambda answer: answer["read"], "the first read")
    start(server, rolled, "0.3")
    state = read_rollout(server.client, rolled)
    assert state is not None
    wait_until([first, second], lambda answer: (answer["rollout"] or {}).get("id") == state.id, "start")
    arms = first.arms()
    assert second.arms() == arms and 0.27 <= candidate_share(arms) <= 0.33

    server.stop()
    try:
        # Each has tried a read since the registry went away (and failed): the last state stays in force.
        wait_until([first, second], lambda answer: answer["failing"], "a failed read")
        assert first.arms() == arms
        assert second.arms() == arms
        # A process (re)started during the outage, on the first one's cache directory: the disk copies. The
        # candidate's copy is read from disk in the background; until then its keys wait on the baseline.
        restarted = apps("restarted", server.url, rolled, "first")
        wait_until([restarted], lambda answer: (answer["rollout"] or {}).get("id") == state.id, "the disk copy")
        wait_until([restarted], lambda answer: restarted.arms() == arms, "the candidate's disk copy")
    finally:
        server.start()
    wait_until([first, second], lambda answer: not answer["failing"], "the registry back")
    assert first.arms() == arms and second.arms() == arms


def test_feedback_is_an_mlflow_assessment_once_flush_returns(server: MlflowServer, rolled: str, tmp_path) -> None:
    import mlflow
    from opentelemetry import trace

    experiment = f"feedback-{uuid.uuid4().hex[:8]}"
    capture = f"sqlite:///{tmp_path / 'captures.db'}"
    promptops.configure(tracking_uri=server.url, experiment_name=experiment, trace_exporter="mlflow", capture=capture)

    @promptops.track(prompt=rolled)
    def reply(text: str, *, prompt: promptops.Prompt) -> str:
        return format(trace.get_current_span().get_span_context().trace_id, "032x")

    # Feedback at once, by trace id: the trace may still wait in the span batch when the worker logs it.
    at_once = reply("first")
    promptops.feedback(at_once, "thumbs", 1, comment="spot on")
    for index in range(20):
        reply(f"later {index}")
    assert promptops.flush(120)
    later = [record for record in CaptureStore.open(capture).query() if record.inputs["text"] != "first"]
    assert len(later) == 20 and all(record.trace_id for record in later)
    for record in later:  # by capture id: the store finds the trace
        promptops.feedback(record.id, "thumbs", int(record.inputs["text"].split()[1]) % 2)
    assert promptops.flush(120)  # waits for the feedback too (20 writes): no polling below

    experiment_id = mlflow.MlflowClient(server.url).get_experiment_by_name(experiment).experiment_id
    mlflow.set_tracking_uri(server.url)
    try:
        traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    found = {
        found_trace.info.trace_id.removeprefix("tr-"): [
            (a.name, a.value, a.rationale, a.source.source_type) for a in found_trace.info.assessments
        ]
        for found_trace in traces
    }
    expected = {at_once: [("thumbs", 1.0, "spot on", "HUMAN")]}
    for record in later:
        expected[str(record.trace_id)] = [("thumbs", float(int(record.inputs["text"].split()[1]) % 2), None, "HUMAN")]
    assert found == expected
