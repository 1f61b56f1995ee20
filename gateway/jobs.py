"""What an extraction job holds: one exchange's new turn, as the extractor will read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .exchange import Reply, well_formed
from .extract import Message

MAX_TEXT = 8000  # characters kept per message: facts live in what people write, not in pasted logs


@dataclass
class Job:
    id: int
    tenant: str
    user: str
    agent: str | None
    session: str | None
    rule: str
    extractor: str
    roles: tuple[str, ...]
    messages: list[Message]
    reply: str
    request_id: str
    created_at: float
    attempts: int = 0
    api_key: str = field(default="", repr=False)  # in memory only; "" after a restart


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def job_messages(payload: dict[str, Any], reply: Reply, roles: tuple[str, ...]) -> list[Message]:
    """The new turn of an exchange: messages after the last assistant turn (sources when their role
    is in `roles`), that assistant turn as context, and the reply when `assistant` is a source role."""
    given = payload.get("messages")
    messages = [m for m in given if isinstance(m, dict)] if isinstance(given, list) else []
    start = 0
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "assistant":
            start = index
            break
    out = []
    for m in messages[start:]:
        role, text = str(m.get("role")), well_formed(_text(m.get("content"))).strip()
        if not text:
            continue
        if role == "assistant":
            out.append(Message("assistant", text[:MAX_TEXT], source=False))
        elif role in roles:
            out.append(Message(role, text[:MAX_TEXT]))
    if "assistant" in roles and reply.content.strip():
        out.append(Message("assistant", well_formed(reply.content[:MAX_TEXT])))
    return out
