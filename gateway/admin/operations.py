"""Admin endpoints of the extraction side: queue state, flush, a memory's change history, and
forgetting a user (memories, history and queued jobs together)."""

from __future__ import annotations

import functools
import math
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.guard import admin_route, extraction_of, memory_id_of, memory_not_found, memory_of, scope_of
from gateway.config import Settings
from gateway.errors import BadRequest
from gateway.metrics import Metrics

MAX_FLUSH_SECONDS = 600.0


def routes(settings: Settings, metrics: Metrics) -> list[Route]:
    """Routes over the `Extraction` and MemoryService of the lifespan state (503 before they open)."""

    async def queue_state(request: Request) -> Response:
        """This worker's queue and the llm extractor's state; with `--workers N`, also `other_workers`: the rest of the machine's queues."""
        extraction = extraction_of(request)
        state = {**extraction.queue.state(), "llm": extraction.llm_status.view()}
        if extraction.siblings is not None:
            state["other_workers"] = await extraction.siblings.state()
        return JSONResponse(state)

    async def flush(request: Request) -> Response:
        """Returns when every job enqueued before the call is done; `?timeout=` seconds (default 60)."""
        queue = extraction_of(request).queue
        raw = request.query_params.get("timeout", "60")
        try:
            timeout = float(raw)
            if not math.isfinite(timeout) or timeout <= 0:
                raise ValueError
        except ValueError:
            raise BadRequest("timeout must be a positive number of seconds", param="timeout", code="invalid_parameter") from None
        siblings = extraction_of(request).siblings
        marks = await siblings.marks() if siblings is not None else {}
        deadline = time.monotonic() + min(timeout, MAX_FLUSH_SECONDS)
        done = await queue.flush(min(timeout, MAX_FLUSH_SECONDS))
        if done and siblings is not None:  # every worker's jobs queued before the call
            done = await siblings.flush(marks, max(0.0, deadline - time.monotonic()))
        return JSONResponse({"done": done, **queue.state()}, status_code=200 if done else 504)

    async def memory_history(request: Request) -> Response:
        history = memory_of(request).history
        tenant, user = scope_of(request)
        mid = memory_id_of(request)
        changes = await history.for_memory(tenant, user, mid)
        if not changes and await memory_of(request).store.get(tenant, user, mid) is None:
            raise memory_not_found(mid)
        return JSONResponse({"id": mid, "history": changes})

    async def forget_user(request: Request) -> Response:
        """The tombstone, memories and history (MemoryService.forget_user), then queued jobs. Complete
        at once: a batch of the user's still running writes nothing back."""
        queue = extraction_of(request).queue
        tenant, user = scope_of(request)
        service = memory_of(request)
        memories, changes = await service.forget_user(tenant, user)
        jobs = await queue.forget_user(tenant, user)
        if extraction_of(request).siblings is not None:
            jobs += await extraction_of(request).siblings.forget_user(tenant, user)
        return JSONResponse({"tenant": tenant, "user": user, "deleted": {"memories": memories, "history": changes, "jobs": jobs}})

    route = functools.partial(admin_route, settings.admin_token, metrics)

    return [
        route("/queue", queue_state, ["GET"]),
        route("/queue/flush", flush, ["POST"]),
        route("/tenants/{tenant}/users/{user}/memories/{id}/history", memory_history, ["GET"]),
        route("/tenants/{tenant}/users/{user}", forget_user, ["DELETE"]),
    ]
