"""The admin API's one check: `Authorization: Bearer <admin token>`, compared in constant time."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from .errors import NotFound, Unauthorized
from .identity import bearer_token


def require_admin(request: Request, token: str) -> None:
    """Raise unless the request carries the admin token. With no token configured the admin API
    does not exist (404), so an unset token can never be matched by an empty header."""
    if not token:
        raise NotFound("the admin API is disabled (set MEMGATE_ADMIN_TOKEN)")
    given = bearer_token(request.headers)
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("missing or invalid admin token")
