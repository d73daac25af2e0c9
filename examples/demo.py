"""The promptops demo, end to end and offline: `make demo`.

1. Start a real MLflow tracking server on 127.0.0.1 (sqlite store in a temporary directory).
2. Register two versions of a "summarize" prompt and point the `production` alias at version 1.
3. Call a function decorated with `@promptops.track(prompt="summarize")`: it runs on version 1.
4. Move the alias to version 2: within the cache TTL the same function runs on version 2, no redeploy.
   Every call is an OpenTelemetry span, exported to the same MLflow server with the prompt version linked,
   and a capture record (inputs, output, prompt version) that replay will run candidates against.
5. Stop the registry: calls keep working from memory; a freshly started process uses the last-known-good
   copy on disk; a prompt that was never resolved falls back to the decorator's `fallback=`.
"""

from __future__ import annotations

import os
import re
import shutil
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
os.environ.setdefault("DO_NOT_TRACK", "1")

import promptops

ARTICLE = (
    "The city council approved a new cycling plan on Tuesday. The plan adds forty kilometres of protected "
    "bike lanes over three years, funded by a parking levy. Shop owners on Main Street worry about losing "
    "parking spaces, while commuter groups say the lanes will cut accidents. Construction starts in spring."
)


def offline_llm(prompt_text: str) -> str:
    """A deterministic stand-in for an LLM that really reads its instructions: 'at most N words'."""
    text = prompt_text.split("Text:", 1)[-1].strip()
    words = text.split()
    limit = re.search(r"at most (\d+) words", prompt_text)
    if limit:
        words = words[: int(limit.group(1))]
    summary = " ".join(words).rstrip(",.;") + "."
    return summary.upper() if "UPPERCASE" in prompt_text else summary


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


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="promptops-demo-"))
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

        promptops.flush()  # spans are exported in the background, in batches; make sure they arrived
        traces = client.search_traces(locations=["0"], max_results=500)
        linked = [trace.info.tags.get("mlflow.linkedPrompts", "") for trace in traces]
        show(
            "traces in MLflow (one span per call)",
            f"{len(traces)}, {sum('summarize' in t for t in linked)} linked to a 'summarize' version",
        )
        from promptops.capture import CaptureStore

        recorded = list(CaptureStore.open(captures).query(function=f"{__name__}:summarize"))
        versions = sorted({record.prompt_version for record in recorded})
        show("captured calls of summarize()", f"{len(recorded)}, served by versions {versions}")

        print("\n5. stopping the registry")
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
    finally:
        stop_server(server)
        promptops.shutdown(timeout=2)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
