"""What an extractor is: messages of one exchange in, candidate memories about the user out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, Sequence

from gateway.memory.linebreaks import LINE_BREAK_CLASS
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


# A role prefix ("system:", "### Assistant:") at the start of the text or of any line, whatever line
# break a tokenizer or client honours. Its decoration never crosses a line break, so a run of breaks is
# scanned once from its last break, not once from each.
_ROLE_PREFIX = rf"(?:^|[{LINE_BREAK_CLASS}])(?:[#>*\-]|[^\S{LINE_BREAK_CLASS}])*+(system|assistant|developer)\s*+:"

# Text aimed at the model rather than describing the user. Shared by every write path (the
# extraction pipeline and the admin add): such text is never stored as an ordinary memory.
# Every quantifier over whitespace is possessive or bounded, so each search is linear in the text; and
# the patterns are searched one by one, so a thread checking a long text holds the GIL (and keeps the
# event loop waiting) for one short search at a time, never for all of them at once.
_INSTRUCTIONS: tuple[re.Pattern[str], ...] = tuple(re.compile(pattern, re.I) for pattern in (
    r"\b(ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}\b(previous|prior|above|earlier|all|any|your|the)\b[^.!?\n]{0,20}\b(instructions?|prompts?|rules|messages|guidelines|context)\b",
    r"\bnew\s++instructions?\b",
    r"\bsystem\s++(prompt|message)\b",
    r"\byou\s++(are\s++now|must|will\s++always|will\s++never|should\s++always|should\s++never|have\s++to)\b",
    r"\b(from\s++now\s++on|henceforth)\b[^.!?\n]{0,30}\b(you|always|never|respond|reply|answer|say|only)\b",
    r"^\W*+(always|never)\s++(respond|reply|answer|say|mention|output|include|use|tell|reveal|call|write|start|end)\b",
    r"^\W*+(respond|reply|answer|output|print|say|act|pretend|behave|do\s++not|don't)\b",
    r"\b(act|behave)\s++as\b|\bpretend\s++(to\s++be|you)\b|\broleplay\s++as\b",
    r"\b(reveal|print|leak|show)\b[^.!?\n]{0,30}\b(password|secret|api\s*+key|credentials?|prompt)\b",
    r"\bjailbreak\b|\bdeveloper\s++mode\b",
    r"<\s*+(?:/\s*+)?(system|instructions?|im_start|im_end|memgate)",
    r"<\|\s*+(im_start|im_end|system|endoftext|start_header_id|eot_id)\b|\[/?INST\]",
    _ROLE_PREFIX,
    r"\b(ignore|disregard|forget)\s++(everything|anything|all)\s++(above|before|else|previous|prior)\b",
    r"\bnew\s++(task|rules?|role|persona|system\s++prompt)\s*+:",
    r"\b(the\s++)?(assistant|model|AI)\s++(must|should|will)\s++(always|never|ignore|obey)\b",
    r"\bwants?\s++(you|the\s++assistant|the\s++model)\s++to\s++(ignore|disregard|always|never|reveal|obey)\b",
))


def looks_like_instruction(text: str) -> bool:
    """True when `text` reads as a command to the model, not a fact about the user."""
    return any(pattern.search(text) for pattern in _INSTRUCTIONS)


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
