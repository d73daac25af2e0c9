"""The promptops demo, end to end and offline: `make demo`.

1. Start a real MLflow tracking server on 127.0.0.1 (sqlite store in a temporary directory).
2. Register two versions of a "summarize" prompt and point the `production` alias at version 1.
3. Call a function decorated with `@promptops.track(prompt="summarize")`: it runs on version 1.
4. Move the alias to version 2: within the cache TTL the same function runs on version 2, no redeploy.
   Every call is an OpenTelemetry span, exported to the same MLflow server with the prompt version linked,
   and a capture record (inputs, output, prompt version) that replay will run candidates against.
5. Production traffic: 234 support tickets through the support app (`examples/support/app.py`, an offline
   model with a little seeded nondeterminism, like an LLM at temperature > 0), every call captured.
6. `promptops replay` re-runs the captured tickets on two candidate versions of its prompt: a reworded one
   (passes: its drift is within the model's own run-to-run noise) and one that drops the details (fails, with
   the evidence). Each writes a self-contained HTML report and an MLflow run.
7. Stop the registry: calls keep working from memory; a freshly started process uses the last-known-good
   copy on disk; a prompt that was never resolved falls back to the decorator's `fallback=`.

The working directory (MLflow store, captures, reports) is kept; set `PROMPTOPS_DEMO_DIR` to choose it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")  # MLflow's price catalog: the bundled copy, no download
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PROMPTOPS_DEMO_SEED", "0")  # production's model seed (replay runs with another one)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples.support, the demo's support app

import promptops
from promptops.testing import OfflineModel

ROOT = Path(__file__).resolve().parents[1]

ARTICLE = (
    "The city council approved a new cycling plan on Tuesday. The plan adds forty kilometres of protected "
    "bike lanes over three years, funded by a parking levy. Shop owners on Main Street worry about losing "
    "parking spaces, while commuter groups say the lanes will cut accidents. Construction starts in spring."
)


# An offline stand-in for an LLM that reads its prompt (word limits, case, format, tone); see promptops.testing.
offline_llm = OfflineModel()


@promptops.track(prompt="summarize")
def summarize(text: str, *, prompt: promptops.Prompt) -> str:
    """The application's function: the prompt version comes from the registry, pinned by alias."""
    return offline_llm(str(prompt.format(text=text)))


