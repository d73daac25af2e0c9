"""Benchmark for issue 6: what `PromptOpsCallbackHandler` adds to a LangChain chain invocation.

Run with `.venv/bin/python benchmarks/bench_langchain.py` (needs promptops-langchain:
`pip install -e integrations/langchain`; `mlflow.langchain.autolog()` works with langchain-core alone, the
`langchain` package is not needed). `--json FILE` also writes the figures, `--quick` runs fewer calls.

The chain is `pinned_prompt("summarize") | ParrotFakeChatModel() | StrOutputParser()`, the prompt registered in a
sqlite MLflow registry in a temporary directory (served from promptops' memory cache, as in production). Per
invocation, contenders measured in one process, batches interleaved with the order rotating every repeat (the
helpers of `benchmarks/run.py`):

* no callbacks;
* LangChain's own callback overhead: a `BaseCallbackHandler` subclass that does nothing;
* `PromptOpsCallbackHandler(capture=False)`, spans to an in-memory exporter (a `BatchSpanProcessor` around
  `InMemorySpanExporter`, cleared after each batch, untimed);
* the same with capture on (SQLite store in the temporary directory; the writer queue drained after each batch,
  untimed);
* `PromptOpsCallbackHandler()` with promptops' real `"mlflow"` exporter into the sqlite store, capture on
  (flushed after each batch, untimed);
* MLflow's `MlflowLangchainTracer` passed as a callback: what `mlflow.langchain.autolog()` adds to every
  callback manager, into the same sqlite store (MLflow's async trace logging drained after each batch, untimed).

Then, in a phase of its own (autolog patches LangChain globally, so it cannot be interleaved),
`mlflow.langchain.autolog()` itself with no callbacks passed; its "added" is against the interleaved phase's
no-callback median. The background work (span export, capture writes) is not in the per-invocation figures: it
runs in the exporters' and the writer's threads, and the drains are untimed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _name in [name for name in os.environ if name.startswith(("PROMPTOPS_", "OTEL_"))]:
    os.environ.pop(_name, None)
os.environ.update(
    MLFLOW_DISABLE_TELEMETRY="true",
    DO_NOT_TRACK="1",
    HF_HUB_OFFLINE="1",
    MLFLOW_LOGGING_LEVEL="WARNING",
    MLFLOW_ENABLE_ASYNC_TRACE_LOGGING="true",  # MLflow's default, made explicit
)

_spec = importlib.util.spec_from_file_location("promptops_bench_run", HERE / "run.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)
Contender, GcClock, Row = bench.Contender, bench.GcClock, bench.Row
fmt_ns, run_interleaved, print_rows, quantile = bench.fmt_ns, bench.run_interleaved, bench.print_rows, bench.quantile

import mlflow  # noqa: E402
import mlflow.langchain  # noqa: E402
from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

import promptops  # noqa: E402
from promptops import tracing  # noqa: E402
from promptops_langchain import PromptOpsCallbackHandler, pinned_prompt  # noqa: E402

INPUT = {"text": "The parcel left the warehouse on Monday and should arrive by Friday at the latest."}


class NoOp(BaseCallbackHandler):
    """LangChain's callback machinery with a handler that does nothing."""


