"""Replay on a real local Ray cluster (issue 15): `--executor ray` gives the local executor's result.

One cluster per module (`ray start --head` on 127.0.0.1 with 2 CPUs, its session files in a temp dir), started in
its own process group and stopped by killing that group: never a `ray stop`, which would stop every cluster on
the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

# Ray replaces 127.0.0.1 in an address with the machine's network address unless told it is not a cluster node
# (read when Ray is imported): the driver and the cluster then talk over 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
pytest.importorskip("ray")

import promptops
from promptops import replay
from promptops.replay import ReplayError, _ray, _scoring
from promptops.replay._calls import calls_table
from tests.conftest import Registry
from tests.support import RayCluster as Cluster
from tests.support import cli_command, free_port
from tests.unit.test_replay import PRODUCTION, TEXTS, App, captured_rows, echo_app, write_dataset
from tests.unit.test_replay_memory import counted_app, outputs_held

from .test_replay_mlflow import run_traces

RECORDS = [
    f"{TEXTS[number % len(TEXTS)]} (ticket {number})" + (" FAIL" if number % 25 == 7 else "") for number in range(200)
]

RAY_APP = """
import os
import signal
import time

import promptops

CALLS = "CALLS_FILE"
KILL = CALLS + ".kill"


def armed() -> bool:
    # Armed by the test: "always", or "once" (the first call to rename the file, atomically, kills its process).
    try:
        with open(KILL) as kill:
            if kill.read() == "always":
                return True
        os.rename(KILL, CALLS + ".killed")
    except FileNotFoundError:
        return False
    with open(CALLS + ".killed", "w") as killed:
        killed.write(str(time.time()))
    return True


@promptops.track(prompt="PROMPT_NAME")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    # A deterministic stand-in model that depends on the prompt, with a little latency. Each call appends the
    # process id to a file: which worker processes made calls, and how many calls were made in all.
    with open(CALLS, "a") as log:
        log.write(f"{os.getpid()}\\n")
    if text.endswith("(ticket 100)") and armed():
        os.kill(os.getpid(), signal.SIGKILL)  # mid-task, with calls in flight on the process's other threads
    time.sleep(LATENCY)
    if "FAIL" in text:
        raise RuntimeError("the model refused")
    return prompt.format(text=text)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("ray"), cpus=2)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def app(local_registry: Registry, prompt_name: str, tmp_path: Path) -> App:
    promptops.configure(trace_exporter="none")
    body = RAY_APP.replace("CALLS_FILE", str(tmp_path / "calls.log")).replace("LATENCY", "0.02")
    application = App(local_registry, prompt_name, tmp_path, body)
    application.register("v1", "Summarize the ticket. Ticket: {{ text }}", alias="production")
    application.register("shorter", "Summarize the ticket in a few words. Ticket: {{ text }}")
    return application


