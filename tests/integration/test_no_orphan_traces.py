"""The registry client's HTTP reads leave no orphan traces in an application with httpx auto-instrumentation.

Issue 12: each `GET /api/2.0/mlflow/...` promptops made to resolve a prompt showed up as a separate trace.
"""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import promptops

from .conftest import MlflowServer


def test_registry_reads_are_not_traced_by_httpx_instrumentation(server: MlflowServer, prompt_name: str) -> None:
    server.register(prompt_name, "Summarize {{ text }}", alias="production")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        promptops.configure(tracking_uri=server.url, trace_exporter="none", capture=None, cache_ttl=0.0)

        @promptops.track(prompt=prompt_name)
        def summarize(text: str, *, prompt: promptops.Prompt) -> str:
            return prompt.format(text=text)

        for _ in range(3):  # a first read, then background refreshes (cache_ttl=0)
            assert summarize("x") == "Summarize x"
        assert promptops.flush(30)
        assert [span.name for span in exporter.get_finished_spans()] == []
        # Positive control: the application's own httpx requests are traced by the same instrumentation.
        with httpx.Client() as client:
            client.get(f"{server.url}/health")
        assert [
            span.attributes and span.attributes.get("http.request.method", span.attributes.get("http.method"))
            for span in exporter.get_finished_spans()
        ] == ["GET"]
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
