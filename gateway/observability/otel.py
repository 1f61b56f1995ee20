"""Tracing on: a SERVER span per /v1 request continuing the caller's W3C trace context, the upstream call
as a GenAI CLIENT span, recall and learning as memory spans. Imported only when tracing is on."""

from __future__ import annotations

import contextlib
import contextvars
import os
from importlib import metadata
from typing import Any, Collection, Iterator, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import Settings
from gateway.exchange import ChatContext
from gateway.memory.recall import query_text
from gateway.observability.off import NoTracing, NoUpstreamCall
from gateway.observability.genai import provider_name, response_attributes, server_attributes

PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")
RAW_TRACE_HEADERS = (b"traceparent", b"tracestate")
MAX_MODEL_IN_NAME = 128  # the model is the caller's string: a span name stays short whatever it is
# The upstream calls of the request being served: one still open when the request ends (its client left mid-stream) is ended then.
OPEN_CALLS: contextvars.ContextVar[list[UpstreamCall] | None] = contextvars.ContextVar("memgate_open_calls", default=None)


def content_capture(env: Mapping[str, str]) -> bool:
    """OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true: queries and memory text go into spans."""
    return env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() == "true"


def resource(env: Mapping[str, str]) -> Resource:
    """The SDK's resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, named memgate unless they name it."""
    named = bool(env.get("OTEL_SERVICE_NAME")) or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    attributes: dict[str, Any] = {} if named else {"service.name": "memgate"}
    with contextlib.suppress(metadata.PackageNotFoundError):
        attributes["service.version"] = metadata.version("memgate")
    return Resource.create(attributes)


def traceparent_of(span: trace.Span) -> str:
    """The W3C traceparent header naming `span` ('' for an invalid span)."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


def link_to(traceparent: str) -> Link | None:
    """A span link to the span a stored traceparent names, or None when it names none."""
    span_context = trace.get_current_span(PROPAGATOR.extract({"traceparent": traceparent})).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def _fail(span: trace.Span, error_type: str, description: str = "") -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description or None))


class ServerSpans:
    """Pure ASGI middleware: one SERVER span per /v1 request, current while the request and its
    streamed body run, continuing the caller's `traceparent`."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:  # ASGI header names are lower-case bytes
            if name in RAW_TRACE_HEADERS:
                carrier.setdefault(name.decode(), value.decode("latin-1"))
        parent = PROPAGATOR.extract(carrier) if carrier else None
        method = scope["method"]
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes={
            "http.request.method": method, "url.path": scope["path"], "url.scheme": scope.get("scheme", "http"),
        })
        status: list[int] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        calls: list[UpstreamCall] = []
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        calls_token = OPEN_CALLS.set(calls)
        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:
            span.record_exception(exc)
            _fail(span, type(exc).__name__)
            raise
        finally:
            OPEN_CALLS.reset(calls_token)
            otel_context.detach(token)
            for call in calls:
                call.end(error="client_closed")  # a no-op for calls already ended
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{method} {route}")
            if span.is_recording():
                span.set_attributes({**({"http.route": route} if route else {}), **({"http.response.status_code": status[0]} if status else {})})
                if status and status[0] >= 500:
                    _fail(span, str(status[0]))
            span.end()