def comparable(path: Path) -> dict[str, Any]:
    """The JSON document without what differs between two runs anyway: wall-clock times and trace ids."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            items: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
            kept = {k: strip(v) for k, v in items.items() if "latency" not in k and "trace_id" not in k}
            if str(kept.get("expr", "")).startswith("latency"):  # the latency gates' values: wall-clock times
                del kept["value"], kept["detail"]
            return kept
        if isinstance(value, list):
            return [strip(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
        return value

    document = json.loads(path.read_text())
    for key in ("started_at", "duration_s", "mlflow_run_id", "workers"):
        document.pop(key)
    return strip(document)


def options(app: App, tmp_path: Path, name: str) -> dict[str, Any]:
    data = write_dataset(tmp_path / "tickets.jsonl", [{"inputs": {"text": text}} for text in RECORDS])
    return {
        "candidate": app.versions["shorter"],
        "baseline": str(app.versions["v1"]),
        "dataset": data,
        "log_to_mlflow": False,
        "json_path": tmp_path / f"{name}.json",
        "store": f"sqlite:///{tmp_path / name}.db",
    }


def test_the_ray_executor_gives_the_local_executors_json(cluster: Cluster, app: App, tmp_path: Path) -> None:
    local = replay.run(app.target, **options(app, tmp_path, "local"))
    on_ray = replay.run(app.target, **options(app, tmp_path, "ray"), executor="ray", ray_address=cluster.address)
    assert on_ray.calls == local.calls == 600 and on_ray.reused == 0 and not on_ray.interrupted
    assert sum(record.error is not None for record in on_ray.records) == 8
    assert 0 < on_ray.metrics["rougeL"].candidate < 1  # type: ignore[operator]
    assert comparable(tmp_path / "ray.json") == comparable(tmp_path / "local.json")


def calls_made(tmp_path: Path) -> list[int]:
    """The process id of every call the target made, in order."""
    path = tmp_path / "calls.log"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def stored(database: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(calls_table())).scalar() or 0
    finally:
        engine.dispose()


def test_a_worker_killed_mid_run_is_survived(
    cluster: Cluster, app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    replay.run(app.target, **options(app, tmp_path, "local"))
    (tmp_path / "calls.log").unlink()
    (tmp_path / "calls.log.kill").write_text("once")  # the worker making ticket 100's first call SIGKILLs itself
    ticks: list[int] = []

    def progress(calls: int, records: int) -> Callable[[int], None]:
        return ticks.append

    on_ray = replay.run(
        app.target, **options(app, tmp_path, "ray"), executor="ray", ray_address=cluster.address, progress=progress
    )
    killed_at = float((tmp_path / "calls.log.killed").read_text())  # a worker process was killed mid-task
    lost = [r for r in caplog.records if "a Ray worker died" in r.getMessage()]
    assert len(lost) == 1 and "attempt 1 of 4" in lost[0].getMessage()  # the driver saw it, ran the chunk again
    print(f"the driver heard of the dead worker {lost[0].created - killed_at:.1f} s after the kill")
    assert sum(ticks) == 600  # the progress bar heard of every call, from the cluster
    # The killed call and the dead task's other calls not yet reported were made again: at most its window of
    # 2 x --workers (16) started calls, those in flight and those finished but not yet sent to the coordinator.
    # The calls it had reported were not.
    assert 600 < len(calls_made(tmp_path)) <= 616
    assert on_ray.calls == 600 and not on_ray.interrupted and stored(tmp_path / "ray.db") == 600
    assert comparable(tmp_path / "ray.json") == comparable(tmp_path / "local.json")


def test_a_task_whose_worker_always_dies_ends_the_run(cluster: Cluster, app: App, tmp_path: Path) -> None:
    (tmp_path / "calls.log.kill").write_text("always")  # every call for ticket 100 kills its worker process
    with pytest.raises(ReplayError, match=r"a replay task failed on the Ray cluster after 4 attempts: .*died"):
        replay.run(app.target, **options(app, tmp_path, "ray"), executor="ray", ray_address=cluster.address)
    assert stored(tmp_path / "ray.db") < 600  # the run ended; what finished was stored


def test_the_workers_traces_are_the_replay_runs(cluster: Cluster, tmp_path: Path, prompt_name: str) -> None:
    """Issue 12 on Ray: every call a worker makes is a trace of the replay run, none the application's."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a file the workers of this machine reach
    application = echo_app(Registry(uri), prompt_name, tmp_path)
    promptops.configure(tracking_uri=uri, experiment_name="app", trace_exporter="mlflow")
    texts = [f"{TEXTS[number % len(TEXTS)]} (ticket {number})" for number in range(20)]
    data = write_dataset(tmp_path / "tickets.jsonl", captured_rows(texts))
    result = replay.run(
        application.target, candidate=application.versions["bad"], dataset=data, executor="ray",
        ray_address=cluster.address,
    )  # fmt: skip
    assert result.calls == 40 and result.mlflow_run_id is not None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "app-replay"
    # One trace per candidate call and baseline re-run, tagged with the run id, with the record's inputs and output.
    traces = run_traces(client, run.info.experiment_id, run.info.run_id, 40)
    assert sorted(trace.info.tags["promptops.replay.role"] for trace in traces) == ["candidate"] * 20 + ["noise"] * 20
    assert {trace.info.tags["promptops.replay.run_id"] for trace in traces} == {run.info.run_id}
    by_text: dict[str, dict[str, Any]] = {}
    for trace in traces:
        root = next(span for span in trace.data.spans if span.parent_id is None)
        by_text.setdefault(root.inputs["text"], {})[trace.info.tags["promptops.replay.role"]] = root.outputs
    assert by_text == {text: {"candidate": "TL;DR.", "noise": PRODUCTION.replace("{{ text }}", text)} for text in texts}
    # Never among the application's traces: its experiment, if made at all, holds none.
    kept = client.get_experiment_by_name("app")
    assert kept is None or client.search_traces(locations=[kept.experiment_id], max_results=10) == []