def batch_of(
    chain: Any,
    config: dict[str, Any] | None,
    route: Callable[[], AbstractContextManager[object]] = nullcontext,
    drain: Callable[[], object] | None = None,
) -> Callable[[int], int]:
    def batch(n: int) -> int:
        with route():  # entering the span route is untimed
            start = time.perf_counter_ns()
            for _ in range(n):
                chain.invoke(INPUT, config=config)
            elapsed = time.perf_counter_ns() - start
        if drain is not None:
            drain()  # untimed: the background work of this batch, so it does not slow the next contender
        return elapsed

    return batch


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    json_path = args.json.resolve() if args.json is not None else None  # relative to where it was started
    work = Path(tempfile.mkdtemp(prefix="promptops-bench-langchain-"))
    start = Path.cwd()
    os.chdir(work)
    try:
        return measure(work, json_path, *((40, 3) if args.quick else (200, 9)))
    finally:
        os.chdir(start)
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, json_path: Path | None, calls: int, repeats: int) -> int:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment("bench-langchain")  # pyright: ignore[reportUnknownMemberType]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name="summarize", template="Summarize the ticket. Ticket: {{ text }}")
    client.set_prompt_alias("summarize", alias="production", version=1)
    promptops.configure(
        tracking_uri=uri,
        cache_dir=work / ".promptops",
        capture=f"sqlite:///{work / 'captures.db'}",
        trace_exporter="mlflow",
        experiment_name="bench-langchain",
    )

    chain = pinned_prompt("summarize") | ParrotFakeChatModel() | StrOutputParser()
    assert chain.invoke(INPUT).startswith("Summarize the ticket.")  # warm: the prompt is in memory from here on

    memory = InMemorySpanExporter()
    memory_provider = TracerProvider()
    memory_processor = BatchSpanProcessor(memory, max_queue_size=100_000, max_export_batch_size=2048)
    memory_provider.add_span_processor(memory_processor)

    def in_memory() -> AbstractContextManager[object]:
        return tracing.use_provider(memory_provider)

    def drain_memory() -> None:
        memory_provider.force_flush()
        memory.clear()
        promptops.flush(60)

    from mlflow.langchain.langchain_tracer import MlflowLangchainTracer

    before = promptops.stats()
    contenders = [
        Contender("no callbacks", batch_of(chain, None), calls),
        Contender("no-op BaseCallbackHandler", batch_of(chain, {"callbacks": [NoOp()]}), calls),
        Contender(
            "promptops, in-memory spans",
            batch_of(chain, {"callbacks": [PromptOpsCallbackHandler(capture=False)]}, in_memory, drain_memory),
            calls,
        ),
        Contender(
            "promptops, in-memory spans + capture",
            batch_of(chain, {"callbacks": [PromptOpsCallbackHandler()]}, in_memory, drain_memory),
            calls,
        ),
        Contender(
            "promptops, MLflow sqlite spans + capture",
            batch_of(chain, {"callbacks": [PromptOpsCallbackHandler()]}, drain=lambda: promptops.flush(120)),
            calls,
        ),
        Contender(
            "MlflowLangchainTracer (autolog's callback)",
            batch_of(chain, {"callbacks": [MlflowLangchainTracer()]}, drain=mlflow.flush_trace_async_logging),
            calls,
        ),
    ]
    clock = GcClock()
    gc.callbacks.append(clock)
    try:
        rows = run_interleaved(contenders, repeats, clock)

        # autolog patches LangChain's callback managers for every invocation: measured on its own.
        mlflow.langchain.autolog(silent=True)  # pyright: ignore[reportPrivateImportUsage]
        autolog = Contender(
            "mlflow.langchain.autolog()", batch_of(chain, None, drain=mlflow.flush_trace_async_logging), calls
        )
        autolog.batch(max(1, calls // 10))
        for _ in range(repeats):
            with clock.attribute(autolog.name):
                autolog.samples.append(autolog.batch(calls) / calls)
        mlflow.langchain.autolog(disable=True)  # pyright: ignore[reportPrivateImportUsage]
    finally:
        gc.callbacks.remove(clock)
    bare = rows[0].median_ns
    median = statistics.median(autolog.samples)
    rows.append(
        Row(
            name=autolog.name,
            calls=calls,
            repeats=repeats,
            median_ns=median,
            p90_ns=quantile(autolog.samples, 0.9),
            iqr_ns=quantile(autolog.samples, 0.75) - quantile(autolog.samples, 0.25),
            ratio_vs_bare=median / bare,
            added_ns=median - bare,
            gc_ns_per_call=clock.spent.get(autolog.name, 0) / (calls * repeats),
            full_collections=clock.full.get(autolog.name, 0),
        )
    )

    # Everything measured really happened: promptops exported its spans and wrote its captures.
    promptops.flush(120)
    after = promptops.stats()
    invocations = (calls * repeats) + max(1, calls // 10)
    exported = after["spans_exported"] - before["spans_exported"]
    written = after["captures_written"] - before["captures_written"]
    assert exported >= 4 * invocations, (exported, invocations)  # the MLflow contender: 4 spans per invocation
    assert written >= 2 * invocations, (written, invocations)  # both capturing contenders
    traces = mlflow.search_traces(locations=[experiment.experiment_id], max_results=100_000, return_type="list")
    mlflow_traces = len(traces)

    print_rows(
        f"Per chain invocation (prompt | fake chat model | parser), {calls} invocations x {repeats} repeats, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        rows,
    )
    print(
        f"\npromptops: {exported} spans exported to MLflow, {written} captures written; "
        f"MLflow: {mlflow_traces} traces in the experiment (promptops' and MLflow's own)."
    )
    if json_path is not None:
        json_path.write_text(json.dumps({"rows": [asdict(row) for row in rows]}, indent=2))
    promptops.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
