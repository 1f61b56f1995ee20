"""What the proxy needs to know about one API: where identity, prompt and reply sit in its JSON and SSE."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.exchange import Reply
from gateway.memory.overflow import Group, Trimming, Unit, item_units
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

    def trimming(self, payload: dict[str, Any]) -> Trimming | None:
        """How fitting trims this request when it overflows its window; None when it carries no history to trim."""
        return None

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


# An adapter's view messages, each with the position of the item it comes from (None: the request's system text).
Viewed = Callable[[dict[str, Any]], list[tuple[int | None, dict[str, Any]]]]


class ItemTrimming(Trimming):
    """A request whose history is the list `payload[field]`: the adapter supplies its view messages with the item
    each comes from (`viewed`) and its grouping of the items; dropped view messages drop their items, and the
    summary goes where the adapter puts memories with placement "system"."""

    def __init__(self, api: Api, payload: dict[str, Any], field: str, viewed: Viewed, groups: Callable[[list[Any]], list[Group]]) -> None:
        self.api, self.payload, self.field = api, payload, field
        self._viewed, self._groups = viewed, groups  # used only when the request overflows

    @cached_property
    def origins(self) -> list[int | None]:
        return [origin for origin, _ in self._viewed(self.payload)]

    def units(self, messages: Sequence[Any]) -> list[Unit]:
        return item_units(self.origins, self._groups(self.payload[self.field]))

    def rebuild(self, dropped: Sequence[int]) -> dict[str, Any]:
        gone = {self.origins[i] for i in dropped}
        return {**self.payload, self.field: [item for j, item in enumerate(self.payload[self.field]) if j not in gone]}

    def items(self, dropped: Sequence[int]) -> int:
        return len({self.origins[i] for i in dropped})

    def appends(self, payload: dict[str, Any]) -> bool:
        return self.api.appends(payload, "system")

    def insert(self, payload: dict[str, Any], block: str) -> dict[str, Any] | None:
        return self.api.insert(payload, block, "system")