def test_bad_ray_options_are_one_line(app: App, tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"ray_address \(--ray-address\) joins a Ray cluster: add executor='ray'"):
        replay.run(app.target, **options(app, tmp_path, "x"), ray_address="127.0.0.1:1")
    port = free_port()  # nothing listens there
    with pytest.raises(ReplayError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        replay.run(app.target, **options(app, tmp_path, "x"), executor="ray", ray_address=f"127.0.0.1:{port}")
    assert not calls_made(tmp_path)


def test_ctrl_c_keeps_what_finished(cluster: Cluster, app: App, tmp_path: Path) -> None:
    settings = options(app, tmp_path, "ray")
    command = cli_command(
        "replay", app.target, "--candidate", str(settings["candidate"]), "--baseline", settings["baseline"],
        "--dataset", settings["dataset"], "--store", settings["store"], "--no-mlflow",
        "--executor", "ray", "--ray-address", cluster.address,
    )  # fmt: skip
    environment = {**os.environ, "MLFLOW_TRACKING_URI": app.registry.uri, "PROMPTOPS_TRACE_EXPORTER": "none"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while len(calls_made(tmp_path)) < 200 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1 and "interrupted" in output, output
    started = len(calls_made(tmp_path))
    assert 200 <= started < 600, output
    kept = stored(tmp_path / "ray.db")
    assert 200 - 8 <= kept <= started  # every call that finished, less at most the 8 in flight (--workers)
    time.sleep(2)
    assert len(calls_made(tmp_path)) == started  # the cluster's tasks were cancelled: no call after the exit

    # The stored calls are reused: a second run (here on the local executor) makes only the missing ones.
    resumed = replay.run(app.target, **settings)
    assert resumed.reused == kept and len(calls_made(tmp_path)) - started == 600 - kept
    replay.run(app.target, **options(app, tmp_path, "local"))
    assert comparable(tmp_path / "ray.json") == comparable(tmp_path / "local.json") | {"reused": kept}


def test_the_driver_holds_a_few_blocks_of_outputs_not_the_run(
    cluster: Cluster, local_registry: Registry, prompt_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: on Ray too, the driver holds the outputs of a few scoring blocks at a time, not of the whole run."""
    monkeypatch.setattr(_scoring, "_BLOCK", 64)
    monkeypatch.setattr(_ray, "_SCORING_PER_CPU", 1)  # 2 blocks out at once on the 2-CPU cluster
    application = counted_app(local_registry, prompt_name, tmp_path)
    most, after, result = outputs_held(
        application, 1200, tmp_path, workers=4, executor="ray", ray_address=cluster.address
    )
    assert len(result.records) == 1200 and result.calls == 1200 and not result.interrupted
    # The block being filled, the 2 (+1 before the driver waits) out being scored, one being taken in, and the
    # calls of one collection from the coordinator: about 6 blocks, against 1,200 outputs before.
    assert 0 < most <= 6 * 64, most
    assert after == 0
    assert [record.id for record in result.records] == [record.id for record in list(result.records)]
