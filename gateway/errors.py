"""The gateway's own errors and their one mapping to OpenAI-shaped JSON responses."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse


class GatewayError(Exception):
    """An error the gateway answers itself, as `{"error": {message, type, param, code}}`."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code, headers)


class BadRequest(GatewayError):
    status = 400


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_admin_token"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class ClientBodyTimeout(GatewayError):
    status = 408
    code = "client_body_timeout"

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        # The rest of the body may still come: close the connection rather than read it as a next request.
        return super().response({**(headers or {}), "Connection": "close"})


class PayloadTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class UpstreamUnreachable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class Unavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "unavailable"


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def gateway_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return exc.response(_request_id())


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404/405 answers, in OpenAI's shape."""
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "error")
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return error_response(status, str(detail), kind, code=None, headers=_request_id())


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # Reached only by a gateway bug: say so in OpenAI's shape and keep serving.
    return error_response(500, "internal gateway error", "server_error", code="internal_error", headers=_request_id())


def _request_id() -> dict[str, str]:
    # Answers that never reach the proxy still carry an id, like every other response.
    return {"X-Memory-Request-Id": uuid.uuid4().hex}