@promptops.track(prompt="headline", fallback="Write a headline in at most 6 words. Text: {{ text }}")
def headline(text: str, *, prompt: promptops.Prompt) -> str:
    """A function whose prompt was never registered: it runs on its fallback."""
    return offline_llm(str(prompt.format(text=text)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root",
        str(workdir / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(workdir / "server.log", "wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow server exited early; see {workdir / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    raise SystemExit(f"mlflow server did not start within 90 s; see {workdir / 'server.log'}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def show(step: str, result: str) -> None:
    current = promptops.current_prompt()  # None here: we are outside the tracked call
    assert current is None
    print(f"  {step:<44} -> {result}")


def describe_call() -> str:
    """Call summarize() and report which prompt version served it and from where."""
    seen: dict[str, object] = {}

    @promptops.track(prompt="summarize")
    def probe(*, prompt: promptops.Prompt) -> None:
        seen.update(version=prompt.version, source=prompt.source)

    probe()
    return f"version {seen['version']} (source: {seen['source']}): {summarize(ARTICLE)!r}"


RESTARTED_PROCESS = textwrap.dedent(
    """
    import promptops
    promptops.configure(tracking_uri={uri!r}, cache_dir={cache_dir!r}, registry_timeout=1.0)

    @promptops.track(prompt="summarize")
    def summarize(text, *, prompt):
        return f"version {{prompt.version}} (source: {{prompt.source}})"

    print(summarize("..."))
    """
)


def replay_cli(url: str, captures: str, workdir: Path, candidate: int, label: str) -> tuple[int, str]:
    """Run `promptops replay` as a user would, in a process of its own; returns its exit code and output."""
    report = workdir / f"replay-{label}.html"
    command = [
        str(Path(sys.executable).with_name("promptops")), "--tracking-uri", url, "replay",
        "examples.support.app:summarize_ticket", "--candidate", str(candidate), "--scorer", "rougeL",
        "--scorer", "bleu", "--scorer", "semantic", "--report", str(report), "--json", str(workdir / f"{label}.json"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PROMPTOPS_CAPTURE": captures,
        "PROMPTOPS_CACHE_DIR": str(workdir / "cache"),
        "PROMPTOPS_DEMO_SEED": "1",  # another process, another draw of the model's nondeterminism
        "COLUMNS": "110",
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir, env=env)
    output = done.stdout + done.stderr
    print(textwrap.indent(output.rstrip(), "   | "))
    return done.returncode, str(report)


def production_traffic(client: object, captures: str) -> int:
    """Register the support app's prompt versions and send it production traffic; returns how many were captured."""
    from examples.support import app
    from promptops.capture import CaptureStore

    for label in ("v1", "good", "bad_drop"):
        client.register_prompt(app.PROMPT_NAME, app.TEMPLATES[label], commit_message=label)  # type: ignore[attr-defined]
    client.set_prompt_alias(app.PROMPT_NAME, "production", 1)  # type: ignore[attr-defined]
    for ticket in app.load_tickets():
        app.summarize_ticket(ticket["text"], ticket["customer"])
    promptops.flush()
    return CaptureStore.open(captures).count(function="examples.support.app:summarize_ticket")


def main() -> None:
    chosen = os.environ.get("PROMPTOPS_DEMO_DIR")
    workdir = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="promptops-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"promptops demo (working directory {workdir})\n")
    print("1. starting a local MLflow tracking server ...")
    server, url = start_server(workdir)
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=url, registry_uri=url)
        print(f"   MLflow at {url}\n")
        print("2. registering two versions of the 'summarize' prompt")
        v1 = client.register_prompt(
            "summarize", "Summarize in at most 25 words. Text: {{ text }}", commit_message="first cut"
        )
        v2 = client.register_prompt(
            "summarize", "Summarize in at most 8 words, UPPERCASE. Text: {{ text }}", commit_message="terse"
        )
        client.set_prompt_alias("summarize", "production", v1.version)
        print(f"   version {v1.version}: {v1.template!r}")
        print(f"   version {v2.version}: {v2.template!r}")
        print("   alias production -> version 1\n")

        cache_dir = str(workdir / "cache")
        captures = f"sqlite:///{workdir / 'captures.db'}"
        promptops.configure(
            tracking_uri=url, cache_ttl=1.0, registry_timeout=1.0, cache_dir=cache_dir, capture=captures
        )
        print("3. calling the tracked function")
        show("first call", describe_call())
        show("second call", describe_call())

        print("\n4. moving the alias production -> version 2 (another process could do this)")
        client.set_prompt_alias("summarize", "production", v2.version)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "version 2" not in describe_call():
            time.sleep(0.2)
        show("after the TTL (1 s), no restart", describe_call())
        with promptops.use_prompt("summarize", version=1):
            show("inside use_prompt('summarize', version=1)", describe_call())

        promptops.flush(timeout=30)  # spans (and their prompt links) are exported in the background, in batches
        traces = client.search_traces(locations=["0"], max_results=500)
        linked = [trace.info.tags.get("mlflow.linkedPrompts", "") for trace in traces]
        show(
            "traces in MLflow (one span per call)",
            f"{len(traces)}, {sum('summarize' in t for t in linked)} linked to a 'summarize' version",
        )
        # MLflow's own prompt filter (what the prompt version's Traces tab shows) finds them: issue 12.
        on_v2 = client.search_traces(locations=["0"], filter_string=f'prompt = "summarize/{v2.version}"')
        show(f'MLflow filter prompt = "summarize/{v2.version}"', f"{len(on_v2)} traces")
        stats = promptops.stats()
        show("prompt links made / failed", f"{stats['prompt_links']} / {stats['prompt_links_failed']}")
        from promptops.capture import CaptureStore

        recorded = list(CaptureStore.open(captures).query(function=f"{__name__}:summarize"))
        versions = sorted({record.prompt_version for record in recorded})
        show("captured calls of summarize()", f"{len(recorded)}, served by versions {versions}")

        print("\n5. production traffic: the support app summarises 234 customer tickets")
        show("captured support tickets", str(production_traffic(client, captures)))

        print("\n6. replaying the captured tickets on candidate versions of 'support-summary'")
        print("   version 2, the production prompt reworded:")
        good_code, good_report = replay_cli(url, captures, workdir, 2, "reworded")
        print("   version 3, 'one very short sentence; leave out the details':")
        bad_code, bad_report = replay_cli(url, captures, workdir, 3, "drop-details")
        show("replay of version 2 (reworded)", f"exit {good_code}, {'PASSED' if good_code == 0 else 'FAILED'}")
        show("replay of version 3 (drops details)", f"exit {bad_code}, {'PASSED' if bad_code == 0 else 'FAILED'}")

        print("\n7. stopping the registry")
        stop_server(server)
        show("this process, registry down", describe_call())
        restarted = subprocess.run(
            [sys.executable, "-c", RESTARTED_PROCESS.format(uri=url, cache_dir=cache_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        show("a restarted process, registry down", restarted.stdout.strip())
        show("an unregistered prompt with fallback=", repr(headline(ARTICLE)))
        try:
            promptops.preload(["summarize@staging"])
        except promptops.PromptUnavailableError as exc:
            show("preload() of something never cached", f"PromptUnavailableError: {str(exc)[:60]}...")
        promptops.flush(timeout=2)
        lost = promptops.stats()["spans_failed"] + promptops.stats()["spans_dropped"]
        show("spans not exportable while MLflow is down", f"{lost} (counted and logged; no call failed)")
        print("\nDone. Every call above returned; none waited on the dead registry for more than 1 s.")
        print(f"\nReplay reports:\n  {good_report}\n  {bad_report}")
        print(
            f"Browse the traces, prompt versions and replay runs:\n  mlflow ui --backend-store-uri sqlite:///{workdir / 'mlflow.db'}"
        )
        # Issue 12: every trace is linked to its prompt version through MLflow's own link; say where to look.
        print(
            "  then open http://127.0.0.1:5000 -> Experiments -> Default -> Traces: every call with its input and output;\n"
            "  the calls made with version 2: mlflow.search_traces(filter_string='prompt = \"summarize/2\"') (a prompt\n"
            "  version's own Traces tab opens from a named experiment's Prompts page: set experiment_name, see docs/tracing.md)\n"
            "  the replays: Experiments -> promptops-replay -> a replay run -> Traces: each call it made (docs/replay.md)"
        )
    finally:
        stop_server(server)
        promptops.shutdown(timeout=2)


if __name__ == "__main__":
    main()
