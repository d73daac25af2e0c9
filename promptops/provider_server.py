"""A local OpenAI- and Anthropic-compatible HTTP server: real provider SDKs, no network, injected failures.

Replay against a real provider meets rate limits, overloads and slow answers (issue 13). This server lets
tests, examples and benchmarks meet them on 127.0.0.1, through the real `openai` and `anthropic` SDKs and
LangChain's `ChatOpenAI`: `POST /v1/chat/completions` answers like OpenAI (with `usage`; with `"stream": true` as server-sent
events, the usage in a last chunk when `stream_options.include_usage` asks for it), `POST /v1/messages` like
Anthropic. Answers come from `promptops.testing.OfflineModel`, which reads the prompt, so a prompt change
changes the output the way it would with a real model.

```python
import openai

from promptops.provider_server import ProviderServer

with ProviderServer(rate_limited=0.3) as server:
    client = openai.OpenAI(base_url=server.openai_url, api_key="test", max_retries=0)
    try:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi."}])
    except openai.RateLimitError as exc:  # about 30% of requests, with a Retry-After header
        assert exc.response.headers["retry-after"]
print(server.requests, server.by_status)
```

Failures are drawn from a seeded generator in arrival order: with `rate_limited=0.3`, about 30% of requests
are answered 429 with `Retry-After` and `retry-after-ms`. `requests_per_second` answers 429 beyond a rate, the
way a provider's limit does. Nothing here is imported by `import promptops`.
"""

from __future__ import annotations

import collections
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ProviderServer"]

Reply = Callable[[Sequence[Mapping[str, Any]], str], str]
"""`reply(messages, model) -> text`: the answer to chat messages (`{"role", "content"}` with text content)."""


