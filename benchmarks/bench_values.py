"""Benchmark of the value pipeline tracing records on every call: `dumps_for_span` against plain `json.dumps`.

Run with `.venv/bin/python benchmarks/bench_values.py`. Each figure is the median, over repeats, of the
per-call time of a batch of calls (`time.perf_counter_ns()` around a plain `for` loop, divided by the batch
size); the garbage collector is disabled during batches (the values allocate nothing long-lived, so it
would only add noise). The contenders run interleaved, so machine noise hits them alike.

Cases: (a) `{"text": 200 characters of prose}` (the inputs of a one-argument function); (b) the inputs of
a three-argument function (a string, an int, a list of five short strings); (c) a 200-character output
string. `dumps_for_span` redacts with the default rules (`redactor_for` the default settings) and caps at
the default `max_value_chars`; `json.dumps` does neither (default arguments, and the compact,
`ensure_ascii=False` arguments tracing uses).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promptops._binding import ArgumentBinder
from promptops._config import Settings
from promptops._redact import redactor_for
from promptops._serialize import dumps_for_span

PROSE = (
    "The committee reviewed the proposal in detail and agreed that the new schedule gives every team enough "
    "time to prepare, provided the shared documents are updated before the end of the week, as discussed."
)[:200]
assert len(PROSE) == 200
OUTPUT = (
    "Summary: the committee accepted the new schedule. Teams get more time to prepare, on one condition: the "
    "shared documents must be updated by Friday. Nobody objected, and the next review is in two weeks time."
)[:200]
CASES: dict[str, Any] = {
    "a: {'text': 200-char prose}": {"text": PROSE},
    "b: 3 args (str, int, 5 short str)": {
        "query": PROSE[:60],
        "top_k": 5,
        "tags": ["news", "sports", "eu", "daily", "en"],
    },
    "c: 200-char output string": OUTPUT,
}


def per_call_ns(function: Callable[[], object], number: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(number):
        function()
    return (time.perf_counter_ns() - start) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--number", type=int, default=20_000)
    options = parser.parse_args()

    settings = Settings(
        tracking_uri="sqlite:///unused.db",
        default_alias="production",
        pins={},
        cache_ttl=60.0,
        registry_timeout=2.0,
        cache_dir=Path(".promptops"),
    )
    redactor = redactor_for(settings)
    limit = settings.max_value_chars
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; median per call, ns")
    print(f"{'case':38} {'dumps_for_span':>15} {'json.dumps':>11} {'json compact':>13}")
    results: dict[str, float] = {}
    for label, value in CASES.items():
        contenders: dict[str, Callable[[], object]] = {
            "dumps_for_span": lambda value=value: dumps_for_span(value, max_chars=limit, redactor=redactor),
            "json.dumps": lambda value=value: json.dumps(value),
            "json compact": lambda value=value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        gc.disable()
        try:
            for name, function in contenders.items():  # warm-up
                per_call_ns(function, options.number // 10)
            for _ in range(options.repeats):
                for name, function in contenders.items():
                    samples[name].append(per_call_ns(function, options.number))
        finally:
            gc.enable()
        medians = {name: statistics.median(values) for name, values in samples.items()}
        results[label] = medians["dumps_for_span"]
        print(
            f"{label:38} {medians['dumps_for_span']:>15.0f} {medians['json.dumps']:>11.0f} {medians['json compact']:>13.0f}"
        )

    # Binding the arguments is part of recording inputs, so show it too.
    import inspect

    def three(query: str, top_k: int, tags: list[str], *, prompt: object = None) -> str:
        return query

    binder = ArgumentBinder(inspect.signature(three))
    args = (PROSE[:60], 5, ["news", "sports", "eu", "daily", "en"])
    binding = statistics.median(per_call_ns(lambda: binder(args, {}), options.number) for _ in range(options.repeats))
    print(f"{'ArgumentBinder (3 positional args)':38} {binding:>15.0f}")
    target = 3000
    figure = results["a: {'text': 200-char prose}"]
    print(f"target for (a): under {target} ns; measured {figure:.0f} ns: {'met' if figure < target else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
