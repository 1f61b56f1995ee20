"""What the proxy needs to know about one API: where identity, prompt and reply sit in its JSON and SSE."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.exchange import Reply
from gateway.replies import SseCapture

PLACEMENTS = ("system", "tail")  # the `placement` rule field


class Api:
    """The chat-completions-shaped view of a request is what recall, budgets and extraction read; the
    adapter maps its own JSON to that view and puts the rendered memory block back into its own JSON."""

    name = ""
    # Whether the caller's key may ride on the `llm` extractor's calls to the main upstream.
    lends_key = True

    def identity_fields(self, payload: dict[str, Any]) -> Mapping[str, Any]:
        """The body fields `identify` reads the end user from (`user`, `safety_identifier`)."""
        return payload

    def view(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The request as chat completions: `messages` (roles system, user, assistant, tool), `tools`, `max_tokens`."""
        raise NotImplementedError

    def appends(self, payload: dict[str, Any], placement: str) -> bool:
        """Whether the block will follow existing text of the same field (so it is led by a separator)."""
        raise NotImplementedError

    def insert(self, payload: dict[str, Any], block: str, placement: str) -> dict[str, Any] | None:
        """A copy of the payload carrying `block`, or None when the request has no place for it."""
        raise NotImplementedError

    def reply_from_json(self, raw: bytes, content_encoding: str) -> Reply | None:
        """The answer of a complete JSON response, or None (not one, failed, unfinished)."""
        raise NotImplementedError

    def stream_capture(self) -> SseCapture:
        raise NotImplementedError

    def error(self, exc: GatewayError, headers: dict[str, str]) -> Response:
        """The gateway's own error, in this API's shape."""
        return exc.response(headers)


def latest_index(items: list[Any], is_user: Any) -> int | None:
    """The index of the last item `is_user` accepts, or None."""
    for index in range(len(items) - 1, -1, -1):
        if is_user(items[index]):
            return index
    return None
