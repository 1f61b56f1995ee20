"""gateway/observability: when tracing turns on, what the GenAI attributes say, and the spans the hooks
make, recorded by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import secrets
import sqlite3

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.config import Settings
from gateway.extraction.jobs import INSERT_JOB, job_from_row
from gateway.observability import NoTracing, requested, start_tracing
from gateway.observability.genai import MAX_PARSED_BYTES, provider_name, response_attributes
from gateway.observability.otel import OtelTracing
from gateway.sqlite import MIGRATIONS

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def tracing(capture_content: bool = False, upstream: str = "https://api.openai.com/v1") -> tuple[OtelTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracing(sdk, Settings(upstream_url=upstream), capture_content), exporter


def caller() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


@pytest.mark.parametrize("env", [
    {},
    {**ENDPOINT, "OTEL_SDK_DISABLED": "true"},
    {**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
    {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},  # no endpoint: nothing to export to
])
def test_tracing_stays_off_unless_an_otlp_endpoint_is_set_and_not_disabled(env: dict[str, str]) -> None:
    assert not requested(env)
    assert type(start_tracing(Settings(), env)) is NoTracing


def test_a_protocol_other_than_http_protobuf_is_one_log_line_and_no_tracing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "memgate.tracing"):
        assert type(start_tracing(Settings(), {**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})) is NoTracing
    assert [r.getMessage() for r in caplog.records] == [
        "tracing is off: memgate exports OTLP over http/protobuf only, not grpc (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)"]


def test_an_exporter_other_than_otlp_is_one_log_line_and_no_tracing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "memgate.tracing"):
        assert type(start_tracing(Settings(), {**ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"})) is NoTracing
    assert [r.getMessage() for r in caplog.records] == ["tracing is off: memgate exports traces over OTLP only, not zipkin (set OTEL_TRACES_EXPORTER=otlp)"]


@pytest.mark.parametrize("extra", [{}, {"OTEL_TRACES_EXPORTER": "otlp,console"}, {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}])
def test_the_endpoint_turns_on_otlp_export(extra: dict[str, str]) -> None:
    on = start_tracing(Settings(), {**ENDPOINT, **extra})
    try:
        assert isinstance(on, OtelTracing) and on.enabled
        assert on.capture_content == ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in extra)
    finally:
        on.shutdown()


@pytest.mark.parametrize(("url", "configured", "name"), [
    ("https://api.openai.com/v1", "", "openai"),
    ("https://api.anthropic.com/v1", "", "anthropic"),
    ("https://my-res.openai.azure.com/openai/v1", "", "azure.ai.openai"),
    ("http://127.0.0.1:11434/v1", "", "127.0.0.1"),
    ("http://vllm.internal:8000/v1", "vllm", "vllm"),
])
def test_the_provider_name_comes_from_the_setting_or_the_upstream_host(url: str, configured: str, name: str) -> None:
    assert provider_name(url, configured) == name


def test_response_attributes_read_model_and_usage_from_json_plain_or_gzipped() -> None:
    body = json.dumps({"id": "c1", "model": "gpt-4o-2024", "usage": {"prompt_tokens": 11, "completion_tokens": 7},
                       "choices": [{"finish_reason": "stop"}]}).encode()
    expected = {"gen_ai.response.model": "gpt-4o-2024", "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 7}
    assert response_attributes(body) == expected
    assert response_attributes(gzip.compress(body), "gzip") == expected
    assert response_attributes(json.dumps({"usage": {"input_tokens": 3, "output_tokens": True}}).encode()) == {"gen_ai.usage.input_tokens": 3}
    assert response_attributes(b"not json") == {} and response_attributes(b"[1]") == {}
    assert response_attributes(b" " * (MAX_PARSED_BYTES + 1) + body) == {}  # too large to parse on the event loop
    assert response_attributes(gzip.compress(b" " * (MAX_PARSED_BYTES + 1) + body), "gzip") == {}  # inflated past the bound


def test_the_upstream_call_replaces_the_callers_trace_headers_with_its_own_client_span() -> None:
    on, exporter = tracing()
    headers = [("Authorization", "Bearer k"), ("TraceParent", caller()[2]), ("tracestate", "a=1"), ("X-Other", "1")]
    call = on.upstream_call()
    sent = call.start("gpt-4o", "https://api.openai.com/v1/chat/completions", headers)
    call.end(200, body=json.dumps({"model": "gpt-4o-x", "usage": {"prompt_tokens": 2, "completion_tokens": 3}}).encode())
    [span] = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("chat gpt-4o", SpanKind.CLIENT)
    assert [n for n, _ in sent] == ["Authorization", "X-Other", "traceparent"]  # one traceparent, ours; tracestate only if the span has one
    assert dict(sent)["traceparent"].startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")
    assert {k: span.attributes[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
                                            "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "server.address", "server.port")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-x",
        "gen_ai.usage.input_tokens": 2, "gen_ai.usage.output_tokens": 3, "server.address": "api.openai.com", "server.port": 443}
    assert NoTracing().upstream_call().start("m", "u", headers) is headers  # off: the caller's headers go out untouched


def test_an_upstream_error_status_marks_the_client_span_failed_and_ending_twice_exports_once() -> None:
    on, exporter = tracing()
    call = on.upstream_call()
    call.start("m", "https://api.openai.com/v1/chat/completions", [])
    call.end(429, body=b"{}")
    call.end(error="client_closed")
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "429"


def request_app(on: OtelTracing, *, leave_call_open: bool = False) -> Starlette:
    async def endpoint(request: Request) -> JSONResponse:
        call = on.upstream_call()
        call.start("m", "http://127.0.0.1:1/v1/chat/completions", [])
        if not leave_call_open:
            call.end(200)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"]), Route("/healthz", endpoint)], middleware=on.middleware())


async def post(app: Starlette, path: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        return await client.post(path, headers=headers)


def test_the_server_span_continues_the_callers_trace_and_parents_the_client_span() -> None:
    on, exporter = tracing()
    trace_id, span_id, traceparent = caller()
    assert asyncio.run(post(request_app(on), "/v1/chat/completions", {"traceparent": traceparent})).status_code == 200
    client, server = exporter.get_finished_spans()
    assert (server.name, server.kind, server.attributes["http.route"], server.attributes["http.response.status_code"]) == (
        "POST /v1/chat/completions", SpanKind.SERVER, "/v1/chat/completions", 200)
    assert format(server.context.trace_id, "032x") == trace_id and format(server.parent.span_id, "016x") == span_id
    assert client.parent.span_id == server.context.span_id and client.context.trace_id == server.context.trace_id
    asyncio.run(post(request_app(on), "/healthz", {}))
    assert len(exporter.get_finished_spans()) == 2  # only /v1 traffic is traced


def test_an_upstream_call_still_open_when_its_request_ends_is_ended_as_client_closed() -> None:
    on, exporter = tracing()
    asyncio.run(post(request_app(on, leave_call_open=True), "/v1/chat/completions", {}))
    client = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert client.attributes["error.type"] == "client_closed"


def test_memory_changes_link_to_their_requests_and_carry_text_only_with_the_opt_in() -> None:
    for capture in (False, True):
        on, exporter = tracing(capture_content=capture)
        trace_a, span_a, parent_a = caller()
        trace_b, span_b, parent_b = caller()
        with on.memory_change("create_memory", {parent_a, parent_b, "garbage"}, ["User likes tea"]):
            pass
        [span] = exporter.get_finished_spans()
        assert span.name == "create_memory" and span.parent is None
        assert sorted((format(l.context.trace_id, "032x"), format(l.context.span_id, "016x")) for l in span.links) == sorted(
            [(trace_a, span_a), (trace_b, span_b)])
        assert span.attributes["gen_ai.operation.name"] == "create_memory" and span.attributes["memgate.memory.count"] == 1
        assert span.attributes.get("gen_ai.memory.content") == (("User likes tea",) if capture else None)


def test_a_jobs_trace_parent_survives_its_row() -> None:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    for script in MIGRATIONS:
        db.executescript(script)
    traceparent = caller()[2]
    db.execute(INSERT_JOB, ("t", "u", None, None, "r", "heuristic", "[]", "[]", "", "req", 1.0, traceparent))
    assert job_from_row(db.execute("SELECT * FROM jobs").fetchone(), "").trace_parent == traceparent
