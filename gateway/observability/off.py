"""Tracing off: every hook is a no-op, and nothing of OpenTelemetry is imported."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Collection, ContextManager, Sequence

if TYPE_CHECKING:
    from starlette.middleware import Middleware

    from gateway.exchange import ChatContext

NOTHING: ContextManager[None] = contextlib.nullcontext()


class NoUpstreamCall:
    """The upstream call of a request when tracing is off: headers go out as they are."""

    def start(self, model: str, url: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return headers

    def end(self, status: int | None = None, *, body: bytes | None = None, encoding: str = "", error: BaseException | str | None = None) -> None:
        """Close the call: its status, the JSON answer (read for usage), or what failed (an exception or an error type)."""


NO_CALL = NoUpstreamCall()


class NoTracing:
    """Tracing off: no middleware, no spans, no header added."""

    enabled = False

    def middleware(self) -> list[Middleware]:
        return []

    def bind(self, ctx: ChatContext) -> None:
        pass

    def search_memory(self, ctx: ChatContext, payload: dict[str, Any]) -> ContextManager[None]:
        return NOTHING

    def upstream_call(self) -> NoUpstreamCall:
        return NO_CALL

    def outgoing(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return headers

    def memory_change(self, operation: str, links: Collection[str], texts: Sequence[str]) -> ContextManager[None]:
        return NOTHING

    def shutdown(self) -> None:
        pass
