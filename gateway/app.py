"""Builds the Starlette app from a `Settings` object: routes, error mapping, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.memories import admin_routes
from gateway.admin.transfer import admin_data_routes
from gateway.config import Settings
from gateway.errors import GatewayError, gateway_error_handler, http_exception_handler, unhandled_error_handler
from gateway.extraction.service import Extraction
from gateway.memory.hygiene import Hygiene
from gateway.inflight import InFlight
from gateway.memory.layer import MemoryLayer
from gateway.memory.service import MemoryService
from gateway.metrics import Metrics
from gateway.proxy import Proxy
from gateway.rules_watcher import LiveRules
from gateway.upstream import Upstream

log = logging.getLogger("memgate.app")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def build_app(settings: Settings, metrics: Metrics | None = None) -> Starlette:
    """The whole gateway as one ASGI app. Nothing is opened until the lifespan starts."""
    metrics = metrics or Metrics()
    rules = LiveRules(settings.rules, metrics)
    upstream = Upstream(settings)
    proxy = Proxy(settings, upstream, rules, metrics, memory=None)
    extraction = Extraction(settings, metrics, upstream)
    state: dict[str, bool] = {"ready": False}
    memory: dict[str, MemoryService] = {}  # opened in the lifespan: LanceDB must start after any fork
    hygiene = Hygiene(settings, metrics, lambda: rules.current, lambda: memory.get("service"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(rules.watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, rules.reload)
        service = memory["service"] = await MemoryService.open(settings, metrics, upstream.client)
        await extraction.open(service)  # SQLite queue + history; recovers jobs a crash left running
        proxy.memory = MemoryLayer(service, metrics, enqueue=extraction.capture)
        app.state.memory = service
        hygiene_task = asyncio.create_task(hygiene.periodic())
        state["ready"] = True
        log.info("memgate ready", extra={"upstream": settings.upstream_base, "rules": len(rules.current.rules)})
        try:
            yield
        finally:
            state["ready"] = False
            watcher.cancel()
            hygiene_task.cancel()
            await asyncio.gather(hygiene_task, return_exceptions=True)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            proxy.memory = None
            await extraction.aclose()
            await service.aclose()
            await upstream.aclose()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not state["ready"] or upstream.client.is_closed:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        Route("/v1/chat/completions", proxy.chat, methods=["POST"]),
        Route("/v1/{path:path}", proxy.passthrough, methods=ALL_METHODS),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *admin_routes(lambda: memory.get("service"), settings.admin_token, metrics),
        *extraction.routes(lambda: memory.get("service")),
        *admin_data_routes(lambda: memory.get("service"), settings.admin_token, metrics, settings.max_body_bytes, hygiene),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(InFlight, gauge=metrics.in_flight)],
        exception_handlers={GatewayError: gateway_error_handler, HTTPException: http_exception_handler, Exception: unhandled_error_handler},
    )
    # Starlette answers `/path/` with a redirect built from the Host header: an open redirect. Paths are exact here.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.rules = rules
    app.state.proxy = proxy
    app.state.extraction = extraction
    return app