class ProviderServer:
    """An OpenAI/Anthropic-compatible server on 127.0.0.1 that counts requests and injects failures.

    Use it as a context manager (or `start()`/`stop()`); it serves from daemon threads and stops by itself
    at the end of the `with` block.

    Args:
        reply: Makes the answer from the chat messages and the model name; default an `OfflineModel(seed=0)`.
        rate_limited: Fraction of requests answered 429 (rate limit) with `Retry-After`.
        server_error: Fraction answered 500.
        overloaded: Fraction answered 529 (Anthropic's "overloaded"; OpenAI clients see a 5xx).
        slow: Fraction of answers delayed by `slow_s` seconds.
        slow_s: The delay of a slow answer.
        latency_s: Time every answer takes.
        retry_after_s: The `Retry-After` the 429s carry (also sent as `retry-after-ms`).
        requests_per_second: Answer 429 to requests beyond this rate (a token bucket holding one second of
            requests), as a provider's rate limit does; `None`: no limit.
        seed: Seed of the failure draws.

    Attributes:
        requests: Requests received on the two endpoints.
        by_status: Requests by HTTP status answered.
        input_tokens: Input tokens reported in the `usage` of successful answers (whitespace-separated words).
        output_tokens: Output tokens reported in the `usage` of successful answers.
    """

    def __init__(
        self,
        *,
        reply: Reply | None = None,
        rate_limited: float = 0.0,
        server_error: float = 0.0,
        overloaded: float = 0.0,
        slow: float = 0.0,
        slow_s: float = 1.0,
        latency_s: float = 0.0,
        retry_after_s: float = 0.05,
        requests_per_second: float | None = None,
        seed: int = 0,
    ) -> None:
        """Create a server (not started); see the class documentation for the arguments."""
        for name, rate in (
            ("rate_limited", rate_limited),
            ("server_error", server_error),
            ("overloaded", overloaded),
            ("slow", slow),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"ProviderServer({name}={rate!r}): a fraction between 0 and 1 is needed")
        if rate_limited + server_error + overloaded > 1.0:
            raise ValueError("ProviderServer: rate_limited + server_error + overloaded cannot exceed 1")
        if reply is None:
            from .testing import OfflineModel

            model = OfflineModel(seed=0)

            def offline(messages: Sequence[Mapping[str, Any]], model_name: str) -> str:
                return model(messages)

            reply = offline
        self.reply: Reply = reply
        self.rate_limited = rate_limited
        self.server_error = server_error
        self.overloaded = overloaded
        self.slow = slow
        self.slow_s = slow_s
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.requests_per_second = requests_per_second
        self.requests = 0
        self.by_status: collections.Counter[int] = collections.Counter()
        self.input_tokens = 0
        self.output_tokens = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._generation = 0  # of the counts: `reset()` starts a new one
        # a bucket holding one second of requests (at least one), full at start
        self._capacity = max(1.0, requests_per_second or 0.0)
        self._bucket = self._capacity
        self._bucket_at = time.monotonic()
        self._server: ThreadingHTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> ProviderServer:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        server = _Server(("127.0.0.1", 0), _handler(self))
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="promptops-provider-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ProviderServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on (after `stop()`, the one it listened on: a refused connection there)."""
        if self._port is None:
            raise RuntimeError("ProviderServer is not started: use it in a `with` block or call start()")
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: the base URL for the Anthropic SDK (`anthropic.Anthropic(base_url=...)`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`: the base URL for the OpenAI SDK and `ChatOpenAI(base_url=...)`."""
        return f"{self.url}/v1"

    def reset(self) -> None:
        """Forget the counts; a request still being answered is not counted when it ends."""
        with self._lock:
            self._generation += 1
            self.requests = 0
            self.by_status.clear()
            self.input_tokens = self.output_tokens = 0

    # -- answering -----------------------------------------------------------------------------------------------

    def _draw(self) -> tuple[int | None, float, int]:
        """The failure to inject (or `None`), the delay before answering, and the counts' generation (see `reset`)."""
        with self._lock:
            generation = self._generation
            self.requests += 1
            if self.requests_per_second is not None:
                now = time.monotonic()
                rate = self.requests_per_second
                self._bucket = min(self._capacity, self._bucket + (now - self._bucket_at) * rate)
                self._bucket_at = now
                if self._bucket < 1.0:
                    return 429, 0.0, generation
                self._bucket -= 1.0
            draw = self._random.random()
            delay = self.latency_s + (self.slow_s if self._random.random() < self.slow else 0.0)
        if draw < self.rate_limited:
            return 429, 0.0, generation
        if draw < self.rate_limited + self.server_error:
            return 500, delay, generation
        if draw < self.rate_limited + self.server_error + self.overloaded:
            return 529, delay, generation
        return None, delay, generation

    def _count(self, generation: int, status: int, usage: tuple[int, int] = (0, 0)) -> None:
        with self._lock:
            if generation != self._generation:  # drawn before a reset(): a killed client's call answered late
                return
            self.by_status[status] += 1
            self.input_tokens += usage[0]
            self.output_tokens += usage[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # read when the socket listens: a replay opens many connections at once (default 5)


def _tokens(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    """Message content as text: a string, or the text of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        blocks: list[Any] = content  # pyright: ignore[reportUnknownVariableType]
        return "\n".join(str(block.get("text", "")) for block in blocks if isinstance(block, dict))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    return "" if content is None else str(content)


def _error_body(anthropic: bool, status: int) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}.get(status, "invalid_request_error")
    message = {429: "Rate limit reached", 529: "Overloaded"}.get(status, "Internal server error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _handler(server: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read the counts, not a log."""

        def do_POST(self) -> None:
            """Answer a chat completion or a message, or an injected failure."""
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/messages"):
                self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                return
            anthropic = path == "/v1/messages"
            try:
                body: dict[str, Any] = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, _error_body(anthropic, 400))
                return
            failure, delay, generation = server._draw()  # pyright: ignore[reportPrivateUsage]
            if delay > 0:
                time.sleep(delay)
            if failure is not None:
                headers = {}
                if failure == 429:
                    headers = {
                        "retry-after": str(max(0, math.ceil(server.retry_after_s))),
                        "retry-after-ms": str(round(server.retry_after_s * 1000)),
                    }
                server._count(generation, failure)  # pyright: ignore[reportPrivateUsage]
                self._send(failure, _error_body(anthropic, failure), headers)
                return
            model = str(body.get("model", "model"))
            messages = _messages(body, anthropic)
            text = server.reply(messages, model)
            usage = (sum(_tokens(message["content"]) for message in messages), _tokens(text))
            server._count(generation, 200, usage)  # pyright: ignore[reportPrivateUsage]
            if body.get("stream") and not anthropic:
                options: Any = body.get("stream_options") or {}
                include_usage = isinstance(options, dict) and options.get("include_usage") is True  # pyright: ignore[reportUnknownMemberType]
                self._send_events(_openai_chunks(model, text, usage, include_usage=include_usage))
                return
            self._send(200, _anthropic_answer(model, text, usage) if anthropic else _openai_answer(model, text, usage))

        def _send_events(self, events: Sequence[Mapping[str, Any]]) -> None:
            """A stream of server-sent events, as OpenAI sends one: a `data:` line per chunk, then `[DONE]`."""
            data = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)
            data += b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _messages(body: Mapping[str, Any], anthropic: bool) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    if anthropic and body.get("system"):
        messages.append({"role": "system", "content": _text(body["system"])})
    listed: list[Any] = body.get("messages") or []
    for message in listed:
        if isinstance(message, dict):
            item: dict[str, Any] = message  # pyright: ignore[reportUnknownVariableType]
            messages.append({"role": str(item.get("role", "user")), "content": _text(item.get("content"))})
    return messages


def _openai_answer(model: str, text: str, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def _openai_chunks(model: str, text: str, usage: tuple[int, int], *, include_usage: bool) -> list[dict[str, Any]]:
    """An answer as OpenAI streams it: a role chunk, a chunk per word, a finish chunk, then the usage if asked."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk", "created": int(time.time())}
    head["model"] = model

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**head, "choices": [choice], **({"usage": None} if include_usage else {})}

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in re.findall(r"\s*\S+", text)]
    chunks.append(chunk({}, "stop"))
    if include_usage:
        total = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
        chunks.append({**head, "choices": [], "usage": total})
    return chunks


def _anthropic_answer(model: str, text: str, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m promptops.provider_server [--latency S] ...`: serve until stdin closes; prints the URL first.

    Runs the server in a process of its own (a benchmark should not share its client's interpreter lock).
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m promptops.provider_server", description=main.__doc__)
    for option in ("rate-limited", "server-error", "overloaded", "slow"):
        parser.add_argument(f"--{option}", type=float, default=0.0, metavar="FRACTION")
    parser.add_argument("--slow-s", type=float, default=1.0)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--retry-after-s", type=float, default=0.05)
    parser.add_argument("--requests-per-second", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    options = vars(parser.parse_args(argv))
    with ProviderServer(**options) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or exits)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
