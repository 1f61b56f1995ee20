"""The offline extractor: first-person statements of facts, preferences, plans, decisions and identity,
rewritten as short third-person statements ("I prefer Terraform" -> "User prefers Terraform").

It is deliberately conservative: questions, hypotheticals, requests about the task at hand, quoted text
and anything instruction-like are skipped, and the assistant's suggestions count only when the user's
whole reply accepts one. The sentence shapes live in `patterns`, the fallback for plain clauses in
`clauses`, standing requests about answers in `answers`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Sequence

from gateway.extraction.answers import answer_preference
from gateway.extraction.base import Candidate, Message
from gateway.extraction.clauses import clause
from gateway.extraction.patterns import RULES, TRANSIENT, Found
from gateway.extraction.rewrite import obj, without_tail
from gateway.memory.linebreaks import LINE_BREAK_CLASS
from gateway.memory.poisoning import looks_like_instruction

# Sentence and clause boundaries. Whitespace runs are matched possessively and only from their first
# character, so splitting is linear in the text (a run of 8,000 spaces is one step, not 32 million).
_SPLIT = re.compile(
    rf"(?<=[.!?;])\s++|[{LINE_BREAK_CLASS}]++|,\s*+(?:(?:and|but|so)\s++)?(?=(?:I|I'm|I've|we|We|we're|my|My|our)\b)"
    r"|(?<!\s)\s++(?:and|but)\s++(?=(?:now |then |also )?(?:I|I'm|I've|my|My)\b)"
)
_FILLER = re.compile(
    r"^(?:(?:actually|also|btw|by the way|fyi|oh|and|but|so|well|anyway|honestly|for the record|for context|"
    r"just so you know|note that|to be clear|please remember(?: that)?|remember(?: that)?|keep in mind(?: that)?|"
    r"hi|hello|hey|ok|okay|yes|yeah|no|nope|now|these days|nowadays|lately|currently|at the moment|right now|fwiw|sadly|luckily|"
    r"fortunately|unfortunately)\b[,!:]?\s*)+",
    re.I,
)
_QUESTION = re.compile(r"\?\s*$|^(?:do|does|did|can|could|should|would|will|what|what's|whats|how|why|is|are|am|which|who|where|when|shall|may)\b", re.I)
_HYPOTHETICAL = re.compile(r"\b(?:if|suppose|supposing|imagine|hypothetically|assuming|unless|might|could|maybe|perhaps|wonder(?:ing)?|would(?! prefer| rather| like to))\b", re.I)
_ACCEPT = re.compile(
    r"^(?:yes|yeah|yep|sure|ok|okay|great|perfect|sounds good|that works|deal|agreed|let's do (?:that|it)|"
    r"let's go with (?:that|it|this)|i'll (?:go with|take|use) (?:that|it|this|your suggestion))\b",
    re.I,
)
_SUGGESTION = re.compile(
    r"\b(?:i (?:would )?(?:suggest|recommend)|i'd (?:suggest|recommend|go with)|you (?:could|should|might) (?:use|try|go with)|"
    r"how about|consider)\s+(?:using\s+|that you use\s+|trying\s+)?(?P<x>[^.?!,\n]{2,60})",
    re.I,
)
# A statement that points at the conversation ("I use this", "I have the following") is not self-contained.
_DEICTIC = re.compile(
    r"\b(?:this|these|those)\b(?!\s+(?:year|month|week|quarter|summer|winter|spring|fall|autumn|weekend|time))|\b(?:it|here|below|above|following)\b", re.I
)
_VAGUE = re.compile(r"^(?:a bit|a little|a lot|a fan of this|an idiot)\b", re.I)
# Said with a roll of the eyes: "yeah right, I'm a genius", "oh great, I just love when my build breaks".
_SARCASM = re.compile(r"^(?:yeah,? right|oh,? (?:great|sure|joy|wonderful|fantastic|i just (?:love|adore))|wow,? i (?:just )?love)\b", re.I)
# Something about this moment ("a meeting in 5 minutes", "tonight"): stale before it could be recalled.
_MOMENT = re.compile(r"\b(?:today|tonight|this (?:morning|afternoon|evening)|right now|in (?:a|an|\d+|a few) (?:seconds?|minutes?|hours?))\b", re.I)
_QUOTES = re.compile(r"[\"\u201c\u201d]")
MAX_OBJECT_WORDS = 12


def _statements(text: str) -> list[str]:
    """Sentences and clauses, each with its whitespace collapsed to single spaces (so no rule ever
    sees a run of it)."""
    return [" ".join(part.split()) for part in _SPLIT.split(text) if part and not part.isspace()]


def _from_sentence(sentence: str) -> Found | None:
    sentence = sentence.replace("\u2019", "'")
    if len(_QUOTES.findall(sentence)) % 2 or _SARCASM.match(sentence):
        return None  # a piece of quoted text ("The lyric goes "I'm a creep, I'm a weirdo"") or a sneer
    wanted = answer_preference(_FILLER.sub("", sentence))
    if wanted is not None:
        return wanted, "preference", 0.85
    if looks_like_instruction(sentence) or _QUESTION.search(sentence):
        return None
    sentence = _FILLER.sub("", sentence).strip().rstrip(".!;")
    if not sentence or _QUESTION.search(sentence) or _HYPOTHETICAL.search(sentence) or len(sentence.split()) > 30:
        return None
    for pattern, build in RULES:
        match = pattern.match(sentence)
        if match:
            return _checked(build(match), match.groupdict().get("x") or "")
    generic = clause(sentence)
    # A plain clause is the least certain shape: the whole statement, afterthought included, must not point at the conversation.
    return None if generic is None or _DEICTIC.search(sentence) else _checked(generic, generic[0])


def _checked(found: Found | None, value: str) -> Found | None:
    """`found` unless it is too short or long, instruction-like, or about the conversation rather than the user."""
    if found is None or not 2 <= len(found[0].split()) <= MAX_OBJECT_WORDS + 3 or looks_like_instruction(found[0]):
        return None
    value = without_tail(value)
    if _DEICTIC.search(value) or _VAGUE.match(value) or _MOMENT.search(value) or "the assistant" in found[0]:
        return None
    if found[0].startswith("User has ") and (TRANSIENT - {"bad", "guess", "pleasure"}) & set(value.lower().split()):
        return None
    return found


def _accepted_suggestion(user_text: str, context: Sequence[Message]) -> Candidate | None:
    """"Sounds good, let's do that" after "I'd suggest Postgres" -> the user decided on Postgres."""
    if not _ACCEPT.match(user_text.strip()) or len(user_text.split()) > 12:
        return None
    for message in reversed(context):
        if message.role == "assistant":
            match = _SUGGESTION.search(message.text)
            if match:
                return Candidate(f"User decided to use {obj(match['x']).strip()}", "decision", 0.6)
            return None
    return None


class HeuristicExtractor:
    name = "heuristic"

    async def extract(self, messages: Sequence[Message], reply: str) -> list[Candidate]:
        # Pattern matching over up to 8,000 characters a message is CPU work: never on the event loop.
        return await asyncio.to_thread(extract_statements, messages)


def extract_statements(messages: Sequence[Message]) -> list[Candidate]:
    """Candidates from the user-role source messages, in order, without repeats."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for index, message in enumerate(messages):
        if not message.source or message.role != "user":
            continue
        found: list[Candidate] = []
        accepted = _accepted_suggestion(message.text, messages[:index])
        if accepted is not None:
            found.append(accepted)
        sneer = False
        for sentence in _statements(message.text):
            result = None if sneer else _from_sentence(sentence)
            sneer = bool(_SARCASM.match(sentence))  # "Yeah right, I'm a genius": the clause after it is not meant
            if result is not None:
                text, kind, confidence = result
                found.append(Candidate(text[0].upper() + text[1:], kind, confidence))
        for candidate in found:
            key = candidate.text.lower()
            if key not in seen:
                seen.add(key)
                out.append(candidate)
    return out
