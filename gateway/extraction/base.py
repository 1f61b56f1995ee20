"""What an extractor is: messages of one exchange in, candidate memories about the user out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from gateway.memory.records import KINDS


@dataclass(frozen=True)
class Message:
    """One turn as the extractor sees it. `source=False` marks context only (e.g. the assistant
    turn the user was answering), which may explain an acceptance but is never itself a memory."""

    role: str
    text: str
    source: bool = True


@dataclass(frozen=True)
class Candidate:
    """A short third-person statement about the user, before reconciliation with the store."""

    text: str
    kind: str = "fact"
    confidence: float = 0.8


class Extractor(Protocol):
    name: str

    async def extract(self, messages: Sequence[Message], reply: str) -> list[Candidate]:
        """Candidate memories from the source messages; `reply` is the assistant's answer, as context."""


class ExtractionError(Exception):
    """The extractor could not produce an answer this time (the job is retried with backoff)."""


def clean_candidate(text: str, kind: str, confidence: float) -> Candidate | None:
    """Normalise an extractor's output (kind in the known set, confidence in [0, 1], one line)."""
    text = " ".join(str(text).split()).strip().rstrip(".")
    if not text or len(text) > 300:
        return None
    kind = kind if kind in KINDS else "fact"
    try:
        confidence = min(1.0, max(0.0, float(confidence)))
    except (TypeError, ValueError):
        confidence = 0.5
    return Candidate(text[0].upper() + text[1:], kind, confidence)
