"""Runs the app under uvicorn with the event loop and HTTP parser chosen by measurement."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import h11
import uvicorn
from prometheus_client import multiprocess
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.metrics import Metrics

log = logging.getLogger("memgate.server")
RESTART_SECONDS = 5.0  # at most one restart of a worker per this many seconds


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


def config_for(settings: Settings, metrics: Metrics | None = None) -> uvicorn.Config:
    # Imported here: the app imports LanceDB, whose runtime must not exist in a process that forks workers.
    from gateway.app import build_app

    return uvicorn.Config(
        build_app(settings, metrics),
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


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    raise_open_file_limit()
    limit_malloc_arenas()
    if settings.workers > 1:
        serve_workers(settings)
    else:
        uvicorn.Server(config_for(settings)).run()


def serve_workers(settings: Settings) -> None:
    """Bind once, then fork `workers` processes that accept on the same socket. Each is a replica: it
    opens LanceDB after the fork (in its lifespan) on the shared store and has its own queue file; their
    metrics are summed through prometheus-client's multiprocess files. A worker that dies is restarted."""
    sock = socket.create_server((settings.host, settings.port), backlog=2048)
    sock.set_inheritable(True)
    shared = settings.replace(store_uri=settings.lancedb_uri)
    metrics_dir = Path(settings.data_dir) / "metrics-multiprocess"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # a previous run's files would add to this one's counters
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # read by prometheus-client in each worker
    children: dict[int, int] = {}
    started: dict[int, float] = {}
    stopping = False

    def spawn(worker: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own
                config = config_for(shared.replace(worker=worker), Metrics(multiprocess_dir=str(metrics_dir)))
                uvicorn.Server(config).run(sockets=[sock])
                code = 0
            except BaseException:
                log.exception("worker failed", extra={"worker": worker})
            finally:
                os._exit(code)
        children[pid] = worker
        started[worker] = time.monotonic()

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    for worker in range(settings.workers):
        spawn(worker)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        worker = children.pop(pid, None)
        multiprocess.mark_process_dead(pid, str(metrics_dir))
        if worker is not None and not stopping:
            log.warning("worker exited; starting it again", extra={"worker": worker, "status": status})
            time.sleep(max(0.0, RESTART_SECONDS - (time.monotonic() - started[worker])))  # a worker failing at start is not restarted in a busy loop
            spawn(worker)
    sock.close()
