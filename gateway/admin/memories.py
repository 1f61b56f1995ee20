"""Admin API, memories part: `/admin/v1` routes to list tenants and users and to manage one user's memories.

Every route is behind the bearer admin token (see `gateway.admin.guard`); with no token configured
the routes are not mounted at all, so they answer 404.
"""

from __future__ import annotations

import functools
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.admin.guard import admin_route, json_body, memory_id_of, memory_not_found, memory_of, scope_of
from gateway.config import Settings
from gateway.errors import BadRequest, NotFound
from gateway.identity import validate_id
from gateway.memory.service import MemoryService, new_id
from gateway.memory.fields import MAX_TEXT_CHARS, confidence_of, field_of, memory_kind, memory_text, memory_tier, unicode_text
from gateway.metrics import Metrics
from gateway.memory.records import Memory

MAX_LIMIT = 500


def routes(settings: Settings, metrics: Metrics) -> list[Route]:
    """The memories part of the admin API; the memory service comes from the lifespan state (503 before it opens)."""

    async def known_user(service: MemoryService, tenant: str, user: str) -> None:
        if await service.store.count(tenant, user) == 0:
            raise NotFound(f"no memories for user {user!r} in tenant {tenant!r}", param="user", code="user_not_found")

    async def tenants(request: Request) -> Response:
        return JSONResponse({"tenants": await memory_of(request).store.tenants()})

    async def users(request: Request) -> Response:
        tenant = validate_id(request.path_params["tenant"], "tenant")
        found = await memory_of(request).store.users(tenant)
        if not found:
            raise NotFound(f"no tenant {tenant!r}", param="tenant", code="tenant_not_found")
        return JSONResponse({"users": found})

    async def list_memories(request: Request) -> Response:
        tenant, user = scope_of(request)
        params = request.query_params
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit", code="invalid_parameter")
        kind = memory_kind(params.get("kind"))
        tier = memory_tier(params.get("tier"))
        service = memory_of(request)
        await known_user(service, tenant, user)
        try:
            page, cursor = await service.store.list(tenant, user, limit=limit, cursor=params.get("cursor"), kind=kind, tier=tier)
        except ValueError:
            raise BadRequest("invalid cursor: pass back the next_cursor of a previous page", param="cursor", code="invalid_parameter") from None
        return JSONResponse({"memories": [m.public() for m in service.with_usage(page)], "next_cursor": cursor})

    async def add_memory(request: Request) -> Response:
        tenant, user = scope_of(request)
        body = await json_body(request)
        text = memory_text(body, required=True)
        kind = memory_kind(field_of(body, "kind", str)) or "fact"
        agent = field_of(body, "agent_id", str)
        confidence = confidence_of(body)
        memory = Memory(
            id=new_id(), tenant=tenant, user_id=user, text=text, kind=kind,
            agent_id=validate_id(agent, "agent_id") if agent else None,
            pinned=bool(field_of(body, "pinned", bool)), confidence=1.0 if confidence is None else confidence, created_at=time.time(),
            tier=memory_tier(field_of(body, "tier", str)),
        )
        await memory_of(request).write([memory], cause="admin")
        return JSONResponse(memory.public())

    async def search(request: Request) -> Response:
        tenant, user = scope_of(request)
        body = await json_body(request)
        query = unicode_text(field_of(body, "query", str, required=True), "query")
        if not query.strip():
            raise BadRequest("field 'query' must not be blank", param="query", code="invalid_field")
        top_k = field_of(body, "top_k", int)
        top_k = 10 if top_k is None else top_k
        if not 1 <= top_k <= 100:
            raise BadRequest("field 'top_k' must be from 1 to 100", param="top_k", code="invalid_field")
        agent = field_of(body, "agent_id", str)
        agent = validate_id(agent, "agent_id") if agent is not None else None
        tier = memory_tier(field_of(body, "tier", str))
        service = memory_of(request)
        await known_user(service, tenant, user)
        results = await service.search(tenant, user, query[:MAX_TEXT_CHARS], top_k, agent=agent, tier=tier)
        return JSONResponse({"results": [{**m.public(), "score": round(score, 6)} for m, score in results]})

    async def get_memory(request: Request) -> Response:
        tenant, user = scope_of(request)
        mid = memory_id_of(request)
        service = memory_of(request)
        memory = await service.store.get(tenant, user, mid)
        if memory is None:
            raise memory_not_found(mid)
        return JSONResponse(service.with_usage([memory])[0].public())

    async def patch_memory(request: Request) -> Response:
        tenant, user = scope_of(request)
        mid = memory_id_of(request)
        body = await json_body(request)
        unknown = set(body) - {"text", "kind", "pinned", "confidence"}
        if unknown:
            raise BadRequest(f"unknown field {sorted(unknown)[0]!r}: text, kind, pinned and confidence can change", param=sorted(unknown)[0], code="invalid_field")
        if not body:
            raise BadRequest("nothing to update: send text, kind, pinned or confidence", code="missing_field")
        memory = await memory_of(request).update(
            tenant, user, mid, text=memory_text(body, required=False), kind=memory_kind(field_of(body, "kind", str)),
            pinned=field_of(body, "pinned", bool), confidence=confidence_of(body), cause="admin",
        )
        if memory is None:
            raise memory_not_found(mid)
        return JSONResponse(memory.public())

    async def delete_memory(request: Request) -> Response:
        tenant, user = scope_of(request)
        mid = memory_id_of(request)
        if not await memory_of(request).delete(tenant, user, mid, cause="admin"):
            raise memory_not_found(mid)
        return JSONResponse({"id": mid, "object": "memory", "deleted": True})

    route = functools.partial(admin_route, settings.admin_token, metrics)

    memories = "/tenants/{tenant}/users/{user}/memories"
    return [
        route("/tenants", tenants, ["GET"]),
        route("/tenants/{tenant}/users", users, ["GET"]),
        route(memories, list_memories, ["GET"]),
        route(memories, add_memory, ["POST"]),
        route(memories + "/search", search, ["POST"]),
        route(memories + "/{id}", get_memory, ["GET"]),
        route(memories + "/{id}", patch_memory, ["PATCH"]),
        route(memories + "/{id}", delete_memory, ["DELETE"]),
    ]
