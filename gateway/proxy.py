"""The proxy endpoints: chat completions, Responses and Messages (with memory), and byte-exact passthrough of every other /v1 path."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.apis.base import Api
from gateway.apis.chat import ChatApi
from gateway.apis.messages import MessagesApi, anthropic_base
from gateway.apis.responses import ResponsesApi
from gateway.client_body import ClientBody, json_object, read_body
from gateway.config import Settings
from gateway.errors import BadRequest, GatewayError
from gateway.exchange import ChatContext, MemoryLayer, memory_modes
from gateway.identity import bearer_token, identify
from gateway.keyless import KeylessCallers
from gateway.metrics import Metrics
from gateway.observability import NoTracing, NoUpstreamCall
from gateway.rules import RequestFacts
from gateway.rules_watcher import LiveRules
from gateway.upstream import Upstream, as_gateway_error, failure_reason, forwardable, response_headers

log = logging.getLogger("memgate.proxy")


class UpstreamBrokeOff(Exception):
    """The upstream failed after the response headers were sent.

    Raised out of the body so the server drops the client connection without a clean end: the
    client sees a truncated response, as it would talking to the upstream, not a short success.
    The proxy logs it as a warning; uvicorn's traceback for it is filtered out (logs.py).
    """

    expected_break = True


def broke_off(request_id: str, route: str) -> UpstreamBrokeOff:
    log.warning("upstream broke off mid-response: the client's response is cut", extra={"request_id": request_id, "route": route})
    return UpstreamBrokeOff(request_id)


class BodyThenCommit(Response):
    """Sends a body but its last byte, runs `after`, then sends the last byte.

    `after` commits the extraction job: as for a stream (whose closing chunk waits for it), a client
    holds the complete answer only once the job is durable, and it waits for nothing but that commit.
    """

    def __init__(self, body: bytes, status: int, headers: list[tuple[str, str]], after: Callable[[], Awaitable[None]] | None) -> None:
        self.status_code = status
        self.body = body
        self.after = after
        self.background = None
        self.raw_headers = encode_headers(headers) + [(b"content-length", str(len(body)).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if self.after is None:
            await send({"type": "http.response.body", "body": self.body})
            return
        await send({"type": "http.response.body", "body": self.body[:-1], "more_body": True})
        await self.after()
        await send({"type": "http.response.body", "body": self.body[-1:]})


class Proxy:
    """The /v1 handlers; the memory layer of a request comes from the lifespan state (none before it opens)."""

    def __init__(self, settings: Settings, upstream: Upstream, rules: LiveRules, metrics: Metrics, tracing: NoTracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing or NoTracing()
        self.upstream = upstream
        self.rules = rules
        self.metrics = metrics
        self.keyless = KeylessCallers(metrics)
        self.apis: dict[str, Api] = {api.name: api for api in (ChatApi(), ResponsesApi(), MessagesApi())}
        self.bases = {"messages": anthropic_base(settings)}  # upstream bases other than --upstream-url, by route

    # -- the APIs with memory: chat completions, Responses, Messages ---------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._with_memory(request, self.apis["chat"])

    async def responses(self, request: Request) -> Response:
        return await self._with_memory(request, self.apis["responses"])

    async def messages(self, request: Request) -> Response:
        return await self._with_memory(request, self.apis["messages"])

    async def _with_memory(self, request: Request, api: Api) -> Response:
        """Recall and inject, forward, then capture the answer (JSON or SSE) for extraction: one path for every API."""
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        route = api.name
        memory: MemoryLayer | None = getattr(request.state, "layer", None)
        tracing = self.tracing
        call = tracing.upstream_call()
        try:
            ctx, payload, body = await self._prepare(request, request_id, api)
            tracing.bind(ctx)
            trimming = api.trimming(payload) if ctx.rule.overflow == "fit" else None  # needs no memory; None: history held upstream
            view = api.view(payload) if memory is not None and (ctx.read or ctx.write or trimming is not None) else payload
            if memory is not None and (ctx.read or trimming is not None):
                placement = ctx.rule.placement
                with tracing.search_memory(ctx, view):
                    trimmed, block = await memory.recall_block(ctx, view, lambda fitted: api.appends(fitted or payload, placement), trimming=trimming)
                forwarded = payload if trimmed is None else trimmed
                injected = trimmed if block is None else api.insert(forwarded, block, placement)
                if injected is not None:
                    body = encode_json(injected)
            sent = time.perf_counter()
            url = self.upstream.url(*raw_target(request), base=self.bases.get(route))
            upstream = await self.upstream.open("POST", url, call.start(ctx.model, url, forwardable(request.headers.items())), body)
        except GatewayError as exc:
            call.end(error=exc)
            if exc.status >= 502:
                self.metrics.upstream_errors.labels(failure_reason(exc)).inc()
            return self._finish(route, api.error(exc, {"X-Memory-Request-Id": request_id}), started, None, request_id)
        headers = response_headers(upstream.headers) + self._memory_headers(ctx)
        self.metrics.memory_status.labels(ctx.memory_status, route).inc()
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            return self._stream(api, ctx, view, upstream, headers, started, sent, memory, call)
        try:
            # Raw bytes, not `aread()`: that would decode a gzip body the client asked for and must get as is.
            raw = b"".join([chunk async for chunk in upstream.aiter_raw()])
        except (httpx.TransportError, OSError) as exc:
            error = as_gateway_error(exc)
            call.end(error=error)
            self.metrics.upstream_errors.labels(failure_reason(error)).inc()
            return self._finish(route, api.error(error, {"X-Memory-Request-Id": request_id}), started, sent, request_id)
        finally:
            await upstream.aclose()
        upstream_done = time.perf_counter()
        call.end(upstream.status_code, body=raw, encoding=upstream.headers.get("content-encoding", ""))
        after: Callable[[], Awaitable[None]] | None = None
        if ctx.write and memory is not None:
            reply = api.reply_from_json(raw, upstream.headers.get("content-encoding", "")) if upstream.status_code == 200 else None
            if reply is None:
                self.metrics.captures_skipped.labels("failed" if upstream.status_code != 200 else "unreadable", route).inc()
            else:
                after = functools.partial(memory.capture, ctx, view, reply)
        response = BodyThenCommit(raw, upstream.status_code, headers, after)
        return self._finish(route, response, started, sent, request_id, upstream_done)

    async def _prepare(self, request: Request, request_id: str, api: Api) -> tuple[ChatContext, dict[str, Any], bytes]:
        body = await read_body(request, self.settings.max_body_bytes, self.settings.client_body_timeout)
        payload = json_object(body)
        headers = request.headers
        identity = identify(headers, api.identity_fields(payload), self.settings.tenant_mode, self.settings.tenants)
        model = payload.get("model") if isinstance(payload.get("model"), str) else ""
        facts = RequestFacts(model, request.url.path, identity.tenant, identity.user, headers)
        rule_name, rule = self.rules.current.select(facts)
        try:
            read, write = memory_modes(headers.get("x-memory-mode"), rule)
        except ValueError:
            raise BadRequest("X-Memory-Mode must be one of off, read, write, read-write", param="X-Memory-Mode", code="invalid_memory_mode") from None
        if not identity.has_user:
            read = write = False
        elif identity.keyless is not None and (read or write):
            self.keyless.memory_off(identity.keyless, identity.tenant, request_id, api.name)
            read = write = False
        api_key = bearer_token(headers) if api.lends_key else ""
        ctx = ChatContext(request_id, identity, rule_name, rule, model, read, write, api_key=api_key, api=api.name)
        ctx.memory_status = "ok" if (read or write) else "off"
        return ctx, payload, body

    def _stream(
        self, api: Api, ctx: ChatContext, view: dict[str, Any], upstream: httpx.Response, headers: list[tuple[str, str]], started: float,
        sent: float, memory: MemoryLayer | None, call: NoUpstreamCall,
    ) -> Response:
        capture = api.stream_capture() if ctx.write and memory is not None and upstream.status_code == 200 else None
        metrics = self.metrics

        def first_byte() -> None:
            metrics.stream_first_byte.observe(time.perf_counter() - started)

        async def finish(broken: bool) -> None:
            call.end(upstream.status_code, error="upstream_broke_off" if broken else None)
            if capture is None or memory is None:
                return
            capture.failed = capture.failed or broken
            reply = capture.reply()
            if capture.error is not None:
                metrics.captures_skipped.labels("capture_error", api.name).inc()
                log.warning("could not read the streamed reply: not learning from it", extra={"request_id": ctx.request_id, "error": type(capture.error).__name__})
            elif reply is None:
                metrics.captures_skipped.labels("truncated", api.name).inc()
            else:
                await memory.capture(ctx, view, reply)

        body = self._relay(
            upstream, api.name, ctx.request_id, started, sent,
            first_byte=first_byte, on_chunk=None if capture is None else capture.feed, finish=finish, log_extra={"stream": True},
        )
        return streaming(body, upstream.status_code, headers)

    @staticmethod
    def _memory_headers(ctx: ChatContext) -> list[tuple[str, str]]:
        return [
            ("X-Memory-Request-Id", ctx.request_id),
            ("X-Memory-Status", ctx.memory_status),
            ("X-Memory-Injected", str(ctx.injected)),
            ("X-Memory-Injected-Tokens", str(ctx.injected_tokens)),
        ] + ([("X-Memory-Trimmed-Messages", str(ctx.trimmed_messages)), ("X-Memory-Trimmed-Tokens", str(ctx.trimmed_tokens))] if ctx.trimmed_messages else [])

    # -- everything else under /v1 ---------------------------------------------------------------

    async def passthrough(self, request: Request) -> Response:
        """Forward any other /v1 request untouched, streaming both bodies."""
        return await self._passthrough(request, self.apis["chat"])

    async def messages_passthrough(self, request: Request) -> Response:
        """The rest of the Messages surface (`/v1/messages/...`: batches, token counts) to the Anthropic upstream."""
        return await self._passthrough(request, self.apis["messages"])

    async def _passthrough(self, request: Request, api: Api) -> Response:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        try:
            url = self.upstream.url(*raw_target(request), base=self.bases.get(api.name))
            upstream = await self._forward_request(request, url)
        except GatewayError as exc:
            if exc.status >= 502:
                self.metrics.upstream_errors.labels(failure_reason(exc)).inc()
            return self._finish("passthrough", api.error(exc, {"X-Memory-Request-Id": request_id}), started, None, request_id)
        sent = started
        headers = response_headers(upstream.headers) + [("X-Memory-Request-Id", request_id)]
        upstream_length = upstream.headers.get("content-length")
        if upstream_length is not None and upstream.status_code not in (204, 304):
            # The raw bytes go through unchanged, so the upstream's length holds: downloads keep their size.
            headers.append(("Content-Length", upstream_length))
        return streaming(self._relay(upstream, "passthrough", request_id, started, sent), upstream.status_code, headers)

    async def _relay(
        self, upstream: httpx.Response, route: str, request_id: str, started: float, sent: float, *,
        first_byte: Callable[[], None] | None = None, on_chunk: Callable[[bytes], None] | None = None,
        finish: Callable[[bool], Awaitable[None]] | None = None, log_extra: dict[str, Any] | None = None,
    ) -> AsyncIterator[bytes]:
        """The upstream's raw body to the client, then `finish(broken)` and the request's metrics and log.

        `first_byte` runs as the first chunk arrives, `on_chunk` after each chunk went to the client. A
        client that leaves is counted as a 499; an upstream that breaks off is counted, then re-raised
        so the client's response is cut too.
        """
        broken: Exception | None = None
        finished = False
        try:
            async for chunk in upstream.aiter_raw():
                if first_byte is not None:
                    first_byte()
                    first_byte = None
                yield chunk
                if on_chunk is not None:
                    on_chunk(chunk)
            finished = True
        except (httpx.TransportError, OSError) as exc:
            broken = exc
            self.metrics.upstream_errors.labels("stream_" + failure_reason(as_gateway_error(exc))).inc()
        finally:
            if not finished and broken is None:
                self._client_gone(route, request_id, started)
            # Runs on completion and when the client vanishes (the generator is cancelled):
            # closing returns or drops the upstream connection, cancelling the upstream request.
            await upstream.aclose()
        upstream_done = time.perf_counter()
        if finish is not None:
            await finish(broken is not None)
        self._observe(route, upstream.status_code, started, sent, upstream_done)
        log.info("request", extra={"request_id": request_id, "route": route, "status": upstream.status_code, **(log_extra or {})})
        if broken is not None:
            raise broke_off(request_id, route) from broken

    async def _forward_request(self, request: Request, url: str) -> httpx.Response:
        """Open the upstream request of a passthrough route.

        A body up to `max_body_bytes` is read whole first, so a client that stalls holds no upstream
        connection; a larger one streams (its declared length kept) on one of the upload slots.
        Either way a client pausing `client_body_timeout` mid-body gets a 408, and a streamed
        upstream request is cancelled with it.
        """
        headers = self.tracing.outgoing(forwardable(request.headers.items()))
        length = request.headers.get("content-length")
        if length is None and "chunked" not in request.headers.get("transfer-encoding", ""):
            return await self.upstream.open(request.method, url, headers, b"")
        reader = ClientBody(request, self.settings.client_body_timeout)
        head, whole = b"", False
        if length is None or not length.isdigit() or int(length) <= self.settings.max_body_bytes:
            head, whole = await reader.read(self.settings.max_body_bytes)
        if whole:
            if not head:
                headers.append(("Content-Length", "0"))  # an empty POST still says so: some servers want a length
            return await self._send(request.method, url, headers, head, reader)
        if length is not None:
            headers.append(("Content-Length", length))  # stream uploads as they came, not chunked
        async with self.upstream.upload_slot():
            return await self._send(request.method, url, headers, reader.rest(head), reader)

    async def _send(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes], reader: ClientBody) -> httpx.Response:
        try:
            return await self.upstream.open(method, url, headers, body)
        except GatewayError:
            # The aiohttp transport reports a body the client stopped sending as a connection error.
            if reader.failure is not None:
                raise reader.failure from None
            raise

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _finish(self, route: str, response: Response, started: float, sent: float | None, request_id: str, upstream_done: float | None = None) -> Response:
        if not isinstance(response, StreamingResponse):
            self._observe(route, response.status_code, started, sent, upstream_done)
            level = logging.WARNING if response.status_code >= 400 else logging.INFO
            log.log(level, "request", extra={"request_id": request_id, "route": route, "status": response.status_code})
        return response

    def _client_gone(self, route: str, request_id: str, started: float) -> None:
        # The client left mid-response (the body generator was cancelled or closed): count and log it
        # as 499, nginx's "client closed request", so disconnects show on dashboards.
        self._observe(route, 499, started, None, None)
        log.info("request", extra={"request_id": request_id, "route": route, "status": 499, "client_disconnected": True})

    def _observe(self, route: str, status: int, started: float, sent: float | None, upstream_done: float | None) -> None:
        now = time.perf_counter()
        m = self.metrics
        m.requests.labels(route, str(status)).inc()
        m.request_duration.labels(route).observe(now - started)
        if sent is not None and upstream_done is not None:
            upstream_time = upstream_done - sent
            m.upstream_duration.labels(route).observe(upstream_time)
            m.overhead.labels(route).observe(max(0.0, (now - started) - upstream_time))


def encode_json(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson: a 100k-token body in 0.5 ms, not 4); the standard encoder where orjson refuses
    (integers past 64 bits), as escaped ASCII when the client sent lone surrogates (valid JSON, not valid UTF-8)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


def raw_target(request: Request) -> tuple[str, str]:
    """Path and query exactly as the client sent them: a decoded %2F or %3F would change the target.

    Dot segments are refused: the URL layer would resolve `/v1/../admin` to a path outside the
    upstream's /v1, on the upstream's host.
    """
    segments = request.scope["path"].split("/")
    if "." in segments or ".." in segments:
        raise BadRequest("request path must not contain '.' or '..' segments", code="invalid_path")
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.scope["path"]
    return path, request.scope.get("query_string", b"").decode("latin-1")


def encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # Raw pairs, not a dict: repeated upstream headers (two Link headers, say) must survive.
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def streaming(body: AsyncIterator[bytes], status: int, headers: list[tuple[str, str]]) -> StreamingResponse:
    response = StreamingResponse(body, status_code=status)
    response.raw_headers = encode_headers(headers)
    return response
