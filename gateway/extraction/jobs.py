"""What an extraction job holds (one exchange's new turn, as the extractor will read it) and its row
in the SQLite `jobs` table."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.exchange import ChatContext, Reply, content_texts, well_formed
from gateway.extraction.base import Message

MAX_TEXT = 8000  # characters kept per message: facts live in what people write, not in pasted logs
INSERT_JOB = ("INSERT INTO jobs (tenant, user_id, agent_id, session_id, rule, extractor, roles, messages, reply, request_id, created_at, trace_parent)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


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
    trace_parent: str = ""  # W3C traceparent of the request that queued it; "" when it was not traced


@dataclass(frozen=True)
class JobBounds:
    """What one exchange may cost the queue: its newest messages, up to a count and a size."""

    max_messages: int
    max_bytes: int  # UTF-8 bytes of message text


def _utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of `text` that fits `limit` UTF-8 bytes (never half a character)."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def job_messages(payload: dict[str, Any], reply: Reply, roles: tuple[str, ...], bounds: JobBounds) -> tuple[list[Message], int]:
    """The new turn of an exchange: messages after the last assistant turn (sources when their role
    is in `roles`), that assistant turn as context, and the reply when `assistant` is a source role.
    Of the request's messages only the newest within `bounds` are kept. Returns the messages, oldest
    first, and how many were cut."""
    given = payload.get("messages")
    messages = given if isinstance(given, list) else []
    newest_first: list[Message] = []
    size = cut = 0
    # Newest first, so a 10,000-message chat costs the same text work as one within the bounds.
    for m in reversed(messages):
        if not isinstance(m, dict):
            continue
        role = str(m.get("role"))
        if role != "assistant" and role not in roles:
            continue
        if len(newest_first) >= bounds.max_messages or size >= bounds.max_bytes:
            cut += 1
        elif text := well_formed(" ".join(content_texts(m.get("content")))).strip()[:MAX_TEXT]:
            if newest_first and size + len(text.encode("utf-8")) > bounds.max_bytes:
                cut += 1
                size = bounds.max_bytes  # the kept messages stay contiguous: nothing older either
            else:
                text = _utf8_prefix(text, bounds.max_bytes - size)  # only the newest message alone can be over: keep its start
                size += len(text.encode("utf-8"))
                newest_first.append(Message(role, text, source=role != "assistant"))
        if role == "assistant":
            break  # the new turn starts after the last assistant turn, which is kept as context
    kept = newest_first[::-1]
    if "assistant" in roles and reply.content.strip():  # bounded by MAX_TEXT alone: the bounds are for what the caller sends
        kept.append(Message("assistant", well_formed(reply.content[:MAX_TEXT])))
    return kept, cut


def job_row(ctx: ChatContext, extractor: str, roles: tuple[str, ...], messages: list[Message], reply: Reply, now: float) -> tuple[Any, ...]:
    """The INSERT_JOB parameters (the caller's API key is not among them: it never reaches disk)."""
    return (ctx.identity.tenant, ctx.identity.user, ctx.identity.agent, ctx.identity.session, ctx.rule_name, extractor, json.dumps(roles),
            json.dumps([[m.role, m.text, m.source] for m in messages], ensure_ascii=False), well_formed(reply.content[:MAX_TEXT]),
            ctx.request_id, now, ctx.trace_parent)


def job_from_row(r: sqlite3.Row, api_key: str) -> Job:
    return Job(r["id"], r["tenant"], r["user_id"], r["agent_id"], r["session_id"], r["rule"], r["extractor"], tuple(json.loads(r["roles"])),
               [Message(role, text, bool(source)) for role, text, source in json.loads(r["messages"])], r["reply"], r["request_id"],
               r["created_at"], r["attempts"], api_key, r["trace_parent"])
