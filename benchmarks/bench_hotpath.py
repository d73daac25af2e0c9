"""The warm call of the real `@promptops.track`, by what it does, next to a raw OpenTelemetry span (issues 11, 16).

Run with `.venv/bin/python benchmarks/bench_hotpath.py` (`--repeats`, `--calls`). To compare two versions of
the code, run it once per checkout with `PYTHONPATH=<checkout>` (it imports `promptops` from there) and
compare the rows; `--json FILE` writes the figures.

Everything is real: an MLflow sqlite registry in a temporary directory (the prompt is resolved from it once,
then served from memory: the warm path), the OpenTelemetry SDK's `TracerProvider` with a
`BatchSpanProcessor` (its exporter drops the batches, so the export thread costs almost nothing), and a
SQLite capture store written by the background writer.

The tracked function takes a query string and a small dict of options, and returns a string: a dict argument
is what the capture must convert in the caller's thread (it could be mutated after the call). Rows:

- `bare`: the function called directly;
- `resolution only`: `@track` with tracing and capture off;
- `tracing only`: `@track` with tracing on, capture off;
- `tracing + capture`: both on (the defaults, with the in-process exporter above);
- `tracing, app provider`: tracing on, capture off, the spans going to the application's own global provider (the
  same SDK provider, set with `trace.set_tracer_provider`): promptops then sets the OpenInference attributes on the
  span in the call, since the application's exporters will not add them (issue 12);
- `app provider, lean`: the same without three of them (`input.mime_type`, `output.mime_type`,
  `llm.prompt_template.variables`; the benchmark strips them from the call's attributes): what those three cost,
  side by side in one run;
- `raw OTel span`: the function inside `tracer.start_as_current_span`, inputs and output recorded as JSON
  attributes with `json.dumps` (what a hand-written instrumentation records, with no redaction);
- `same work, unchecked`: what tracing + capture does for this call written out by hand with nothing checked: the
  span with promptops' seven attributes, made current, the inputs and output as JSON text from orjson, a record
  tuple queued (and dropped). No binding by name, no redaction, no limits, no never-raise: the floor the SDK and
  the work itself set, so `tracing + capture` minus this row is promptops' own Python (issue 11).

Each figure is the median over repeats of a batch's time per call: the calling thread's CPU time
(`time.thread_time_ns()`, so the background threads' work and other processes on a loaded machine are left
out; `--wall` for wall time) around a plain `for` loop; contenders run interleaved, the order rotating each
repeat. `added` is the figure minus `bare`;
the last line is the ratio issue 11 sets a target for: tracing + capture at most 1.5x the raw span. `in gc` is the
wall time per call of the garbage collections run in the calling thread during the batch (a collection is charged
to whichever call allocates when it is due, so allocation-heavy paths pay for the heap they make others scan).

`--instructions` counts instead of timing: the script runs itself twice under valgrind's callgrind (400 and 800 calls
of each contender, in parallel) and prints the calling thread's instructions per call, the difference of the two
runs over 400 (set-up and warm-up cancel out), with the collector off. Instruction counts are the same run to run
and whatever else the machine does, where times on a shared 2-core machine move by 10-20% (issue 11); they leave
out what instructions do not show (cache misses, collections, another thread's contention). Needs `valgrind` and a
Python with symbols (`list_sort_impl`: the measured calls run inside a `sorted()` key, which switches counting on).

`--gc-freeze` moves the set-up's objects out of the collector's reach first (`gc.freeze()`, what a server does
after start-up); `--profile CONTENDER` prints a cProfile of 20,000 calls of one contender instead (collector off).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"

QUERY = "What did the committee decide about the new schedule for the shared documents?"
OPTIONS = {"temperature": 0.2, "top_k": 5, "tags": ["news", "eu"]}
ANSWER = "The committee accepted the new schedule, provided the documents are updated by Friday."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--wall", action="store_true", help="wall time instead of the calling thread's CPU time")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the set-up (see the docstring)")
    parser.add_argument(
        "--profile", metavar="CONTENDER", help="instead: cProfile 20,000 calls of one contender (e.g. 'tracing only')"
    )
    parser.add_argument("--instructions", action="store_true", help="instead: instructions per call (callgrind)")
    parser.add_argument("--callgrind-calls", type=int, help=argparse.SUPPRESS)  # a child of --instructions
    args = parser.parse_args()
    if args.instructions:
        return count_instructions()

    from mlflow import MlflowClient
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    import promptops
    from promptops import tracing

    class Discard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    workdir = Path(tempfile.mkdtemp(prefix="promptops-hotpath-"))
    os.chdir(workdir)
    registry = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=registry, registry_uri=registry)
    version = client.register_prompt(name="answer", template="Answer: {{query}}")
    client.set_prompt_alias("answer", "production", version.version)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    raw_tracer = provider.get_tracer("raw")

    def answer(query: str, options: dict[str, Any], *, prompt: promptops.Prompt) -> str:
        return ANSWER

    uncaptured = promptops.track(prompt="answer", capture=False)(answer)
    captured = promptops.track(prompt="answer")(answer)
    raw_prompt = promptops.Prompt(name="answer", version=1, template="Answer: {{query}}", source="registry")

    # One configuration for the whole run (each configure() empties the memory cache): capture is on, and
    # the `capture=False` decorator stands for "capture off".
    promptops.configure(
        tracking_uri=registry,
        cache_dir=str(workdir / "cache"),
        trace_exporter="none",
        capture=f"sqlite:///{workdir / 'captures.db'}",
    )

    def bare() -> None:
        answer(QUERY, OPTIONS, prompt=raw_prompt)

    def without_capture() -> None:
        uncaptured(QUERY, OPTIONS)

    def with_capture() -> None:
        captured(QUERY, OPTIONS)

    def raw_span() -> None:
        with raw_tracer.start_as_current_span(
            "answer", attributes={"inputs": json.dumps({"query": QUERY, "options": OPTIONS})}
        ) as span:
            result = answer(QUERY, OPTIONS, prompt=raw_prompt)
            span.set_attribute("output", json.dumps(result))

    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace

    from promptops._json import plain_encoder

    to_json = plain_encoder()
    queued: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=512)

    def unchecked() -> None:
        inputs = to_json({"query": QUERY, "options": OPTIONS.copy()})
        span = raw_tracer.start_span(
            "answer",
            attributes={
                "promptops.prompt.name": "answer",
                "promptops.prompt.version": 1,
                "promptops.prompt.source": "registry",
                "promptops.prompt.alias": "production",
                "promptops.function": "bench:answer",
                "promptops.inputs": inputs,
            },
        )
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        began = time.perf_counter_ns()
        result = answer(QUERY, OPTIONS, prompt=raw_prompt)
        ended = time.perf_counter_ns()
        output = to_json(result)
        span.set_attribute("promptops.output", output)
        otel_context.detach(token)
        span.end()
        ids = span.get_span_context()
        queued.append((inputs, output, began, ended, ids.trace_id, ids.span_id, time.time_ns()))

    contenders: dict[str, Callable[[], None]] = {
        "bare": bare,
        "resolution only": without_capture,
        "tracing only": without_capture,
        "tracing + capture": with_capture,
        "raw OTel span": raw_span,
        "tracing, app provider": without_capture,
        "app provider, lean": without_capture,
        "same work, unchecked": unchecked,
    }
    traced = {"tracing only", "tracing + capture"}
    from opentelemetry import trace

    trace.set_tracer_provider(provider)  # the application's own provider: used where no override is active

    def routing(name: str) -> Any:
        if name == "tracing, app provider":
            return contextlib.nullcontext()  # no override: promptops uses the application's global provider
        if name == "app provider, lean":
            return lean_openinference()
        return tracing.use_provider(provider if name in traced or name == "raw OTel span" else None)

    # CPU time of this thread: what the call costs its caller. The span export and capture writer threads run
    # meanwhile (as in production) but are not counted; on a loaded machine wall time mostly measures others.
    clock = time.perf_counter_ns if args.wall else time.thread_time_ns
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    in_gc = GcTime()
    gc.callbacks.append(in_gc)
    gc_samples: dict[str, list[float]] = {name: [] for name in contenders}
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for name in names:  # warm-up: the prompt is fetched once, every path runs once
        with routing(name):
            contenders[name]()
    if args.profile:
        with tracing.use_provider(provider if args.profile in traced or args.profile == "raw OTel span" else None):
            profile(contenders[args.profile], 20_000)
        provider.shutdown()
        promptops.shutdown(10)
        return 0
    if args.callgrind_calls:
        under_callgrind(contenders, routing, args.callgrind_calls)
        provider.shutdown()
        promptops.shutdown(10)
        return 0
    for repeat in range(args.repeats + 1):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            run = contenders[name]
            with routing(name):
                collected = in_gc.ns
                start = clock()
                for _ in range(args.calls):
                    run()
                elapsed = (clock() - start) / args.calls
                collected = (in_gc.ns - collected) / args.calls
            if repeat:  # the first round warms every contender up
                samples[name].append(elapsed)
                gc_samples[name].append(collected)
            promptops.flush(60)
    provider.shutdown()
    promptops.shutdown(10)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["bare"]
    what = "wall time" if args.wall else "calling thread's CPU time"
    print(f"warm call of @promptops.track, {what}, {args.calls:,} calls x {args.repeats} repeats, interleaved")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; python {sys.version.split()[0]}")
    print(f"{'contender':22s} {'median/call':>12s} {'added':>10s} {'in gc':>10s}")
    for name, value in medians.items():
        collecting = statistics.median(gc_samples[name])
        print(f"{name:22s} {value / 1000:10.2f} µs {(value - base) / 1000:8.2f} µs {collecting / 1000:8.2f} µs")
    raw = medians["raw OTel span"] - base
    both = medians["tracing + capture"] - base
    alone = medians["tracing only"] - base
    app = medians["tracing, app provider"] - base
    lean = medians["app provider, lean"] - base
    # The same ratios per repeat (each repeat's batches ran back to back), then their median: a full collection of
    # the set-up's heap landing in one batch moves one repeat, not the median; the quartiles show the spread.
    for name in (
        "tracing + capture",
        "tracing only",
        "tracing, app provider",
        "app provider, lean",
        "same work, unchecked",
    ):
        paired = sorted(
            (mine - bare) / (span - bare)
            for mine, span, bare in zip(samples[name], samples["raw OTel span"], samples["bare"], strict=True)
        )
        print(
            f"per repeat: {name} / raw span median {statistics.median(paired):.2f}x "
            f"(quartiles {paired[len(paired) // 4]:.2f}-{paired[3 * len(paired) // 4]:.2f}x)"
        )
    print(
        f"tracing + capture adds {both / raw:.2f}x what the raw span adds (target <= 1.5x); tracing alone {alone / raw:.2f}x"
        f"; tracing alone into an application provider (OpenInference attributes in the call) {app / raw:.2f}x"
        f" ({lean / raw:.2f}x without the mime types and the template's variables)"
    )
    if args.json:
        figures = {
            "medians_ns": medians,
            "ratio": both / raw,
            "tracing_ratio": alone / raw,
            "app_ratio": app / raw,
            "app_lean_ratio": lean / raw,
        }
        args.json.write_text(json.dumps(figures))
    return 0


@contextlib.contextmanager
def lean_openinference() -> Any:
    """Inside the block, calls into an application provider leave out three OpenInference attributes (see the rows)."""
    from promptops import _span

    full, full_output = _span._openinference, _span._set_output
    left_out = (_span.OI_INPUT_MIME_TYPE, _span.OI_TEMPLATE_VARIABLES)

    def openinference(prompt: Any, attributes: dict[str, Any]) -> None:
        full(prompt, attributes)
        for key in left_out:  # two dict pops: tens of nanoseconds, against the SDK's work per attribute
            attributes.pop(key, None)

    def set_output(span: Any, text: str) -> None:
        span.set_attributes({_span.OUTPUT: text, _span.OI_OUTPUT_VALUE: text})

    _span._openinference, _span._set_output = openinference, set_output
    try:
        yield
    finally:
        _span._openinference, _span._set_output = full, full_output


def under_callgrind(contenders: dict[str, Callable[[], None]], routing: Callable[[str], Any], calls: int) -> None:
    """The child of `--instructions`: each contender's calls counted alone (callgrind's counters zeroed, then dumped)."""
    import subprocess

    def control(option: str) -> None:
        subprocess.run(["callgrind_control", option, str(os.getpid())], capture_output=True, check=False)

    import promptops

    gc.collect()
    gc.disable()  # the instructions of the calls, not of collections a batch happens to trigger
    for name, run in contenders.items():

        def batch(_: object, run: Callable[[], None] = run) -> int:
            for _ in range(calls):
                run()
            return 0

        with routing(name):
            control("--zero")
            sorted([0], key=batch)  # counting is on inside `sorted` only (`--toggle-collect=list_sort_impl`)
            control(f"--dump={name}")
        promptops.flush(60)
    gc.enable()


def count_instructions() -> int:
    """`--instructions`: run this script under callgrind at two sizes and print instructions per call."""
    import re
    import shutil
    import subprocess

    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("--instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    sizes = (400, 800)
    with tempfile.TemporaryDirectory(prefix="promptops-callgrind-") as directory:
        children = [
            subprocess.Popen(
                [
                    "valgrind", "--tool=callgrind", "--separate-threads=yes", "--toggle-collect=list_sort_impl",
                    f"--callgrind-out-file={directory}/cg.{size}", sys.executable, __file__,
                    f"--callgrind-calls={size}",
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for size in sizes
        ]  # fmt: skip
        if any(child.wait() != 0 for child in children):
            print("a callgrind run failed: run it by hand to see why", file=sys.stderr)
            return 1
        totals: dict[int, dict[str, int]] = {size: {} for size in sizes}
        # `cg.<size>.<dump>-01`: thread 1 (the calling thread), dumps in the contenders' order.
        for path in sorted(Path(directory).glob("cg.*.*-01"), key=lambda path: int(path.name.split(".")[2][:-3])):
            text = path.read_text()
            dumped = re.search(r"^desc: Trigger: dump (.+)$", text, re.MULTILINE)
            summary = re.search(r"^summary: (\d+)$", text, re.MULTILINE)
            if dumped and summary:
                totals[int(path.name.split(".")[1])][dumped.group(1)] = int(summary.group(1))
    small, large = totals[sizes[0]], totals[sizes[1]]
    per_call = {name: (large[name] - small[name]) / (sizes[1] - sizes[0]) for name in small if name in large}
    if "raw OTel span" not in per_call or "tracing + capture" not in per_call:
        print("no instructions counted: does this Python have symbols (list_sort_impl)?", file=sys.stderr)
        return 1
    base = per_call.get("bare", 0.0)
    print("warm call of @promptops.track, the calling thread's instructions per call (callgrind), collector off")
    print(f"{'contender':22s} {'per call':>12s} {'added':>12s}")
    for name, value in per_call.items():
        print(f"{name:22s} {value:12,.0f} {value - base:12,.0f}")
    raw = per_call["raw OTel span"] - base
    print(
        f"tracing + capture adds {(per_call['tracing + capture'] - base) / raw:.2f}x the instructions the raw span "
        f"adds (target <= 1.5x); tracing alone {(per_call['tracing only'] - base) / raw:.2f}x"
    )
    return 0


class GcTime:
    """A `gc.callbacks` entry adding up the wall time of the collections run in the calling thread."""

    def __init__(self) -> None:
        self.ns = 0
        self._started = 0
        self._thread = threading.get_ident()

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._started = time.perf_counter_ns()
        else:
            self.ns += time.perf_counter_ns() - self._started


def profile(run: Callable[[], None], calls: int) -> None:
    """Print the 30 entries with the most own time over `calls` calls of `run` (cProfile inflates small frames)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    gc.disable()  # a collection is charged to whichever frame allocated last: noise in a profile
    profiler.enable()
    for _ in range(calls):
        run()
    profiler.disable()
    gc.enable()
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"{'own ns/call':>12s} {'cum ns/call':>12s} {'calls/call':>10s}  function")
    for (filename, line, name), (_, ncalls, own, cumulative, _) in rows[:30]:
        where = filename.split("site-packages/")[-1].split("/hotpath/")[-1]
        print(
            f"{own / calls * 1e9:12.0f} {cumulative / calls * 1e9:12.0f} {ncalls / calls:10.1f}  {where}:{line}({name})"
        )


if __name__ == "__main__":
    sys.exit(main())
