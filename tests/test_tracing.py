"""OpenTelemetry traces end to end: gateways started with the standard OTEL_* variables export over
OTLP/HTTP to a local receiver; clients are the openai SDK and httpx, the upstream is the fake LLM."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from gateway.rules import RuleSettings

from .extraction_helpers import KEY, client, flush
from .fake_upstream import FakeUpstream
from .harness import Gateway
from .otlp_receiver import OtlpReceiver, Span

SECRET_FACT = "I live in Zanzibarville"  # memory text that must not reach a span without the opt-in


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


def traced(upstream: FakeUpstream, data: Path, receiver: OtlpReceiver, service: str, **otel: str) -> Gateway:
    """A gateway (memory on, one tenant) whose environment holds only the OTEL_* variables given here."""
    gw = Gateway(upstream.url, data, tenant_mode="none")
    for name in [n for n in gw.env if n.startswith("OTEL_")]:
        del gw.env[name]
    gw.env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": service, "OTEL_BSP_SCHEDULE_DELAY": "50", **otel})
    return gw


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = traced(upstream, tmp_path_factory.mktemp("traced") / "data", receiver, "memgate-traced").start()
    yield gateway
    gateway.stop()


def caller_context() -> tuple[str, str, str]:
    """A caller's (trace id, span id, traceparent header), sampled."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def chat(gw: Gateway, user: str, text: str, traceparent: str, **extra: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user, "traceparent": traceparent, **extra}
    response = httpx.post(gw.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def in_trace(receiver: OtlpReceiver, service: str, trace_id: str, name: str) -> Span:
    [span] = receiver.wait_for(lambda s: s.service == service and s.trace_id == trace_id and s.name == name)
    return span


def all_values(spans: list[Span]) -> str:
    return repr([(s.name, s.attributes) for s in spans])


def test_a_chat_request_continues_the_callers_trace_and_sends_its_client_span_upstream(gw: Gateway, upstream: FakeUpstream, receiver: OtlpReceiver) -> None:
    trace_id, caller_span, traceparent = caller_context()
    chat(gw, "tia", "Hello there.", traceparent, tracestate="vendor=abc")
    server = in_trace(receiver, "memgate-traced", trace_id, "POST /v1/chat/completions")
    assert (server.kind, server.parent_span_id) == ("SERVER", caller_span)
    assert server.attributes["http.response.status_code"] == 200 and server.attributes["http.route"] == "/v1/chat/completions"
    call = in_trace(receiver, "memgate-traced", trace_id, "chat gpt-4o")
    assert (call.kind, call.parent_span_id) == ("CLIENT", server.span_id)
    assert {k: call.attributes.get(k) for k in ("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.provider.name", "gen_ai.response.model",
                                               "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")} == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "127.0.0.1",
        "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 5}
    sent = upstream.chat_requests()[-1].headers
    assert sent["traceparent"] == f"00-{trace_id}-{call.span_id}-01"  # the client span's context, replacing the caller's
    assert sent["tracestate"] == "vendor=abc"


def test_an_upstream_error_marks_the_client_span_failed(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id, _, traceparent = caller_context()
    response = httpx.post(gw.v1 + "/chat/completions", json={"model": "fake-error-503", "messages": [{"role": "user", "content": "hi"}]},
                          headers={"Authorization": f"Bearer {KEY}", "traceparent": traceparent}, timeout=30)
    assert response.status_code == 503
    call = in_trace(receiver, "memgate-traced", trace_id, "chat fake-error-503")
    server = in_trace(receiver, "memgate-traced", trace_id, "POST /v1/chat/completions")
    assert (call.status, call.attributes["error.type"]) == (2, "503")
    assert (server.status, server.attributes["http.response.status_code"]) == (2, 503)


def test_other_v1_requests_are_server_spans_whose_context_goes_upstream(gw: Gateway, upstream: FakeUpstream, receiver: OtlpReceiver) -> None:
    trace_id, caller_span, traceparent = caller_context()
    response = httpx.get(gw.v1 + "/models", headers={"Authorization": f"Bearer {KEY}", "traceparent": traceparent}, timeout=30)
    assert response.status_code == 200
    server = in_trace(receiver, "memgate-traced", trace_id, "GET /v1/{path:path}")
    assert (server.kind, server.parent_span_id, server.attributes["url.path"]) == ("SERVER", caller_span, "/v1/models")
    assert upstream.received[-1].headers["traceparent"] == f"00-{trace_id}-{server.span_id}-01"


def test_a_stream_gets_its_spans_when_it_ends(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id, _, traceparent = caller_context()
    chunks = client(gw).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Stream please."}], stream=True,
                                                extra_headers={"X-Memory-User-Id": "sol", "traceparent": traceparent})
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    server = in_trace(receiver, "memgate-traced", trace_id, "POST /v1/chat/completions")
    call = in_trace(receiver, "memgate-traced", trace_id, "chat gpt-4o")
    assert call.parent_span_id == server.span_id and call.status != 2 and call.attributes["gen_ai.operation.name"] == "chat"


def test_recall_and_learning_are_memory_spans_linked_to_their_request_without_memory_text(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id, _, traceparent = caller_context()
    chat(gw, "una-7f3k", SECRET_FACT + ".", traceparent)
    teacher = in_trace(receiver, "memgate-traced", trace_id, "POST /v1/chat/completions")
    flush(gw)
    [created] = receiver.wait_for(lambda s: s.service == "memgate-traced" and s.name == "create_memory" and (trace_id, teacher.span_id) in s.links)
    assert created.attributes["gen_ai.operation.name"] == "create_memory" and created.attributes["memgate.memory.count"] == 1

    recall_trace, _, traceparent = caller_context()
    answered = chat(gw, "una-7f3k", "Where do I live?", traceparent)
    server = in_trace(receiver, "memgate-traced", recall_trace, "POST /v1/chat/completions")
    search = in_trace(receiver, "memgate-traced", recall_trace, "search_memory")
    assert search.parent_span_id == server.span_id and int(answered.headers["X-Memory-Injected"]) >= 1
    assert {k: search.attributes.get(k) for k in ("gen_ai.operation.name", "gen_ai.memory.search.result.count", "memgate.recall.status",
                                                 "memgate.recall.top_k", "memgate.recall.timeout_ms")} == {
        # The fact and, in the archival tier, the user's own words that stated it: as many as were injected.
        "gen_ai.operation.name": "search_memory", "gen_ai.memory.search.result.count": int(answered.headers["X-Memory-Injected"]), "memgate.recall.status": "ok",
        "memgate.recall.top_k": RuleSettings().top_k, "memgate.recall.timeout_ms": 5000}  # the test harness's recall timeout
    spans = [s for s in receiver.spans if s.service == "memgate-traced"]
    recorded = all_values(spans)
    assert "Zanzibarville" not in recorded and "Where do I live" not in recorded
    assert KEY not in recorded and "una-7f3k" not in recorded  # nor the caller's key or user


def test_content_capture_opt_in_records_queries_and_memory_text_and_links_survive_a_restart(upstream: FakeUpstream, receiver: OtlpReceiver, tmp_path: Path) -> None:
    gw = traced(upstream, tmp_path / "data", receiver, "memgate-content", OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    gw.env.update({"MEMGATE_EXTRACTOR": "llm", "MEMGATE_EXTRACTION_API_KEY": "sk-extract", "MEMGATE_EXTRACTION_WORKERS": "1"})
    gw.start()
    try:
        # The job's extraction call is held, the gateway killed: the job, and its trace context, must outlive the process.
        calls = upstream.extraction_calls
        upstream.hold_extractions.clear()
        try:
            trace_id, _, traceparent = caller_context()
            chat(gw, "vic", "My locker number is 4417.", traceparent)
            teacher = in_trace(receiver, "memgate-content", trace_id, "POST /v1/chat/completions")
            assert upstream.wait_for(lambda: upstream.extraction_calls > calls, timeout=30)
            gw.kill()
        finally:
            upstream.hold_extractions.set()
        gw.start()
        flush(gw)
        [created] = receiver.wait_for(lambda s: s.service == "memgate-content" and s.name == "create_memory" and (trace_id, teacher.span_id) in s.links)
        assert created.attributes["gen_ai.memory.content"] == ["The user's locker number is 4417"]

        recall_trace, _, traceparent = caller_context()
        chat(gw, "vic", "What is my locker number?", traceparent)
        search = in_trace(receiver, "memgate-content", recall_trace, "search_memory")
        assert search.attributes["gen_ai.memory.query"] == "What is my locker number?"
    finally:
        gw.stop()


def test_with_the_sdk_disabled_nothing_is_exported_and_the_callers_trace_headers_pass_untouched(upstream: FakeUpstream, receiver: OtlpReceiver, tmp_path: Path) -> None:
    gw = traced(upstream, tmp_path / "data", receiver, "memgate-disabled", OTEL_SDK_DISABLED="true").start()
    try:
        _, _, traceparent = caller_context()
        chat(gw, "wes", "Hello.", traceparent)
        assert upstream.chat_requests()[-1].headers["traceparent"] == traceparent
        httpx.post(gw.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert "traceparent" not in upstream.chat_requests()[-1].headers
        gw.stop()  # a stop flushes whatever a tracer would still hold
        assert not [s for s in receiver.spans if s.service == "memgate-disabled"]
    finally:
        gw.stop()


def test_without_the_variables_no_opentelemetry_module_is_even_imported() -> None:
    script = ("import sys\nfrom gateway.app import build_app\nfrom gateway.config import Settings\n"
              "app = build_app(Settings())\nprint(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
                            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
    assert result.stdout.strip() == "[]", result.stderr


def test_without_the_otel_extra_the_gateway_says_how_to_install_it(tmp_path: Path) -> None:
    """A Python that cannot import OpenTelemetry (a blocking import hook) logs the fix and serves untraced."""
    script = (
        "import sys, logging, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('opentelemetry'): raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "from gateway.config import Settings\n"
        "from gateway.observability import start_tracing\n"
        "print(type(start_tracing(Settings(), {'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:4318'})).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
                            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
    assert result.stdout.strip() == "NoTracing", result.stderr
    assert 'pip install "memgate[otel]"' in result.stderr and "Traceback" not in result.stderr
