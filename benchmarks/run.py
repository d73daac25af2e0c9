"""Benchmarks for issue 2: what `@promptops.track` costs per call, cold, and at import.

Every per-call row says what it measures (issue 16): *resolution only* (`trace_exporter="none"`,
`capture=None`: the prompt lookup and injection, what issue 2's targets are about), *defaults* (only
`tracking_uri` and `cache_dir` configured: spans exported to MLflow, capture on) and *tracing only*
(the defaults with `capture=False`). The benchmark runs in a temporary directory, so the default capture
store lands there, not in the caller's working directory.

Run with `make bench` (or `.venv/bin/python benchmarks/run.py`); `--check` exits 1 when a target is missed,
`--json FILE` also writes the figures. Everything is real: an MLflow sqlite registry in a temporary directory
and, for the REST backend, an `mlflow server` subprocess bound to 127.0.0.1. No other network is used.

How the per-call figures are taken: `time.perf_counter_ns()` around a batch of calls in a plain `for` loop;
the per-call figure of a batch is its time divided by the number of calls, and each row reports the
median, p90 and IQR of those batch figures. The contenders of a table run their batches interleaved (the
order rotates every repeat), so machine noise hits them all alike. The garbage collector stays enabled,
as in production; time spent in collections is recorded with `gc.callbacks` and reported per contender.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import gc
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Before anything imports MLflow: no telemetry, no model hub.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
for _name in [name for name in os.environ if name.startswith("PROMPTOPS_")] + ["MLFLOW_TRACKING_URI"]:
    os.environ.pop(_name, None)

PROMPT = "bench-summarize"
TEMPLATE = "Summarize in one line: {{text}}"
HEAVY_MODULES = ("mlflow", "torch", "typer", "rich", "httpx", "sentence_transformers", "sqlalchemy")

# Targets from issue 2.
TARGET_ADDED_NS = 2_000  # promptops adds under 2 µs at the median over a bare call
TARGET_VS_MLFLOW = 50.0  # ... and is at least 50x cheaper than MLflow's cached load_prompt (reported, see main())
TARGET_IMPORT_MS = 150.0  # `import promptops` under 150 ms above a bare interpreter


# -- formatting ----------------------------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if abs(ns) < 10_000:
        return f"{ns:,.0f} ns"
    if abs(ns) < 10_000_000:
        return f"{ns / 1_000:,.1f} µs"
    return f"{ns / 1_000_000:,.1f} ms"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- per-call measurement --------------------------------------------------------------------------------------


class GcClock:
    """Accumulates the time the garbage collector runs, attributed to the contender being measured."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.spent: dict[str, int] = {}
        self.full: dict[str, int] = {}
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if self.current is None:
            return
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            self.spent[self.current] = self.spent.get(self.current, 0) + time.perf_counter_ns() - self._start
            if info.get("generation") == 2:
                self.full[self.current] = self.full.get(self.current, 0) + 1

    @contextlib.contextmanager
    def attribute(self, name: str) -> Iterator[None]:
        self.current = name
        try:
            yield
        finally:
            self.current = None


@dataclass
class Contender:
    name: str
    batch: Callable[[int], int]  # runs n calls, returns elapsed ns
    calls: int  # calls per batch
    samples: list[float] = field(default_factory=list)  # ns per call, one per repeat


@dataclass
class Row:
    name: str
    calls: int
    repeats: int
    median_ns: float
    p90_ns: float
    iqr_ns: float
    ratio_vs_bare: float
    added_ns: float
    gc_ns_per_call: float
    full_collections: int


