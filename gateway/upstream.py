"""The one pooled HTTP client that talks to the OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
from typing import AsyncIterator, Iterable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.config import Settings
from gateway.errors import GatewayError, Unavailable, UpstreamTimeout, UpstreamUnreachable

# Hop-by-hop headers (RFC 9110 7.6.1) and those the HTTP stack recomputes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",  # the gateway answered the client's 100-continue itself and holds the body
    }
)


AIOHTTP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
SEND_CHUNK = 64 * 1024  # larger bodies go upstream in chunks, each under the write timeout


def forwardable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Request headers to send upstream: drop hop-by-hop ones and every `X-Memory-*` control header."""
    out = []
    named: set[str] = set()  # headers a `Connection` header declares hop-by-hop (RFC 9110 7.6.1)
    for name, value in headers:
        lower = name.lower()
        if lower == "connection":
            named.update(token.strip().lower() for token in value.split(","))
        if lower in HOP_BY_HOP or lower.startswith("x-memory-"):
            continue
        out.append((name, value))
    return [(n, v) for n, v in out if n.lower() not in named] if named else out


def response_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Upstream response headers to pass back: hop-by-hop and cookies never cross callers."""
    return [
        (name, value)
        for name, value in headers.multi_items()
        if name.lower() not in HOP_BY_HOP and name.lower() != "set-cookie"
    ]


class Upstream:
    """One shared `httpx.AsyncClient` over the aiohttp transport, pooled, cookie-free.

    The aiohttp transport is chosen by measurement: httpx's default transport fell to about
    120 req/s at 64 concurrent connections on these machines, aiohttp's held about 800.
    """

    def __init__(self, settings: Settings) -> None:
        self.base = settings.upstream_base
        self.timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        )
        limit = settings.max_connections
        # Streamed uploads run at the client's pace, which may be a drip: they share a quarter of the
        # pool, so however many stall, the rest of the pool stays free for everyone else.
        self.upload_slots = asyncio.Semaphore(max(1, limit // 4))

        def session() -> aiohttp.ClientSession:
            # A dummy jar: an upstream Set-Cookie for one caller must never ride on the next one's request.
            connector = aiohttp.TCPConnector(limit=limit, keepalive_timeout=30)
            # No headers of aiohttp's own (Accept, Accept-Encoding, Content-Type...): the upstream sees
            # what the client sent, and an Accept-Encoding it never sent would get it bytes it cannot read.
            return aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=AIOHTTP_AUTO_HEADERS
            )

        transport: httpx.AsyncBaseTransport
        if settings.upstream_transport == "httpx":
            transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=30))
        else:
            transport = AiohttpTransport(client=session)
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=self.timeout,
            cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
            follow_redirects=False,
        )

    def url(self, path: str, query: str = "", base: str | None = None) -> str:
        """Map a gateway path (`/v1/...`) onto the upstream base, or another `base` (each already ends in `/v1`)."""
        suffix = path[3:] if path.startswith("/v1/") or path == "/v1" else path
        return f"{base or self.base}{suffix}" + (f"?{query}" if query else "")

    async def open(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | AsyncIterator[bytes]) -> httpx.Response:
        """Send a request and return the response with its body still unread (the caller closes it)."""
        # A bare Request keeps httpx's default headers (User-Agent, Accept-Encoding) out: the
        # upstream sees what the client sent.
        deadline = asyncio.timeout(None)
        try:
            async with deadline:
                if isinstance(body, bytes) and len(body) > SEND_CHUNK:
                    headers = [*headers, ("Content-Length", str(len(body)))]  # sent as is, not chunked
                    body = chunks_of(body)
                if not isinstance(body, bytes):
                    body = paced(body, deadline, self.timeout.write)
                request = httpx.Request(method, url, headers=headers, content=body)
                return await self.client.send(request, stream=True)
        except (httpx.TransportError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            if deadline.expired():  # the transport reports the cancellation as a connection error
                raise UpstreamTimeout("upstream stopped taking the request body (write timeout)") from None
            raise as_gateway_error(exc) from None

    @contextlib.asynccontextmanager
    async def upload_slot(self) -> AsyncIterator[None]:
        """Hold one of the connections streamed uploads may use, waiting up to the pool timeout (else 503)."""
        try:
            await asyncio.wait_for(self.upload_slots.acquire(), self.timeout.pool)
        except TimeoutError:
            raise Unavailable("too many large uploads in progress: retry later", code="uploads_busy") from None
        try:
            yield
        finally:
            self.upload_slots.release()

    async def aclose(self) -> None:
        await self.client.aclose()


async def chunks_of(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), SEND_CHUNK):
        yield body[start : start + SEND_CHUNK]


async def paced(body: AsyncIterator[bytes], deadline: asyncio.Timeout, seconds: float | None) -> AsyncIterator[bytes]:
    """Give the upstream `seconds` to take each chunk (httpx's write timeout, which aiohttp lacks: an
    upstream that stops reading would otherwise hold the request forever). Waiting for the client's
    next chunk of an upload does not count against the upstream."""
    loop = asyncio.get_running_loop()

    def set_deadline(when: float | None) -> None:
        try:
            deadline.reschedule(when)
        except RuntimeError:
            pass  # the upstream answered before taking the whole body: nothing left to time

    async for chunk in body:
        set_deadline(None if seconds is None else loop.time() + seconds)
        yield chunk
        set_deadline(None)


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Classify a transport failure as 504 (timed out) or 502 (unreachable, reset, refused).

    httpx-aiohttp maps every aiohttp connection error to `ConnectTimeout`, refused connections
    included, so the aiohttp cause decides.
    """
    cause = exc.__cause__ or exc
    timed_out = isinstance(cause, (TimeoutError, aiohttp.ServerTimeoutError)) or (
        not isinstance(cause, aiohttp.ClientError) and isinstance(exc, httpx.TimeoutException)
    )
    if timed_out:
        return UpstreamTimeout(f"upstream timed out ({type(cause).__name__})")
    return UpstreamUnreachable(f"upstream unreachable ({type(cause).__name__})")


def failure_reason(error: GatewayError) -> str:
    return "timeout" if isinstance(error, UpstreamTimeout) else "unreachable"
