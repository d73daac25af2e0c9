"""Replay against a rate-limited provider and a slow one, through the real OpenAI SDK (issue 13).

Two scenarios on `promptops.provider_server.ProviderServer` (127.0.0.1), each compared with its ideal:

* **rate-limited**: the server answers at most `--limit-rps` requests a second and 429 (with Retry-After)
  beyond. Ideal wall time: calls / limit. Target: within 15%, zero infrastructure errors.
* **slow**: every answer takes `--latency` seconds, no limit, `--workers 64`. Ideal throughput:
  workers / latency calls a second. Target: at least 85% of it.

    python benchmarks/bench_replay_providers.py --records 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

APP = """
import os

import openai

import promptops

CLIENTS = {}  # one client (one connection pool) per server, as an application keeps one


@promptops.track(prompt="bench-summarize")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    url = os.environ["BENCH_PROVIDER_URL"]
    if url not in CLIENTS:
        CLIENTS[url] = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
    reply = CLIENTS[url].chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt.format(text=text)}]
    )
    return reply.choices[0].message.content
"""

TEXTS = [
    "The parcel left the warehouse on Monday and should arrive by Friday at the latest.",
    "My invoice shows a double charge for the March subscription, please refund one of them.",
    "The app crashes whenever I open the settings page on my tablet after the last update.",
    "Password reset emails never reach my inbox, I checked the spam folder twice already.",
]


def raw_calls_per_s(url: str, calls: int, workers: int) -> float:
    """The named baseline: the same number of calls from `workers` plain threads, without promptops."""
    import concurrent.futures

    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)

    def one(index: int) -> None:
        text = f"Summarize the ticket in at most 12 words. Ticket: {TEXTS[index % len(TEXTS)]} (ticket {index})"
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(calls)))
    return calls / (time.perf_counter() - started)


def scenario(
    name: str, workdir: Path, records: int, repeats: int, workers: int, server_options: dict[str, float]
) -> dict[str, float]:
    import mlflow

    import promptops
    from promptops import replay

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    template = "Summarize the ticket in at most 12 words. Ticket: {{ text }}"
    version = client.register_prompt(name="bench-summarize", template=template).version
    promptops.configure(tracking_uri=uri, cache_dir=str(workdir / ".promptops"), capture=None, trace_exporter="none")
    data = workdir / f"{name}.jsonl"
    data.write_text(
        "".join(
            json.dumps({"inputs": {"text": f"{TEXTS[i % len(TEXTS)]} (ticket {i})"}}) + "\n" for i in range(records)
        )
    )
    # The server runs in a process of its own: in ours it would compete with the replay for the interpreter lock.
    arguments = [f"--{key.replace('_', '-')}={value}" for key, value in server_options.items()]
    server = subprocess.Popen(
        [sys.executable, "-m", "promptops.provider_server", *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        os.environ["BENCH_PROVIDER_URL"] = server.stdout.readline().strip()
        started = time.perf_counter()
        calls_started: list[float] = []
        last_call: list[float] = [0.0]

        def progress(calls: int, records: int) -> Callable[[int], None]:
            calls_started.append(time.perf_counter())

            def tick(count: int) -> None:
                last_call[0] = time.perf_counter()

            return tick

        result = replay.run(
            "bench_provider_app:summarize",
            candidate=version,
            baseline=str(version),
            dataset=str(data),
            repeats=repeats,
            workers=workers,
            scorers=["exact_match"],
            log_to_mlflow=False,
            progress=progress,
        )
        wall = time.perf_counter() - started
        calling = last_call[0] - calls_started[0]  # the calls alone: no dataset loading, scoring or setup
        raw_rate = raw_calls_per_s(os.environ["BENCH_PROVIDER_URL"], result.calls, workers) if name == "slow" else 0.0
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the server stops when its stdin closes
        server.wait(timeout=30)
    calls = result.calls
    return {
        "records": records,
        "calls": calls,
        "wall_s": wall,
        "calls_per_s": calls / calling,
        "raw_calls_per_s": raw_rate,
        "infrastructure_errors": result.infrastructure_errors,
        "retries": result.retries,
        "rate_limited": result.rate_limited,
        "lowest_concurrency": result.lowest_concurrency or workers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=0, help="baseline re-runs per record")
    parser.add_argument("--limit-rps", type=float, default=50.0)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--only", choices=["limited", "slow"], default=None)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "bench_provider_app.py").write_text(textwrap.dedent(APP))
        sys.path.insert(0, str(workdir))
        os.chdir(workdir)
        calls_per_record = 2 + args.repeats  # candidate, reference run of the baseline version, re-runs
        if args.only in (None, "limited"):
            limited = scenario(
                "limited",
                workdir,
                args.records,
                args.repeats,
                args.workers,
                {"requests_per_second": args.limit_rps, "retry_after_s": 0.05},
            )
            ideal = args.records * calls_per_record / args.limit_rps
            print(
                f"rate-limited to {args.limit_rps:g}/s: {limited['calls']:,} calls in {limited['wall_s']:.1f} s, "
                f"ideal {ideal:.1f} s ({limited['wall_s'] / ideal:.2f}x ideal, target <= 1.15); "
                f"{limited['infrastructure_errors']} infrastructure errors, {limited['retries']:,} retries, "
                f"concurrency down to {limited['lowest_concurrency']}"
            )
        if args.only in (None, "slow"):
            slow = scenario("slow", workdir, args.records, args.repeats, args.workers, {"latency_s": args.latency})
            ideal_rate = args.workers / args.latency
            print(
                f"{args.latency * 1000:.0f} ms answers, --workers {args.workers}: {slow['calls_per_s']:.1f} calls/s, "
                f"ideal {ideal_rate:.1f} ({slow['calls_per_s'] / ideal_rate:.0%} of ideal, target >= 85%); "
                f"plain threads without promptops {slow['raw_calls_per_s']:.1f} calls/s "
                f"({slow['raw_calls_per_s'] / ideal_rate:.0%}); {slow['infrastructure_errors']} infrastructure errors"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