def run_interleaved(contenders: list[Contender], repeats: int, clock: GcClock) -> list[Row]:
    for contender in contenders:  # warm-up: caches, specialisation of the bytecode
        contender.batch(max(1, contender.calls // 10))
    for repeat in range(repeats):
        shift = repeat % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            with clock.attribute(contender.name):
                elapsed = contender.batch(contender.calls)
            contender.samples.append(elapsed / contender.calls)
    bare = statistics.median(contenders[0].samples)
    rows: list[Row] = []
    for contender in contenders:
        samples = contender.samples
        median = statistics.median(samples)
        total_calls = contender.calls * repeats
        rows.append(
            Row(
                name=contender.name,
                calls=contender.calls,
                repeats=repeats,
                median_ns=median,
                p90_ns=quantile(samples, 0.9),
                iqr_ns=quantile(samples, 0.75) - quantile(samples, 0.25),
                ratio_vs_bare=median / bare,
                added_ns=median - bare,
                gc_ns_per_call=clock.spent.get(contender.name, 0) / total_calls,
                full_collections=clock.full.get(contender.name, 0),
            )
        )
    return rows


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    headers = ["contender", "median/call", "p90", "IQR", "x bare", "added", "gc/call", "full gc", "calls x reps"]
    body = [
        [
            row.name,
            fmt_ns(row.median_ns),
            fmt_ns(row.p90_ns),
            fmt_ns(row.iqr_ns),
            f"{row.ratio_vs_bare:,.1f}",
            "-" if row is rows[0] else fmt_ns(row.added_ns),
            fmt_ns(row.gc_ns_per_call),
            str(row.full_collections),
            f"{row.calls:,} x {row.repeats}",
        ]
        for row in rows
    ]
    print(table(headers, body))


def sync_batch(func: Callable[[str], Any], before: Callable[[], object] | None = None) -> Callable[[int], int]:
    def batch(n: int) -> int:
        if before is not None:  # untimed set-up of this contender's batch
            before()
        loop = range(n)
        start = time.perf_counter_ns()
        for _ in loop:
            func("some text")
        return time.perf_counter_ns() - start

    return batch


def generator_batch(func: Callable[[str], Any]) -> Callable[[int], int]:
    def batch(n: int) -> int:
        loop = range(n)
        start = time.perf_counter_ns()
        for _ in loop:
            for _item in func("some text"):
                pass
        return time.perf_counter_ns() - start

    return batch


def async_batch(loop: asyncio.AbstractEventLoop, func: Callable[[str], Any]) -> Callable[[int], int]:
    async def calls(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            await func("some text")
        return time.perf_counter_ns() - start

    return lambda n: loop.run_until_complete(calls(n))


def async_generator_batch(loop: asyncio.AbstractEventLoop, func: Callable[[str], Any]) -> Callable[[int], int]:
    async def calls(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            async for _item in func("some text"):
                pass
        return time.perf_counter_ns() - start

    return lambda n: loop.run_until_complete(calls(n))


# -- subprocesses ----------------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PROMPTOPS_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    return env


def run_child(code: str, cwd: Path) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def wall_time(code: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=child_env(), check=True, timeout=300)
    return time.perf_counter() - start


def measure_import(work: Path, runs: int, mlflow_runs: int) -> dict[str, Any]:
    """Wall time of fresh interpreters, interleaved: bare, `import promptops`, `import mlflow` (for scale)."""
    programs = {"python -c pass": "pass", "import promptops": "import promptops", "import mlflow": "import mlflow"}
    times: dict[str, list[float]] = {name: [] for name in programs}
    for repeat in range(runs):
        for name, code in programs.items():
            if name == "import mlflow" and repeat >= mlflow_runs:
                continue
            times[name].append(wall_time(code, work))
    probe = run_child(
        "import sys, json, promptops\n"
        f"print(json.dumps({{'loaded': [m for m in {HEAVY_MODULES!r} if m in sys.modules], "
        "'modules': len(sys.modules)}))",
        work,
    )
    bare_modules = run_child("import sys, json; print(json.dumps({'modules': len(sys.modules)}))", work)["modules"]
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "runs": {name: len(values) for name, values in times.items()},
        "median_s": medians,
        "min_s": {name: min(values) for name, values in times.items()},
        "promptops_above_bare_ms": (medians["import promptops"] - medians["python -c pass"]) * 1000,
        "mlflow_above_bare_ms": (medians["import mlflow"] - medians["python -c pass"]) * 1000,
        "heavy_modules_loaded": probe["loaded"],
        "modules_after_import": probe["modules"],
        "modules_bare": bare_modules,
    }


GC_CHILD = """
import gc, json, statistics, sys, time
{imports}
def full_collection_ms(times=7):
    samples = []
    for _ in range(times):
        start = time.perf_counter_ns()
        gc.collect()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)
gc.collect()
objects = len(gc.get_objects())
before = full_collection_ms()
gc.freeze()
frozen = full_collection_ms()
print(json.dumps({{"objects": objects, "collect_ms": before, "collect_after_freeze_ms": frozen,
                  "mlflow_loaded": "mlflow" in sys.modules}}))
"""


def measure_gc(work: Path) -> dict[str, Any]:
    """Duration of one full `gc.collect()`, with and without MLflow in the heap, before and after freeze."""
    variants = {
        "python + promptops": "import promptops",
        "python + promptops + mlflow.genai": "import promptops, mlflow, mlflow.genai",
    }
    return {name: run_child(GC_CHILD.format(imports=imports), work) for name, imports in variants.items()}


# -- an MLflow server on 127.0.0.1 ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(db: Path, work: Path) -> Iterator[str]:
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{db}", "--default-artifact-root", str(work / "artifacts")]
    command += ["--workers", "1"]
    # The huey job runner it starts by default (several processes) is not needed to serve prompts, and on a
    # small machine it competes with what is being measured.
    env = {**child_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(work / "mlflow-server.log", "wb")
    # Its own session, so the uvicorn worker it spawns is stopped with it (by this process group's id).
    server = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(work / 'mlflow-server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start within 120 s")
            time.sleep(0.2)
        # The server's own first request is slow (lazy imports in the handler); that is not promptops' cost.
        with urllib.request.urlopen(
            f"{uri}/api/2.0/mlflow/registered-models/alias?name={PROMPT}&alias=production", timeout=30
        ) as response:
            response.read()
        yield uri
    finally:
        stop_group(server)
        log.close()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- cold resolution -------------------------------------------------------------------------------------------------

COLD_CHILD = """
import json, sys, time
start = time.perf_counter()
import promptops
imported = time.perf_counter()
promptops.configure(tracking_uri={uri!r}, cache_dir={cache!r})

@promptops.track(prompt={name!r})
def summarize(text, *, prompt):
    return prompt.format(text=text)

before = time.perf_counter()
summarize("some text")
first = time.perf_counter()
summarize("some text")
second = time.perf_counter()
print(json.dumps({{"import_s": imported - start, "first_call_s": first - before, "second_call_s": second - first,
                  "mlflow_loaded": "mlflow" in sys.modules}}))
"""


def cold_in_process(uri: str, work: Path, runs: int, label: str) -> list[float]:
    """First call after `configure()` with an empty cache directory: nothing in memory, nothing on disk."""
    import promptops

    @promptops.track(prompt=PROMPT)
    def summarize(text: str, *, prompt: promptops.Prompt) -> str:
        return prompt.format(text=text)

    samples: list[float] = []
    for run in range(runs):
        cache = work / f"cold-{label}-{run}"
        promptops.configure(tracking_uri=uri, cache_dir=cache)
        start = time.perf_counter_ns()
        summarize("some text")
        samples.append((time.perf_counter_ns() - start) / 1e6)
        promptops.flush()
    return samples


def cold_fresh_process(uri: str, work: Path, runs: int, label: str) -> list[dict[str, Any]]:
    return [
        run_child(COLD_CHILD.format(uri=uri, cache=str(work / f"cold-child-{label}-{run}"), name=PROMPT), work)
        for run in range(runs)
    ]


def mlflow_uncached_load(uri: str, runs: int) -> list[float]:
    """MLflow's own `load_prompt` with its cache bypassed (`cache_ttl_seconds=0`): one round trip each."""
    import mlflow
    import mlflow.genai

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        mlflow.genai.load_prompt(f"prompts:/{PROMPT}@production", cache_ttl_seconds=0)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "max_ms": max(samples)}


# -- main --------------------------------------------------------------------------------------------------------------


def hot_path(
    uri: str, server_uri: str | None, work: Path, calls: int, mlflow_calls: int, repeats: int, clock: GcClock
) -> dict[str, Any]:
    import mlflow
    import mlflow.genai
    import wrapt

    import promptops

    # Resolution only: what issue 2's targets are about (written before tracing and capture existed). The
    # defaults (spans to MLflow, capture on) are measured by `defaults_path()`, labelled as such (issue 16).
    promptops.configure(tracking_uri=uri, cache_dir=work / "cache", trace_exporter="none", capture=False)
    assert promptops.get_settings().capture is None

    def use_mlflow_uri(target: str) -> Callable[[], None]:
        # load_prompt reads the process-wide URI; each MLflow contender sets its own before its batch.
        def set_uri() -> None:
            mlflow.set_tracking_uri(target)
            mlflow.set_registry_uri(target)

        return set_uri

    def bare(text: str) -> str:
        return text

    @functools.wraps(bare)
    def wraps_noop(*args: Any, **kwargs: Any) -> Any:
        return bare(*args, **kwargs)

    def noop(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)

    wrapt_noop = wrapt.FunctionWrapper(bare, noop)

    @promptops.track(prompt=PROMPT)
    def tracked(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    @promptops.track(prompt=PROMPT)
    def tracked_current(text: str) -> str:
        return text

    def mlflow_cached(text: str) -> str:
        mlflow.genai.load_prompt(f"prompts:/{PROMPT}@production")
        return text

    # Warm every cache with one call, and check each contender does what it claims.
    assert tracked("x") == "x" and tracked_current("x") == "x"
    assert promptops.stats()["registry_fetches"] == 1
    mlflow_uris = {"sqlite": uri, **({"REST server": server_uri} if server_uri else {})}
    for target in mlflow_uris.values():
        use_mlflow_uri(target)()
        assert mlflow_cached("x") == "x"

    @promptops.track(prompt=PROMPT)
    def probe(text: str, *, prompt: promptops.Prompt) -> promptops.Prompt:
        return prompt

    prompt = probe("x")
    assert prompt.source == "cache" and prompt.template == TEMPLATE, prompt

    sync = [
        Contender("bare call", sync_batch(bare), calls),
        Contender("functools.wraps no-op", sync_batch(wraps_noop), calls),
        Contender("wrapt.FunctionWrapper no-op", sync_batch(wrapt_noop), calls),
        Contender("@promptops.track, resolution only (prompt injected)", sync_batch(tracked), calls),
        Contender("@promptops.track, resolution only (current_prompt)", sync_batch(tracked_current), calls),
    ]
    sync += [
        Contender(
            f"mlflow load_prompt, cached alias ({kind})",
            sync_batch(mlflow_cached, use_mlflow_uri(target)),
            mlflow_calls,
        )
        for kind, target in mlflow_uris.items()
    ]
    sync_rows = run_interleaved(sync, repeats, clock)
    fetches_after = promptops.stats()["registry_fetches"]

    async def abare(text: str) -> str:
        return text

    @promptops.track(prompt=PROMPT)
    async def atracked(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    def gbare(text: str) -> Iterator[str]:
        yield text

    @promptops.track(prompt=PROMPT)
    def gtracked(text: str, *, prompt: promptops.Prompt) -> Iterator[str]:
        yield text

    async def agbare(text: str) -> Any:
        yield text

    @promptops.track(prompt=PROMPT)
    async def agtracked(text: str, *, prompt: promptops.Prompt) -> Any:
        yield text

    loop = asyncio.new_event_loop()
    try:
        async_rows = run_interleaved(
            [
                Contender("async bare", async_batch(loop, abare), calls),
                Contender("async @promptops.track, resolution only", async_batch(loop, atracked), calls),
            ],
            repeats,
            clock,
        )
        agen_rows = run_interleaved(
            [
                Contender("async generator bare (1 item)", async_generator_batch(loop, agbare), calls),
                Contender(
                    "async generator @promptops.track, resolution only", async_generator_batch(loop, agtracked), calls
                ),
            ],
            repeats,
            clock,
        )
    finally:
        loop.close()
    gen_rows = run_interleaved(
        [
            Contender("generator bare (1 item)", generator_batch(gbare), calls),
            Contender("generator @promptops.track, resolution only", generator_batch(gtracked), calls),
        ],
        repeats,
        clock,
    )

    # The same two contenders again after gc.freeze(): everything imported so far (MLflow included) moves to
    # the permanent generation and is no longer traversed by collections.
    gc.collect()
    gc.freeze()
    try:
        frozen_rows = run_interleaved(
            [
                Contender("bare call (after gc.freeze)", sync_batch(bare), calls),
                Contender("@promptops.track, resolution only (after gc.freeze)", sync_batch(tracked), calls),
            ],
            repeats,
            clock,
        )
    finally:
        gc.unfreeze()
    return {
        "sync": sync_rows,
        "async": async_rows,
        "generator": gen_rows,
        "async_generator": agen_rows,
        "frozen": frozen_rows,
        "registry_fetches_during_hot_path": fetches_after - 1,
    }


def defaults_path(uri: str, work: Path, calls: int, repeats: int, clock: GcClock) -> dict[str, Any]:
    """`@promptops.track` with the defaults: spans exported to MLflow (the same sqlite store), capture on.

    Only `tracking_uri` and `cache_dir` are configured, so every other setting is its default; the capture
    store is the default `sqlite:///.promptops/captures.db`, relative to the working directory, which `main()`
    has made the benchmark's temporary directory. The calling thread's time is the per-call figure; the
    exporter and capture writer threads run during the batch as in an application (the span processor starts
    an export at 512 queued spans), and what is left queued at the end of a batch is flushed, timed
    separately (`flush/call`), so the backlog never falls into the next contender's batch.
    """
    import promptops
    from promptops import _config

    _config.reset()  # forget the resolution-only settings: everything below is a default, as in a new process
    promptops.configure(tracking_uri=uri, cache_dir=work / "cache-defaults")
    settings = promptops.get_settings()
    assert settings.trace_exporter == "mlflow" and settings.capture == f"sqlite:///{work}/.promptops/captures.db", (
        settings
    )

    def bare(text: str) -> str:
        return text

    @promptops.track(prompt=PROMPT)
    def defaults(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    @promptops.track(prompt=PROMPT, capture=False)
    def tracing_only(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    flushes: dict[str, list[float]] = {}

    def flushed(name: str, func: Callable[[str], Any]) -> Callable[[int], int]:
        def batch(n: int) -> int:
            elapsed = sync_batch(func)(n)
            start = time.perf_counter_ns()
            assert promptops.flush(timeout=300), "flush timed out"
            flushes.setdefault(name, []).append((time.perf_counter_ns() - start) / n)
            return elapsed

        return batch

    assert defaults("x") == "x" and tracing_only("x") == "x"
    assert promptops.flush(timeout=60)
    names = {
        "defaults": "@promptops.track, defaults (tracing to MLflow + capture to SQLite)",
        "tracing": "@promptops.track, tracing only (capture=False)",
    }
    rows = run_interleaved(
        [
            Contender("bare call", sync_batch(bare), calls),
            Contender(names["defaults"], flushed(names["defaults"], defaults), calls),
            Contender(names["tracing"], flushed(names["tracing"], tracing_only), calls),
        ],
        repeats,
        clock,
    )
    stats = promptops.stats()
    written = promptops.capture.CaptureStore.open(settings.capture).count()
    return {
        "rows": rows,
        "flush_ns_per_call": {name: statistics.median(values[1:] or values) for name, values in flushes.items()},
        "spans_dropped": stats.get("spans_dropped", 0),
        "captures_written": written,
        "captures_dropped": sum(value for key, value in stats.items() if key.startswith("captures_dropped")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target of issue 2 is missed")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--calls", type=int, default=10_000, help="calls per batch (default 10,000)")
    parser.add_argument("--mlflow-calls", type=int, default=500, help="calls per batch of MLflow's load_prompt")
    parser.add_argument("--repeats", type=int, default=15, help="batches per contender (default 15)")
    parser.add_argument("--import-runs", type=int, default=9, help="fresh interpreters per import figure")
    parser.add_argument("--cold-runs", type=int, default=7, help="cold resolutions per backend")
    parser.add_argument(
        "--defaults-calls", type=int, default=1_000, help="calls per batch with the defaults (tracing + capture)"
    )
    parser.add_argument("--no-server", action="store_true", help="skip the mlflow server measurements")
    parser.add_argument(
        "--skip",
        action="append",
        choices=["import", "gc", "cold", "defaults"],
        default=[],
        help="skip a section (repeatable)",
    )
    args = parser.parse_args()

    import mlflow
    import wrapt

    import promptops

    started = datetime.datetime.now(datetime.timezone.utc)
    environment = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mlflow": mlflow.__version__,
        "promptops": promptops.__version__,
        "wrapt": getattr(wrapt, "__version__", "?"),
        "gc_thresholds": gc.get_threshold(),
        "load_average": " ".join(f"{load:.2f}" for load in os.getloadavg()),  # others' work skews the figures
    }
    print("promptops benchmarks (issue 2)")
    for key, value in environment.items():
        print(f"  {key:15s} {value}")
    print(
        "\nPer-call figures: time.perf_counter_ns() around batches of calls in a for loop (loop overhead included in "
        f"every row, so `added` is what the wrapper costs); {args.calls:,} calls per batch "
        f"({args.mlflow_calls:,} for MLflow), {args.repeats} batches per contender, contenders interleaved with the "
        "order rotating each repeat, one warm-up batch each. gc enabled (default thresholds); `gc/call` is the "
        "time spent in collections during that contender's batches, `full gc` the number of generation-2 "
        "collections. MLflow is imported in this process (load_prompt needs it), so every collection walks its heap."
    )

    work = Path(tempfile.mkdtemp(prefix="promptops-bench-"))
    # Whatever a default writes relative to the working directory (the capture store, `.promptops/captures.db`)
    # goes to the temporary directory, never into the caller's (issue 16).
    caller_cwd = Path.cwd()
    if args.json:
        args.json = args.json.resolve()
    os.chdir(work)
    results: dict[str, Any] = {"environment": environment}
    failures: list[str] = []
    stack = contextlib.ExitStack()
    try:
        # 1. import cost, in fresh interpreters (before this process grows)
        print(f"\nImport cost: wall time of fresh interpreters, median of {args.import_runs} interleaved runs ...")
        import_runs = 1 if "import" in args.skip else args.import_runs  # skipped: one run, to check the modules
        imports = measure_import(work, import_runs, min(import_runs, 5))
        results["import"] = imports
        median = imports["median_s"]
        print(
            table(
                ["program", "median", "min", "above bare", "runs"],
                [
                    [
                        name,
                        f"{median[name] * 1000:,.0f} ms",
                        f"{imports['min_s'][name] * 1000:,.0f} ms",
                        "-"
                        if name == "python -c pass"
                        else f"{(median[name] - median['python -c pass']) * 1000:,.0f} ms",
                        str(imports["runs"][name]),
                    ]
                    for name in median
                ],
            )
        )
        print(
            f"after `import promptops`: {imports['modules_after_import']} modules (bare: {imports['modules_bare']}); "
            f"heavy modules loaded: {imports['heavy_modules_loaded'] or 'none'} (checked {', '.join(HEAVY_MODULES)})"
        )
        if "import" not in args.skip and imports["promptops_above_bare_ms"] > TARGET_IMPORT_MS:
            failures.append(f"import promptops {imports['promptops_above_bare_ms']:.0f} ms above bare > 150 ms")
        if {"mlflow", "torch", "typer", "rich"} & set(imports["heavy_modules_loaded"]):
            failures.append(f"import promptops loads {imports['heavy_modules_loaded']}")

        # 2. garbage collection with and without MLflow in the heap
        print("\nFull collection (gc.collect(), median of 7) in fresh interpreters, before and after gc.freeze():")
        gcs = measure_gc(work) if "gc" not in args.skip else {}
        results["gc"] = gcs
        print(
            table(
                ["process", "objects", "gc.collect()", "after gc.freeze()"],
                [
                    [name, f"{g['objects']:,}", f"{g['collect_ms']:.2f} ms", f"{g['collect_after_freeze_ms']:.2f} ms"]
                    for name, g in gcs.items()
                ],
            )
        )

        # 3. a real sqlite registry, and an mlflow server on 127.0.0.1 serving the same store
        db = work / "mlflow.db"
        uri = f"sqlite:///{db}"
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        version = client.register_prompt(name=PROMPT, template=TEMPLATE, commit_message="benchmark")
        client.set_prompt_alias(PROMPT, "production", version.version)
        server_uri = None if args.no_server else stack.enter_context(mlflow_server(db, work))

        # 4. per call, warm
        clock = GcClock()
        gc.callbacks.append(clock)
        try:
            hot = hot_path(uri, server_uri, work, args.calls, args.mlflow_calls, args.repeats, clock)
        finally:
            gc.callbacks.remove(clock)
        titles = {
            "sync": "Per call, warm cache, resolution only (trace_exporter='none', capture=None; plain functions)",
            "async": "Per call, warm cache, resolution only (async def, awaited in one event loop)",
            "generator": "Per call, warm cache, resolution only (generator yielding one item, iterated to the end)",
            "async_generator": "Per call, warm cache, resolution only (async generator yielding one item)",
            "frozen": "Per call after gc.freeze(), resolution only (MLflow's heap no longer traversed)",
        }
        for key, title in titles.items():
            print_rows(title, hot[key])
        results["per_call"] = {key: [asdict(row) for row in hot[key]] for key in titles}
        sync = {row.name: row for row in hot["sync"]}
        tracked = sync["@promptops.track, resolution only (prompt injected)"]
        # The reference (about 130 µs) is load_prompt against a tracking server; without one, sqlite.
        reference = (
            sync.get("mlflow load_prompt, cached alias (REST server)")
            or sync["mlflow load_prompt, cached alias (sqlite)"]
        )
        vs_mlflow = reference.added_ns / tracked.added_ns if tracked.added_ns > 0 else float("inf")
        results["targets"] = {
            "promptops_added_ns": tracked.added_ns,
            "mlflow_reference": reference.name,
            "mlflow_cached_added_ns": reference.added_ns,
            "mlflow_over_promptops": vs_mlflow,
        }
        print(
            f"\n@promptops.track, resolution only, adds {fmt_ns(tracked.added_ns)} per call at the median "
            f"(target < 2 µs); {reference.name} adds {fmt_ns(reference.added_ns)}: side by side, promptops' "
            f"resolution is {vs_mlflow:,.0f}x cheaper. Registry fetches during the warm runs: "
            f"{hot['registry_fetches_during_hot_path']} (TTL 60 s)."
        )
        if tracked.added_ns > TARGET_ADDED_NS:
            failures.append(f"@promptops.track (resolution only) adds {fmt_ns(tracked.added_ns)} > 2 µs")
        if vs_mlflow < TARGET_VS_MLFLOW:
            # Not a --check failure: issue 2's 50x assumed load_prompt costs about 130 µs, i.e. promptops under
            # 2.6 µs, which the 2 µs target above already checks. Side by side load_prompt is much cheaper than
            # that, so the ratio is reported, as measured, and docs/performance.md says the 50x was missed.
            print(
                f"note: the {TARGET_VS_MLFLOW:.0f}x ratio of issue 2 is missed side by side ({vs_mlflow:.0f}x): it "
                f"assumed load_prompt costs about 130 µs; here it costs {fmt_ns(reference.added_ns)}"
            )

        # 4b. per call with the defaults: tracing to MLflow and capture on
        if "defaults" not in args.skip:
            clock = GcClock()
            gc.callbacks.append(clock)
            try:
                defaults = defaults_path(uri, work, args.defaults_calls, args.repeats, clock)
            finally:
                gc.callbacks.remove(clock)
            title = "Per call, warm cache, with the defaults (spans exported to MLflow's sqlite store, capture on)"
            print_rows(title, defaults["rows"])
            flush = defaults["flush_ns_per_call"]
            print(
                "flush/call (the export and capture backlog left at the end of a batch, flushed and timed "
                "separately, divided by the batch's calls): "
                + "; ".join(f"{name}: {fmt_ns(ns)}" for name, ns in flush.items())
            )
            print(
                f"spans dropped: {defaults['spans_dropped']}; captures written: {defaults['captures_written']:,}, "
                f"dropped: {defaults['captures_dropped']}"
            )
            results["per_call_defaults"] = {
                "rows": [asdict(row) for row in defaults["rows"]],
                "flush_ns_per_call": flush,
                "spans_dropped": defaults["spans_dropped"],
                "captures_written": defaults["captures_written"],
                "captures_dropped": defaults["captures_dropped"],
            }

        # 5. cold resolution
        if "cold" in args.skip:
            args.cold_runs = 1
        print(f"\nCold resolution: the first call with nothing in memory or on disk ({args.cold_runs} runs each)")
        cold: dict[str, Any] = {}
        cold["promptops, sqlite, in process (MLflow already imported)"] = summary_ms(
            cold_in_process(uri, work, args.cold_runs, "sqlite")
        )
        children = cold_fresh_process(uri, work, 3, "sqlite")
        cold["promptops, sqlite, fresh process (first call imports MLflow)"] = summary_ms(
            [child["first_call_s"] * 1000 for child in children]
        )
        cold["mlflow load_prompt uncached, sqlite"] = summary_ms(mlflow_uncached_load(uri, args.cold_runs))
        if server_uri is not None:
            cold["promptops, REST server, in process"] = summary_ms(
                cold_in_process(server_uri, work, args.cold_runs, "rest")
            )
            children = cold_fresh_process(server_uri, work, 3, "rest")
            cold["promptops, REST server, fresh process"] = summary_ms(
                [child["first_call_s"] * 1000 for child in children]
            )
            cold["promptops, REST server, fresh process: second call"] = summary_ms(
                [child["second_call_s"] * 1000 for child in children]
            )
            results["rest_child_imports_mlflow"] = any(child["mlflow_loaded"] for child in children)
            cold["mlflow load_prompt uncached, REST server"] = summary_ms(
                mlflow_uncached_load(server_uri, args.cold_runs)
            )
        results["cold"] = cold
        print(
            table(
                ["cold resolution", "median", "min", "max"],
                [
                    [name, f"{s['median_ms']:,.2f} ms", f"{s['min_ms']:,.2f} ms", f"{s['max_ms']:,.2f} ms"]
                    for name, s in cold.items()
                ],
            )
        )
        print(
            "(fresh process: 3 runs each, timed inside the child around the first call; the cache directory is "
            "empty every time)"
        )
        if "rest_child_imports_mlflow" in results:
            print(
                "a fresh process reading from the server imported mlflow: "
                f"{'yes' if results['rest_child_imports_mlflow'] else 'no'}"
            )
            if results["rest_child_imports_mlflow"]:
                failures.append("reading a prompt from a tracking server imported mlflow")
    finally:
        promptops.shutdown(timeout=5)
        stack.close()
        os.chdir(caller_cwd)
        shutil.rmtree(work, ignore_errors=True)

    results["failures"] = failures
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print()
    if failures:
        print("targets missed:\n  " + "\n  ".join(failures))
    else:
        print("all targets met")
    return 1 if failures and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
