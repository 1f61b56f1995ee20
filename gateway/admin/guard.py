"""What every admin route shares: the bearer-token guard, the JSON body, path parameters, and the
services the app's lifespan opened (read from the request's state)."""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.client_body import json_object, read_body
from gateway.errors import BadRequest, GatewayError, NotFound, Unauthorized, Unavailable
from gateway.identity import bearer_token, validate_id
from gateway.extraction.service import Extraction
from gateway.memory.fields import FieldError
from gateway.memory.hygiene import Hygiene
from gateway.memory.service import MemoryService
from gateway.metrics import Metrics

PREFIX = "/admin/v1"
MAX_BODY_BYTES = 1024 * 1024  # an admin JSON body holds one memory (<= 4000 characters) or a query
Handler = Callable[[Request], Awaitable[Response]]


def authorized(request: Request, token: str) -> None:
    """Raise 401 unless the request carries the admin token (compared in constant time)."""
    given = bearer_token(request.headers)
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("missing or invalid admin token: send Authorization: Bearer $MEMGATE_ADMIN_TOKEN")


def guarded(token: str, metrics: Metrics, handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            authorized(request, token)
            service: MemoryService | None = getattr(request.state, "memory", None)
            if service is not None:
                await service.latest()  # an operator reads what any replica committed, at once
            response = await handler(request)
        except GatewayError as exc:
            response = exc.response()
        except FieldError as exc:  # a memory field refused by the validators import shares
            response = BadRequest(str(exc), param=exc.param, code=exc.code).response()
        metrics.requests.labels("admin", str(response.status_code)).inc()
        return response

    return endpoint


async def json_body(request: Request) -> dict[str, Any]:
    return json_object(await read_body(request, MAX_BODY_BYTES))


def scope_of(request: Request) -> tuple[str, str]:
    return validate_id(request.path_params["tenant"], "tenant"), validate_id(request.path_params["user"], "user")


def memory_id_of(request: Request) -> str:
    return validate_id(request.path_params["id"], "memory id")


def memory_of(request: Request) -> MemoryService:
    """The memory service from the lifespan state, or 503 while the lifespan has not opened it yet."""
    service: MemoryService | None = getattr(request.state, "memory", None)
    if service is None:
        raise Unavailable("memory is not open yet; retry shortly")
    return service


def extraction_of(request: Request) -> Extraction:
    """The extraction side from the lifespan state, or 503 while the lifespan has not opened it yet."""
    extraction: Extraction | None = getattr(request.state, "extraction", None)
    if extraction is None:
        raise Unavailable("extraction is not running")
    return extraction


def hygiene_of(request: Request) -> Hygiene:
    """The hygiene runner from the lifespan state (it needs the memory service: 503 the same way)."""
    memory_of(request)
    hygiene: Hygiene = request.state.hygiene
    return hygiene


def memory_not_found(mid: str) -> NotFound:
    return NotFound(f"no memory {mid!r} for this user", param="id", code="memory_not_found")


def admin_route(token: str, metrics: Metrics, path: str, handler: Handler, methods: list[str]) -> Route:
    """A route under /admin/v1 behind the bearer-token guard."""
    return Route(PREFIX + path, guarded(token, metrics, handler), methods=methods)
