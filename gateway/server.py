"""Runs the app under uvicorn with the event loop and HTTP parser chosen by measurement."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.app import build_app
from gateway.config import Settings
from gateway.logs import configure_logging


class OpenAIShapedBadRequest:
    """Requests the HTTP parser itself refuses (a bad header byte, a negative Content-Length) get the
    same OpenAI-shaped 400 as every other error, not uvicorn's plain-text one."""

    transport: asyncio.Transport

    def send_400_response(self, msg: str) -> None:
        error = {"message": msg or "invalid HTTP request", "type": "invalid_request_error", "param": None, "code": "invalid_http_request"}
        body = json.dumps({"error": error}).encode()
        head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self.transport.close()


class HeaderDeadline:
    """Closes a connection whose request headers are not complete `header_timeout` seconds after it
    opened, or after its next request's first byte: uvicorn itself would wait for them forever (its
    keep-alive timeout covers only a connection that sends nothing after a response)."""

    header_timeout = 30.0
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)  # type: ignore[misc]

    def _await_headers(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _headers_arrived(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            self._await_headers()  # a pipelined request's headers are due once the response before it is done
        elif not self.transport.is_closing():
            self.transport.close()


class HttpTools(HeaderDeadline, OpenAIShapedBadRequest, HttpToolsProtocol):
    def on_message_begin(self) -> None:
        self._await_headers()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()


class H11(HeaderDeadline, OpenAIShapedBadRequest, H11Protocol):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track_headers()  # a pipelined request's partial head becomes the current one now

    def _track_headers(self) -> None:
        if self.conn.their_state is not h11.IDLE:
            self._headers_arrived()
        elif self.conn.trailing_data[0]:
            self._await_headers()  # part of a request's head, still waiting for the rest


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"httptools": HttpTools, "h11": H11}


def protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The chosen HTTP protocol class, with this gateway's header timeout."""
    base = PROTOCOLS[settings.http]
    return type(base.__name__, (base,), {"header_timeout": settings.client_header_timeout})


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one: every client, upstream connection and
    LanceDB fragment holds a descriptor, and the usual soft limit of 1024 is soon reached."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas. LanceDB's writer threads each grew an arena of their own: with the
    default (8 per core) a process adding memories gained ~40 MB per 1,000 commits, with 2 it stayed
    nearly flat. MALLOC_ARENA_MAX in the environment wins; other C libraries are left alone."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    raise_open_file_limit()
    limit_malloc_arenas()
    config = uvicorn.Config(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop=settings.loop,  # bench/bench_proxy.py measures the choices
        http=protocol(settings),
        lifespan="on",
        access_log=False,  # the proxy logs each request itself, with its request id
        log_config=None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run()
