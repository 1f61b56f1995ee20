"""Reading a client's request body with a deadline for each piece: a client that stalls mid-body gets
a 408 instead of holding a request (and, through it, an upstream connection) open forever. Also the
one parser of a JSON-object body (chat completions and the admin API)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from starlette.requests import ClientDisconnect, Request

from gateway.errors import BadRequest, ClientBodyTimeout, GatewayError, PayloadTooLarge


class ClientBody:
    """The body of `request`, each piece due within `timeout` seconds of the one before (None: no limit).

    `failure` keeps why reading stopped early: an upstream transport reading `rest()` may report it
    as a connection error of its own, and the caller still answers the client's fault (408, 400).
    """

    def __init__(self, request: Request, timeout: float | None) -> None:
        self._pieces = request.stream()
        self.timeout = timeout
        self.failure: GatewayError | None = None

    async def next_piece(self) -> bytes | None:
        """The next non-empty piece, or None at the end of the body."""
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    piece = await anext(self._pieces)
            except StopAsyncIteration:
                return None
            except TimeoutError:
                self.failure = ClientBodyTimeout(f"the client sent nothing of its request body for {self.timeout:g} seconds")
                raise self.failure from None
            except ClientDisconnect:
                self.failure = BadRequest("client disconnected while sending the body", code="client_disconnected")
                raise self.failure from None
            if piece:
                return piece

    async def read(self, limit: int) -> tuple[bytes, bool]:
        """The body if it is at most `limit` bytes, with True; else the first pieces (past `limit`), with False."""
        pieces: list[bytes] = []
        size = 0
        while (piece := await self.next_piece()) is not None:
            pieces.append(piece)
            size += len(piece)
            if size > limit:
                return b"".join(pieces), False
        return b"".join(pieces), True

    async def rest(self, head: bytes) -> AsyncIterator[bytes]:
        """`head` (what `read` returned), then the rest of the body as it arrives."""
        if head:
            yield head
        while (piece := await self.next_piece()) is not None:
            yield piece


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The whole request body, refused with 413 past `limit` bytes (checked before and while reading)
    and with 408 when the client stalls `timeout` seconds mid-body."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        except ValueError:
            raise BadRequest("invalid Content-Length header") from None
    body, whole = await ClientBody(request, timeout).read(limit)
    if not whole:
        raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
    return body


def json_object(body: bytes) -> dict[str, Any]:
    """`body` parsed as a JSON object, else a 400 `invalid_json` saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    return payload
