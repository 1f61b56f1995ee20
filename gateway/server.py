"""Runs the app under uvicorn with the event loop and HTTP parser chosen by measurement."""

from __future__ import annotations

import asyncio
import ctypes
import json
import os

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .app import build_app
from .config import Settings
from .logs import configure_logging


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


class HttpTools(OpenAIShapedBadRequest, HttpToolsProtocol):
    pass


class H11(OpenAIShapedBadRequest, H11Protocol):
    pass


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"httptools": HttpTools, "h11": H11}


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
        http=PROTOCOLS[settings.http],
        lifespan="on",
        access_log=False,  # the proxy logs each request itself, with its request id
        log_config=None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run()
