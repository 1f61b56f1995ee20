"""Builds the Starlette app from a `Settings` object: routes, error mapping, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import AsyncIterator, TypedDict

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import admin
from gateway.config import Settings
from gateway.errors import GatewayError, gateway_error_handler, http_exception_handler, unhandled_error_handler
from gateway.extraction.service import Extraction
from gateway.inflight import InFlight
from gateway.memory.hygiene import Hygiene
from gateway.memory.layer import MemoryLayer
from gateway.memory.prefetch import prefetch
from gateway.memory.service import MemoryService
from gateway.metrics import Metrics
from gateway.observability import start_tracing
from gateway.proxy import Proxy
from gateway.rules_watcher import LiveRules
from gateway.sqlite import open_db, truncate_wal
from gateway.upstream import Upstream

log = logging.getLogger("memgate.app")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Opened(TypedDict):
    """What the lifespan opens; Starlette hands it to every request as `request.state`."""

    memory: MemoryService
    layer: MemoryLayer
    extraction: Extraction
    hygiene: Hygiene


def build_app(settings: Settings, metrics: Metrics | None = None) -> Starlette:
    """The whole gateway as one ASGI app. Nothing is opened until the lifespan starts."""
    metrics = metrics or Metrics()
    rules = LiveRules(settings.rules, metrics)
    upstream = Upstream(settings)
    tracing = start_tracing(settings)
    proxy = Proxy(settings, upstream, rules, metrics, tracing)
    ready = False
    warming: asyncio.Task[int] | None = None  # the start-up prefetch: /readyz waits for it

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Opened]:
        nonlocal ready, warming
        loop = asyncio.get_running_loop()
        # Rules first: a SIGHUP while the embedder loads must reload them, not end the process.
        watcher = asyncio.create_task(rules.watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, rules.reload)
        db = await open_db(settings.sqlite_path)
        memory = await MemoryService.open(settings, metrics, upstream.client)  # LanceDB must start after any fork
        if memory.history is not None and await memory.history.adopt(db):
            log.info("moved this replica's history from SQLite into the shared store")
        extraction = await Extraction.open(settings, metrics, upstream, db, memory, tracing.memory_change, lambda: rules.current)  # recovers jobs a crash left running
        hygiene = Hygiene(settings, metrics, lambda: rules.current, memory, scrub_wal=lambda: truncate_wal(db))
        hygiene_task = asyncio.create_task(hygiene.periodic())
        warming = asyncio.create_task(prefetch(memory, metrics, settings.prefetch_users, settings.prefetch_seconds))
        ready = True
        log.info("memgate ready", extra={"upstream": settings.upstream_base, "rules": len(rules.current.rules)})
        try:
            yield {"memory": memory, "layer": MemoryLayer(memory, metrics, enqueue=extraction.capture, summarize=extraction.summarize), "extraction": extraction, "hygiene": hygiene}
        finally:
            ready = False
            watcher.cancel()
            hygiene_task.cancel()
            warming.cancel()
            await asyncio.gather(hygiene_task, warming, return_exceptions=True)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            await extraction.aclose()
            await db.close()
            await memory.aclose()
            await upstream.aclose()
            await asyncio.to_thread(tracing.shutdown)  # last: the extraction's final spans go out too

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not ready or warming is None or not warming.done() or upstream.client.is_closed:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/v1/chat/completions", proxy.chat, methods=["POST"]),
        Route("/v1/responses", proxy.responses, methods=["POST"]),
        Route("/v1/messages", proxy.messages, methods=["POST"]),
        Route("/v1/messages/{path:path}", proxy.messages_passthrough, methods=ALL_METHODS),
        Route("/v1/{path:path}", proxy.passthrough, methods=ALL_METHODS),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *admin.routes(settings, metrics),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(InFlight, gauge=metrics.in_flight), *tracing.middleware()],
        exception_handlers={GatewayError: gateway_error_handler, HTTPException: http_exception_handler, Exception: unhandled_error_handler},
    )
    # Starlette answers `/path/` with a redirect built from the Host header: an open redirect. Paths are exact here.
    app.router.redirect_slashes = False
    return app
