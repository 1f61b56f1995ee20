"""Counts proxied requests in progress, streamed bodies included, on the in-flight gauge."""

from __future__ import annotations

from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send


class InFlight:
    """Pure ASGI middleware: a request counts from arrival until its last body byte is sent.

    Only `/v1/` traffic counts, so a scrape of /metrics never sees itself.
    """

    def __init__(self, app: ASGIApp, gauge: Gauge) -> None:
        self.app = app
        self.gauge = gauge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        self.gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gauge.dec()
