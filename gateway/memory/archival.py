"""The archival tier: every user turn of a learned exchange kept verbatim as an episode.

A turn made only of questions is not kept (it tells nothing about the user, and the next question
would find it rather than what the user said). An episode is a memory with tier `archival`, kind `note`: the user's own words, dated, scoped like any
memory (tenant, user, agent, session), capped at MAX_EPISODE_CHARS. Its id derives from the user, the
agent and the turn's normalised text, so saying the same thing again (or replaying a job) adds no row.
Secrets are masked and instruction-like turns flagged by the memory service, as for every memory.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Sequence

from gateway.memory.keywords import terms
from gateway.memory.records import Memory

NAMESPACE = uuid.UUID("0b6c3f0e-7d51-4a0c-9a57-1f3e0c2b8d94")
# An episode is a turn, not a pasted document: the first this many characters are kept (at a word break).
MAX_EPISODE_CHARS = 1000
ELLIPSIS = "…"
# Turns that only acknowledge ("ok thanks", "great!") say nothing about the user (stemmed like `terms`).
ACKNOWLEDGEMENTS = frozenset("ok okay thank thanks ty yes yeah yep yup no nope sure great cool nice lol hi hello hey bye perfect awesome got".split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s++")


def only_questions(text: str) -> bool:
    """True when every sentence of the turn asks (ends in '?'): a question asks, it tells nothing."""
    return all(part.rstrip().endswith("?") for part in _SENTENCE_END.split(text.strip()) if part.strip())


def normalised(text: str) -> str:
    """Equal for restatements differing only in case, spacing and punctuation."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())


def episode_id(tenant: str, user: str, agent: str | None, text: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join((tenant, user, agent or "", normalised(text)))))


def capped(text: str) -> str:
    """The turn, cut at a word break to at most MAX_EPISODE_CHARS characters (ellipsis included)."""
    text = text.strip()
    if len(text) <= MAX_EPISODE_CHARS:
        return text
    head = text[: MAX_EPISODE_CHARS - len(ELLIPSIS)]
    cut = head.rfind(" ")
    return (head[:cut] if cut > MAX_EPISODE_CHARS // 2 else head).rstrip() + ELLIPSIS


def episodes(
    tenant: str, user: str, agent: str | None, session: str | None, turns: Sequence[str], request_id: str, when: float,
) -> list[Memory]:
    """One episode per distinct user turn that tells something: more than an acknowledgement ("ok thanks"), and not
    only questions (the user's next question would find their last one, not what they said)."""
    out: dict[str, Memory] = {}
    for turn in turns:
        if only_questions(turn):
            continue
        text = capped(turn)
        if set(terms(text)) <= ACKNOWLEDGEMENTS:
            continue
        mid = episode_id(tenant, user, agent, text)
        out.setdefault(mid, Memory(id=mid, tenant=tenant, user_id=user, text=text, kind="note", agent_id=agent, session_id=session,
                                   created_at=when, updated_at=when, confidence=1.0, source_request_id=request_id, tier="archival"))
    return list(out.values())


def source_of(statement: str, candidates: Sequence[Memory]) -> str | None:
    """The id of the episode a derived statement most likely came from: most content words shared
    (the only one, when there is one); None when none shares a word."""
    if len(candidates) == 1:
        return candidates[0].id
    wanted = Counter(terms(statement))
    best, score = None, 0
    for episode in candidates:
        shared = sum((wanted & Counter(terms(episode.text))).values())
        if shared > score:
            best, score = episode.id, shared
    return best
