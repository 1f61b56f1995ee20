"""What one chat request carries between the proxy and the memory layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from gateway.identity import Identity
from gateway.rules import RuleSettings

MODES = ("off", "read", "write", "read-write")


@dataclass
class ChatContext:
    """One chat request as the memory layer sees it. Mutable: recall records what it injected."""

    request_id: str
    identity: Identity
    rule_name: str
    rule: RuleSettings
    model: str
    read: bool  # recall and inject
    write: bool  # capture and extract
    # The caller's key, kept in memory only for an `llm` extractor without its own key.
    api_key: str = field(default="", repr=False)
    memory_status: str = "off"  # ok | off | timeout | degraded
    api: str = "chat"  # chat | responses | messages: the `api` metric label
    injected: int = 0
    injected_tokens: int = 0
    trace_parent: str = ""  # W3C traceparent of the request's span when tracing is on: its extraction job links to it
    trimmed_messages: int = 0  # messages left out to fit the context window (overflow = "fit")
    trimmed_tokens: int = 0


@dataclass
class Reply:
    """The assistant's side of a completed exchange, captured from JSON or assembled from SSE deltas."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


class MemoryLayer(Protocol):
    """What the proxy asks of memory. Both calls fail open: they never raise into the request."""

    async def recall_block(
        self, ctx: ChatContext, view: dict[str, Any], appends: Callable[[dict[str, Any] | None], bool], *, trimming: Any
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Size the chat-shaped `view` against the model's context window (trimmed by `trimming`, a
        gateway.memory.overflow.Trimming, when not None and it overflows), then the memory block for it, led by the
        separator when `appends(trimmed request or None)`: (trimmed request in the API's JSON or None, block or None)."""

    async def capture(self, ctx: ChatContext, payload: dict[str, Any], reply: Reply) -> None:
        """Durably enqueue the exchange for extraction."""


def content_texts(content: Any) -> list[str]:
    """The text pieces of a chat message's `content`: the string itself, or each part's string `text`."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):  # content parts: images, audio and files carry no `text`
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def well_formed(text: str) -> str:
    """`text` with lone surrogates (a JSON escape like \\ud800 that is not Unicode) replaced by U+FFFD,
    so embedders, tokenizers and SQLite can take it."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def memory_modes(header: str | None, rule: RuleSettings) -> tuple[bool, bool]:
    """(read, write) allowed for a request: the `X-Memory-Mode` header narrows what the rule allows."""
    mode = (header or "read-write").strip().lower()
    if mode not in MODES:
        raise ValueError(mode)
    read = mode in ("read", "read-write") and rule.inject
    write = mode in ("write", "read-write") and rule.extract
    return read, write
