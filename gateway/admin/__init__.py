"""The admin API under /admin/v1: memories, export/import, queue and hygiene operations."""

from __future__ import annotations

from starlette.routing import Route

from gateway.admin import memories, operations, transfer
from gateway.config import Settings
from gateway.metrics import Metrics


def routes(settings: Settings, metrics: Metrics) -> list[Route]:
    """Every admin route, or none when no admin token is configured (they answer 404 then)."""
    if not settings.admin_token:
        return []
    return [*memories.routes(settings, metrics), *operations.routes(settings, metrics), *transfer.routes(settings, metrics)]
