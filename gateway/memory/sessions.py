"""Session summaries: every N user turns a session's running summary is rewritten, off the request path, as
one memory of kind "summary"; the user's previous session's summary opens the core profile of the next.

The summary is extractive and offline: the user's sentences that carry the conversation's most frequent
terms, in the order they were said. Being a memory, it is scoped, listed, searched, exported, forgotten
and expired like any other.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from typing import Any, Sequence

from gateway.exchange import content_texts, well_formed
from gateway.memory.excerpts import SENTENCE_CHARS, SENTENCE
from gateway.memory.keywords import terms
from gateway.memory.records import SUMMARY_KIND, Memory

SUMMARY_CHARS = 480  # a summary is at most this long: it rides in every next-session request's core profile
SUMMARY_SENTENCES = 4
PREFIX = "Last session, the user talked about: "
_NAMESPACE = uuid.UUID("6f0c5f5e-8a43-4a55-9d1c-6d656d676174")


def session_of(header: str | None, messages: Sequence[Any]) -> str:
    """The `X-Memory-Session-Id`, else a stable id for the conversation: a digest of its first user message,
    which a client resends unchanged every turn."""
    if header:
        return header
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    text = " ".join(content_texts(first.get("content"))) if first else ""
    return "conv-" + hashlib.sha256(well_formed(text).encode()).hexdigest()[:16]


def user_texts(messages: Sequence[Any]) -> list[str]:
    return [" ".join(content_texts(m.get("content"))) for m in messages if isinstance(m, dict) and m.get("role") == "user"]


def due(messages: Sequence[Any], every: int) -> bool:
    """Whether this request completes a multiple of `every` user turns (0: never)."""
    return every > 0 and (turns := len(user_texts(messages))) > 0 and turns % every == 0


def summarize(texts: Sequence[str]) -> str:
    """Up to SUMMARY_SENTENCES of the user's sentences, those sharing the conversation's most frequent terms
    first, kept in the order they were said, within SUMMARY_CHARS; "" when there is nothing to say."""
    sentences = [s.group().strip()[:SENTENCE_CHARS] for text in texts for s in SENTENCE.finditer(well_formed(text))]
    sentences = [s for s in sentences if len(s) > 12]
    frequency = Counter(t for s in sentences for t in set(terms(s)))
    scored = sorted(range(len(sentences)), key=lambda i: -sum(frequency[t] for t in set(terms(sentences[i]))) / (1 + len(terms(sentences[i])) ** 0.5))
    chosen: list[int] = []
    size = len(PREFIX)
    for i in scored:
        if len(chosen) == SUMMARY_SENTENCES:
            break
        if sentences[i] not in (sentences[j] for j in chosen) and size + len(sentences[i]) + 1 <= SUMMARY_CHARS:
            chosen.append(i)
            size += len(sentences[i]) + 1
    return PREFIX + " ".join(sentences[i] for i in sorted(chosen)) if chosen else ""


def summary_id(tenant: str, user: str, agent: str | None, session: str) -> str:
    """One summary memory per session of a user (and agent): its id is derived, so a rewrite updates it."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((tenant, user, agent or "", session))))


def previous_summary(memories: Sequence[Memory], agent: str | None, session: str) -> Memory | None:
    """The most recently written summary of another session of this agent (or of the user, without one)."""
    found = [m for m in memories if m.kind == SUMMARY_KIND and m.session_id != session and m.agent_id == agent and not m.flagged]
    return max(found, key=lambda m: m.updated_at, default=None)