class UpstreamCall(NoUpstreamCall):
    """The chat request to the upstream as a GenAI CLIENT span `chat {model}`, whose context goes upstream."""

    def __init__(self, tracing: OtelTracing) -> None:
        self.tracing = tracing
        self.span: trace.Span | None = None

    def start(self, model: str, url: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        t = self.tracing
        name = f"chat {model[:MAX_MODEL_IN_NAME]}" if model else "chat"
        self.span = span = t.tracer.start_span(name, kind=SpanKind.CLIENT, attributes={**t.chat_attributes, "gen_ai.request.model": model})
        unfinished = OPEN_CALLS.get()
        if unfinished is not None:
            unfinished.append(self)
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        # The caller's own trace headers are replaced, never sent twice: ours continue the caller's trace.
        return [(n, v) for n, v in headers if n.lower() not in TRACE_HEADERS] + list(carrier.items())

    def end(self, status: int | None = None, *, body: bytes | None = None, encoding: str = "", error: BaseException | str | None = None) -> None:
        span, self.span = self.span, None
        if span is None:
            return
        if span.is_recording():
            if isinstance(error, str):
                _fail(span, error)
            elif error is not None:
                _fail(span, type(error).__name__, str(error))
            if status is not None and status >= 400:
                _fail(span, str(status))
            elif body is not None:
                span.set_attributes(response_attributes(body, encoding))
        span.end()


class OtelTracing(NoTracing):
    """Tracing on, over a TracerProvider: `exporting` builds the OTLP one, tests hand in their own."""

    enabled = True

    def __init__(self, sdk: TracerProvider, settings: Settings, capture_content: bool = False) -> None:
        self.sdk = sdk
        self.tracer = sdk.get_tracer("memgate")
        self.provider = provider_name(settings.upstream_base, settings.genai_provider_name)
        # The same on every upstream call: built once.
        self.chat_attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": self.provider, **server_attributes(settings.upstream_base)}
        self.capture_content = capture_content

    @classmethod
    def exporting(cls, settings: Settings, env: Mapping[str, str] | None = None) -> OtelTracing:
        """Batched OTLP/HTTP export, configured by the SDK's own OTEL_* variables (endpoint, headers, sampler...)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        env = os.environ if env is None else env
        sdk = TracerProvider(resource=resource(env))
        sdk.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(sdk, settings, content_capture(env))

    def middleware(self) -> list[Middleware]:
        return [Middleware(ServerSpans, tracer=self.tracer)]

    def bind(self, ctx: ChatContext) -> None:
        """Note the request's span on its context: the extraction job it queues links back to it."""
        span = trace.get_current_span()
        ctx.trace_parent = traceparent_of(span)
        if span.is_recording():
            span.set_attribute("memgate.rule", ctx.rule_name)

    @contextlib.contextmanager
    def search_memory(self, ctx: ChatContext, payload: dict[str, Any]) -> Iterator[None]:
        rule = ctx.rule
        with self.tracer.start_as_current_span("search_memory", attributes={
            "gen_ai.operation.name": "search_memory", "memgate.recall.top_k": rule.top_k, "memgate.recall.timeout_ms": rule.recall_timeout_ms,
        }) as span:
            yield
            if span.is_recording():
                span.set_attributes({"gen_ai.memory.search.result.count": ctx.injected, "memgate.recall.injected_tokens": ctx.injected_tokens,
                                     "memgate.recall.status": ctx.memory_status})
                if ctx.memory_status in ("timeout", "degraded"):
                    _fail(span, ctx.memory_status)
                if self.capture_content:
                    span.set_attribute("gen_ai.memory.query", query_text(payload))

    def upstream_call(self) -> UpstreamCall:
        return UpstreamCall(self)

    def outgoing(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Headers for a passthrough request: the request span's context replaces the caller's."""
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier)
        if not carrier:
            return headers
        return [(n, v) for n, v in headers if n.lower() not in TRACE_HEADERS] + list(carrier.items())

    @contextlib.contextmanager
    def memory_change(self, operation: str, links: Collection[str], texts: Sequence[str]) -> Iterator[None]:
        """One span over a write of the extraction side, linked to the requests whose jobs taught it."""
        found = [link for link in map(link_to, sorted(links)) if link is not None]
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation, "memgate.memory.count": len(texts)}
        if self.capture_content:
            attributes["gen_ai.memory.content"] = list(texts)
        with self.tracer.start_as_current_span(operation, context=otel_context.Context(), links=found, attributes=attributes):
            yield

    def shutdown(self) -> None:
        """Export what is still buffered, then stop the exporter's thread."""
        self.sdk.shutdown()
