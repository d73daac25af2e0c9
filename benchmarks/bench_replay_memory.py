"""Replay memory per record (issue 15): peak RSS and Python allocations of `promptops replay` at N records.

Run with `.venv/bin/python benchmarks/bench_replay_memory.py` (`--records 5000 20000`, `--scorers rougeL bleu`,
`--tracemalloc` for where the memory goes, phase by phase). Each size runs in a process of its own, so each
figure starts from the same interpreter; the per-record figure is the slope between the sizes, which takes the
fixed cost (imports, MLflow, the scorers' libraries) out.

Everything is real: a sqlite MLflow store in a temporary directory holds the prompt versions, the replay's spans
go to it (the default exporter), the finished calls go to the call store (the default capture store), the JSON
and HTML outputs are written. The target formats its prompt with zero latency; the candidate's outputs differ
from the captured ones on every record (the realistic case).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_replay import DIFFERENT, TEMPLATE, TICKETS  # noqa: E402  (the same texts and versions as bench_replay)

APP = """
import promptops

@promptops.track(prompt="PROMPT")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    return prompt.format(text=text)[:400]
"""


def _rss_mb() -> tuple[float, float]:
    """Current and peak resident set size (VmRSS, VmHWM) in MB."""
    values = _status()
    return values["VmRSS:"], values["VmHWM:"]


def _status() -> dict[str, float]:
    """VmRSS, VmHWM and the parts of the RSS (RssAnon: the process's own memory; RssFile: mapped files;
    RssShmem: shared memory, e.g. Ray's object store mapped into a driver), in MB."""
    values: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:", "RssShmem:")):
            name, amount, _ = line.split()
            values[name] = int(amount) / 1024
    return values


def _types() -> list[str]:
    """The most numerous live objects by type (cheap enough to take after the calls, unlike tracemalloc)."""
    import collections
    import gc

    counts = collections.Counter(type(item).__qualname__ for item in gc.get_objects())
    return [f"{number:>9} live {name}" for name, number in counts.most_common(12)]


def prepare(workdir: Path, exporter: str) -> str:
    """A sqlite MLflow store with the prompt (version 1 production, version 2 the candidate), the app; the target."""
    import mlflow

    import promptops

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    name = f"bench-{uuid.uuid4().hex[:6]}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name=name, template=TEMPLATE)
    client.set_prompt_alias(name, "production", 1)
    client.register_prompt(name=name, template=DIFFERENT)
    module = f"bench_memory_app_{uuid.uuid4().hex[:6]}"
    (workdir / f"{module}.py").write_text(textwrap.dedent(APP).replace("PROMPT", name))
    sys.path.insert(0, str(workdir))
    promptops.configure(
        tracking_uri=uri,
        experiment_name="bench-memory",
        capture=f"sqlite:///{workdir / 'captures.db'}",
        cache_dir=str(workdir / ".promptops"),
        trace_exporter=exporter,
    )
    return f"{module}:summarize"


def write_dataset(workdir: Path, count: int, offset: int = 0) -> str:
    """`count` distinct records as production captured them (version 1's output), as a .jsonl file."""
    base = [json.loads(line)["text"] for line in TICKETS.read_text().splitlines() if line.strip()]
    path = workdir / f"data-{offset}-{count}.jsonl"
    with path.open("w") as out:
        for i in range(offset, offset + count):
            text = base[i % len(base)] + f" (ref {i})"
            output = TEMPLATE.replace("{{ text }}", text)[:400]
            out.write(json.dumps({"inputs": {"text": text}, "output": output, "metadata": {"prompt_version": 1}}))
            out.write("\n")
    return str(path)


def child(
    count: int,
    scorers: list[str],
    trace: bool,
    workers: int,
    exporter: str,
    ray_address: str | None = None,
    trace_all: bool = False,
) -> dict[str, Any]:
    """One replay of `count` records in this process; memory at each phase (the driver's, with `ray_address`)."""
    import tracemalloc

    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        os.chdir(workdir)
        import promptops
        from promptops import replay
        from promptops.replay import _run, _scoring

        target = prepare(workdir, exporter)
        data = write_dataset(workdir, count)
        # warm-up: imports, the scorers' libraries, MLflow's tables (not counted)
        on_ray: dict[str, Any] = {"executor": "ray", "ray_address": ray_address} if ray_address else {}
        replay.run(target, candidate=2, dataset=write_dataset(workdir, 20, offset=10**6), scorers=scorers,
                   log_to_mlflow=False, **on_ray)  # fmt: skip
        promptops.flush(timeout=60)

        phases: list[tuple[str, float, float, float, float, float]] = []
        peak = [0.0, 0.0]  # VmRSS, RssAnon
        stop = threading.Event()

        def sample() -> None:  # VmHWM cannot be reset without privileges here: sample the RSS instead
            while not stop.wait(0.02):
                values = _status()
                peak[0] = max(peak[0], values["VmRSS:"])
                peak[1] = max(peak[1], values["RssAnon:"])

        def mark(label: str) -> None:
            values = _status()
            rss = values["VmRSS:"]
            traced = tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else 0.0
            phases.append((label, rss, max(peak[0], rss), traced, values["RssAnon:"], values["RssShmem:"]))

        snapshots: dict[str, Any] = {}
        peaks: dict[str, float] = {}
        types: dict[str, list[str]] = {}

        def wrap(owner: Any, attribute: str, label: str) -> None:
            original = getattr(owner, attribute)

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                mark(f"before {label}")
                if trace_all and label == "scoring":  # every call is in: what is alive now grew with the run
                    snapshots["alive when the calls are in"] = tracemalloc.take_snapshot()
                if trace and not trace_all and label != "calls":  # tracing local calls (and spans) is too slow
                    tracemalloc.start(6)
                try:
                    return original(*args, **kwargs)
                finally:
                    if trace and not trace_all and label != "calls":
                        peaks[label] = tracemalloc.get_traced_memory()[1] / 2**20
                        snapshots[label] = tracemalloc.take_snapshot()
                        tracemalloc.stop()
                    mark(f"after {label}")
                    if trace:
                        types[label] = _types()

            setattr(owner, attribute, wrapped)

        wrap(_run, "_call", "calls")  # records are scored in blocks as they complete, during the calls (issue 15)
        wrap(_scoring.Scoring, "finish", "scoring")  # the last blocks, then the statistics
        wrap(_run, "_write_outputs", "outputs")
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        mark("start")
        if trace_all:
            tracemalloc.start(6)
        started = time.perf_counter()
        result = replay.run(
            target, candidate=2, dataset=data, scorers=scorers, workers=workers,
            log_to_mlflow=True, report=str(workdir / "report.html"), json_path=str(workdir / "result.json"), **on_ray,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        mark("result returned")
        if trace_all:
            peaks["alive after run()"] = tracemalloc.get_traced_memory()[1] / 2**20
            snapshots["alive after run()"] = tracemalloc.take_snapshot()
            tracemalloc.stop()
        promptops.flush(timeout=120)
        mark("spans flushed")
        stop.set()
        thread.join()
        records = json.loads((workdir / "result.json").read_text())["records"]
        assert len(records) == count, (len(records), result.skipped)
        top: dict[str, list[str]] = {}
        for label, snapshot in snapshots.items():
            stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("traceback")
            top[label] = []
            for stat in stats[:8]:
                frames = [f"{frame.filename.replace(str(ROOT), '.')}:{frame.lineno}" for frame in stat.traceback]
                interesting = [f for f in frames if "/promptops/" in f or f.startswith("./")] or frames
                top[label].append(
                    f"{stat.size / 2**20:8.1f} MB {stat.count:>8} blocks  " + " < ".join(interesting[-4:])
                )
        for label, value in peaks.items():
            top[label].insert(0, f"traced peak during {label}: {value:.1f} MB")
        for label, lines in types.items():
            top.setdefault(label, []).extend(lines)
        return {
            "records": count, "seconds": seconds, "phases": phases, "peak_mb": peak[0], "peak_anon_mb": peak[1],
            "top": top,
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--scorers", nargs="+", default=["rougeL", "bleu"])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--exporter", default="mlflow")
    parser.add_argument("--tracemalloc", action="store_true", help="where the memory goes (slower)")
    parser.add_argument(
        "--trace-all",
        action="store_true",
        help="with --tracemalloc: trace the whole run, calls included (fine on Ray; slow locally), and show what is "
        "alive when the last call is in and after run() returned",
    )
    parser.add_argument(
        "--ray-cpus", type=int, help="the calls on a local Ray cluster of this many CPUs (the driver measured)"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ray-address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        figures = child(
            args.child, args.scorers, args.tracemalloc, args.workers, args.exporter, args.ray_address, args.trace_all
        )
        print(json.dumps(figures))
        return
    cluster: Any = None
    if args.ray_cpus:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray keeps to 127.0.0.1 (tests.support.RayCluster)
        sys.path.insert(0, str(ROOT))
        from tests.support import RayCluster

        cluster = RayCluster(Path(tempfile.mkdtemp(prefix="bench-memory-ray-")), cpus=args.ray_cpus)
    try:
        run_sizes(args, cluster.address if cluster else None)
    finally:
        if cluster is not None:
            cluster.stop()


def run_sizes(args: argparse.Namespace, ray_address: str | None) -> None:
    """Each size in a child process of its own, then the slope."""
    where = f"; calls on Ray at {ray_address} (the driver's memory)" if ray_address else ""
    print(f"load average {os.getloadavg()}; scorers {args.scorers}; exporter {args.exporter}{where}", flush=True)
    rows: list[dict[str, Any]] = []
    for count in args.records:
        command = [sys.executable, __file__, "--child", str(count), "--workers", str(args.workers),
                   "--exporter", args.exporter, "--scorers", *args.scorers]  # fmt: skip
        if ray_address:
            command += ["--ray-address", ray_address]
        if args.tracemalloc:
            command.append("--tracemalloc")
        if args.trace_all:
            command.append("--trace-all")
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode:
            print(done.stderr[-4000:])
            raise SystemExit(done.returncode)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"\n{count} records: {row['seconds']:.1f} s, peak RSS {row['peak_mb']:.0f} MB "
            f"(of it anonymous memory at most {row['peak_anon_mb']:.0f} MB)",
            flush=True,
        )
        for label, rss, peak, traced, anon, shmem in row["phases"]:
            print(
                f"  {label:22} RSS {rss:7.0f} MB (anon {anon:5.0f}, shmem {shmem:4.0f})  peak so far {peak:7.0f} MB"
                + (f"  traced {traced:7.1f} MB" if args.tracemalloc else "")
            )
        for label, lines in row["top"].items():
            print(f"  top allocations alive {label}:")
            for line in lines:
                print("   ", line)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        start = {row["records"]: row["phases"][0][1] for row in rows}
        slope = (last["peak_mb"] - start[last["records"]] - (first["peak_mb"] - start[first["records"]])) * 1024
        slope /= last["records"] - first["records"]
        print(f"\npeak RSS above the start, per record (slope {first['records']} -> {last['records']}): {slope:.1f} KB")
        anon = {row["records"]: row["phases"][0][4] for row in rows}
        for low, high in zip(rows, rows[1:]):
            rise = (high["peak_mb"] - start[high["records"]] - (low["peak_mb"] - start[low["records"]])) * 1024
            rise_anon = high["peak_anon_mb"] - anon[high["records"]] - (low["peak_anon_mb"] - anon[low["records"]])
            span = high["records"] - low["records"]
            print(
                f"  {low['records']} -> {high['records']}: peak RSS {rise / span:.1f} KB per record, peak anonymous "
                f"memory {rise_anon * 1024 / span:.1f} KB per record"
            )


if __name__ == "__main__":
    main()
