"""Admin endpoints of the extraction side: queue state, flush, and a memory's change history."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .admin_auth import require_admin
from .errors import BadRequest, NotFound
from .identity import validate_id

MAX_FLUSH_SECONDS = 600.0


def admin_queue_routes(admin_token: str, extraction: Any, store: Any = None) -> list[Route]:
    """Routes under /admin/v1 for an `Extraction` (opened later, in the lifespan); `store` (a
    MemoryStore, optional) tells an unknown memory from one with no recorded changes."""

    async def queue_state(request: Request) -> Response:
        require_admin(request, admin_token)
        queue, _ = extraction.require_open()
        return JSONResponse(queue.state())

    async def flush(request: Request) -> Response:
        """Returns when every job enqueued before the call is done; `?timeout=` seconds (default 60)."""
        require_admin(request, admin_token)
        queue, _ = extraction.require_open()
        raw = request.query_params.get("timeout", "60")
        try:
            timeout = float(raw)
            if not math.isfinite(timeout) or timeout <= 0:
                raise ValueError
        except ValueError:
            raise BadRequest("timeout must be a positive number of seconds", param="timeout", code="invalid_timeout") from None
        done = await queue.flush(min(timeout, MAX_FLUSH_SECONDS))
        return JSONResponse({"done": done, **queue.state()}, status_code=200 if done else 504)

    async def memory_history(request: Request) -> Response:
        require_admin(request, admin_token)
        _, history = extraction.require_open()
        p = request.path_params
        tenant, user, memory_id = validate_id(p["tenant"], "tenant"), validate_id(p["user"], "user"), validate_id(p["id"], "id")
        changes = await history.for_memory(tenant, user, memory_id)
        if not changes and (store is None or await store.get(tenant, user, memory_id) is None):
            raise NotFound(f"no memory {memory_id} for this user")
        return JSONResponse({"id": memory_id, "history": changes})

    return [
        Route("/admin/v1/queue", queue_state, methods=["GET"]),
        Route("/admin/v1/queue/flush", flush, methods=["POST"]),
        Route("/admin/v1/tenants/{tenant}/users/{user}/memories/{id}/history", memory_history, methods=["GET"]),
    ]
