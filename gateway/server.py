"""Runs the app under uvicorn with the event loop and HTTP parser chosen by measurement."""

from __future__ import annotations

import uvicorn

from .app import build_app
from .config import Settings
from .logs import configure_logging


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    config = uvicorn.Config(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop=settings.loop,  # bench/bench_proxy.py measures the choices
        http=settings.http,
        lifespan="on",
        access_log=False,  # the proxy logs each request itself, with its request id
        log_config=None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run()
