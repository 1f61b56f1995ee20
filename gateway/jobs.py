"""What an extraction job holds (one exchange's new turn, as the extractor will read it) and its row
in the SQLite `jobs` table."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from .exchange import ChatContext, Reply, well_formed
from .extract import Message

MAX_TEXT = 8000  # characters kept per message: facts live in what people write, not in pasted logs
INSERT_JOB = ("INSERT INTO jobs (tenant, user_id, agent_id, session_id, rule, extractor, roles, messages, reply, request_id, created_at)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?)")


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


def job_row(ctx: ChatContext, extractor: str, roles: tuple[str, ...], messages: list[Message], reply: Reply, now: float) -> tuple[Any, ...]:
    """The INSERT_JOB parameters (the caller's API key is not among them: it never reaches disk)."""
    return (ctx.identity.tenant, ctx.identity.user, ctx.identity.agent, ctx.identity.session, ctx.rule_name, extractor, json.dumps(roles),
            json.dumps([[m.role, m.text, m.source] for m in messages], ensure_ascii=False), well_formed(reply.content[:MAX_TEXT]),
            ctx.request_id, now)


def job_from_row(r: sqlite3.Row, api_key: str) -> Job:
    return Job(r["id"], r["tenant"], r["user_id"], r["agent_id"], r["session_id"], r["rule"], r["extractor"], tuple(json.loads(r["roles"])),
               [Message(role, text, bool(source)) for role, text, source in json.loads(r["messages"])], r["reply"], r["request_id"],
               r["created_at"], r["attempts"], api_key)
