"""Where the warm call's nanoseconds go: today's `@promptops.track` against variants of its body (issue 16).

Resolution only (tracing and capture off), a prompt with no rollout, one process. Each variant is today's warm
path with one step changed: `_Spec.hit()` inlined into the wrapper, `_observed()` inlined too, and no rollout
check at all (the 2026-11-27 body). The calling thread's CPU time per call, batches interleaved, median and
minimum.

    .venv/bin/python benchmarks/bench_warm_steps.py [--repeats 25] [--calls 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "1"


def variants() -> dict[str, Callable[..., Any]]:
    """The contenders, set up against a real MLflow sqlite registry in a temporary directory."""
    from time import monotonic

    from mlflow import MlflowClient

    import promptops
    from promptops import _config, _track, tracing  # pyright: ignore[reportPrivateUsage]
    from promptops import prompts as _prompts
    from promptops.prompts import NO_OVERRIDES, active_prompt, overrides

    work = Path(tempfile.mkdtemp(prefix="promptops-bench-steps-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.register_prompt(name="plain", template="v1 {{text}}")
    client.set_prompt_alias("plain", "production", 1)
    promptops.configure(tracking_uri=uri, cache_dir=work / "cache", trace_exporter="none", capture=False)

    @promptops.track(prompt="plain")
    def tracked(text: str, *, prompt: promptops.Prompt) -> str:
        return text

    cells = tracked.__closure__ or ()
    spec = next(cell.cell_contents for cell in cells if isinstance(cell.cell_contents, _track._Spec))  # pyright: ignore[reportPrivateUsage]
    func = tracked.__wrapped__  # type: ignore[attr-defined]
    set_active, reset_active, get_overrides = active_prompt.set, active_prompt.reset, overrides.get
    get_tracer, observed, cold, capture = tracing.tracer, _track._observed, spec.cold, spec.capture  # pyright: ignore[reportPrivateUsage]

    current_settings = _config  # module: its `current` is read per call, as the wrapper does

    def hit_inlined(*args: Any, **kwargs: Any) -> Any:
        settings, key = spec.cached_key
        prompt = None
        if settings is current_settings.current and get_overrides() is NO_OVERRIDES and _prompts.current is not None:
            entry = _prompts.current.entries.get(key)
            if entry is not None:
                now = monotonic()
                if now < entry.refresh_at:
                    if spec.rollout_settings is settings and now >= spec.rollout_keys.quiet.refresh_at:
                        raise AssertionError("a rollout check was due: not what this benchmark measures")
                    prompt = entry.served
        kwargs["prompt"] = prompt = prompt or cold(args, kwargs, False)
        if observed(spec, get_tracer()):
            raise AssertionError("observed")
        token = set_active(prompt)
        try:
            return func(*args, **kwargs)
        finally:
            reset_active(token)

    def both_inlined(*args: Any, **kwargs: Any) -> Any:
        settings, key = spec.cached_key
        prompt = None
        if settings is current_settings.current and get_overrides() is NO_OVERRIDES and _prompts.current is not None:
            entry = _prompts.current.entries.get(key)
            if entry is not None:
                now = monotonic()
                if now < entry.refresh_at:
                    if spec.rollout_settings is settings and now >= spec.rollout_keys.quiet.refresh_at:
                        raise AssertionError("a rollout check was due: not what this benchmark measures")
                    prompt = entry.served
        kwargs["prompt"] = prompt = prompt or cold(args, kwargs, False)
        current = current_settings.current
        if get_tracer() is not None or (capture.enabled and (current is None or current.capture)):
            raise AssertionError("observed")
        token = set_active(prompt)
        try:
            return func(*args, **kwargs)
        finally:
            reset_active(token)

    def no_rollout_check(*args: Any, **kwargs: Any) -> Any:
        settings, key = spec.cached_key
        prompt = None
        if settings is current_settings.current and get_overrides() is NO_OVERRIDES and _prompts.current is not None:
            entry = _prompts.current.entries.get(key)
            if entry is not None and monotonic() < entry.refresh_at:
                prompt = entry.served
        kwargs["prompt"] = prompt = prompt or cold(args, kwargs, False)
        current = current_settings.current
        if get_tracer() is not None or (capture.enabled and (current is None or current.capture)):
            raise AssertionError("observed")
        token = set_active(prompt)
        try:
            return func(*args, **kwargs)
        finally:
            reset_active(token)

    def bare(text: str) -> str:
        return text

    return {
        "bare call": bare,
        "today's wrapper": tracked,
        "hit() inlined": hit_inlined,
        "and _observed() inlined": both_inlined,
        "and no rollout check (11-27 body)": no_rollout_check,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    contenders = variants()
    tracked = contenders["today's wrapper"]
    for _ in range(3000):
        tracked("x")
    time.sleep(1.5)  # the first rollout-state read has answered "no rollout"
    tracked("x")  # and the decorator has seen it (the variants only read what it holds)
    for func in contenders.values():
        for _ in range(3000):
            func("x")
    results: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    for repeat in range(args.repeats):
        for name in order[repeat % len(order) :] + order[: repeat % len(order)]:
            func = contenders[name]
            start = time.thread_time_ns()
            for _ in range(args.calls):
                func("x")
            results[name].append((time.thread_time_ns() - start) / args.calls)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; thread CPU ns per call")
    for name, values in results.items():
        print(f"{name:40s} {statistics.median(values):7.0f} {min(values):7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
