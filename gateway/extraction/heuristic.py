"""The offline extractor: first-person statements of facts, preferences, plans, decisions and identity,
rewritten as short third-person statements ("I prefer Terraform" -> "User prefers Terraform").

It is deliberately conservative: questions, hypotheticals, requests and anything instruction-like are
skipped, and the assistant's suggestions count only when the user's whole reply accepts one.
"""

from __future__ import annotations

import asyncio
import re
from typing import Callable, Sequence

from gateway.extraction.base import Candidate, Message
from gateway.memory.linebreaks import LINE_BREAK_CLASS
from gateway.memory.poisoning import looks_like_instruction

# Sentence and clause boundaries. Whitespace runs are matched possessively and only from their first
# character, so splitting is linear in the text (a run of 8,000 spaces is one step, not 32 million).
_SPLIT = re.compile(
    rf"(?<=[.!?;])\s++|[{LINE_BREAK_CLASS}]++|,\s*+(?:(?:and|but|so)\s++)?(?=(?:I|I'm|I've|we|We|we're|my|My|our)\b)"
    r"|(?<!\s)\s++(?:and|but)\s++(?=(?:I|I'm|I've|my|My)\b)"
)
_FILLER = re.compile(
    r"^(?:(?:actually|also|btw|by the way|fyi|oh|and|but|so|well|anyway|honestly|for the record|for context|"
    r"just so you know|note that|to be clear|please remember(?: that)?|remember(?: that)?|keep in mind(?: that)?|"
    r"hi|hello|hey|ok|okay|yes|yeah|no|nope)\b[,!:]?\s*)+",
    re.I,
)
_QUESTION = re.compile(r"\?\s*$|^(?:do|does|did|can|could|should|would|will|what|what's|whats|how|why|is|are|am|which|who|where|when|shall|may)\b", re.I)
_HYPOTHETICAL = re.compile(r"\b(?:if|suppose|supposing|imagine|hypothetically|assuming|unless|might|could|maybe|perhaps|wonder(?:ing)?|would(?! prefer| rather| like to))\b", re.I)
# The start of a reason or afterthought ("..., because ...", "... and I ..."): cut by `_without_tail`.
_TAIL = re.compile(r"[\s,](?:because|since|but|so that|though|although|and (?:I|I'm|getting|having|trying|seeing|it|now|then|when))\b", re.I)
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
_PRONOUNS = [
    (re.compile(r"\bI'm\b"), "they're"), (re.compile(r"\bI\b"), "they"), (re.compile(r"\bmy\b", re.I), "their"),
    (re.compile(r"\bmine\b", re.I), "theirs"), (re.compile(r"\bmyself\b", re.I), "themselves"), (re.compile(r"\bme\b", re.I), "them"),
    (re.compile(r"\bour\b", re.I), "their"), (re.compile(r"\bus\b"), "them"), (re.compile(r"\bwe\b", re.I), "they"),
    (re.compile(r"\byou\b", re.I), "the assistant"), (re.compile(r"\byour\b", re.I), "the assistant's"),
]
_ING = {"using": "use", "eating": "eat", "drinking": "drink", "working": "work", "living": "live", "smoking": "smoke", "playing": "play", "driving": "drive"}
_NOT_STATE = (
    "not|going|gonna|trying|looking|wondering|curious|sure|just|so|very|really|here|back|done|ready|sorry|glad|happy|afraid|thinking|"
    "asking|confused|stuck|having|getting|feeling|working|using|planning|about|on|in|at|still|tired|hungry|busy|fine|ok|okay|good|great|"
    "well|bored|new|interested|excited|testing|writing|building|reading|trying|migrating|moving|switching|based|able|unable|aware"
)

# "My code is broken", "my question is...": about the task at hand, not the user.
_TRANSIENT = frozenset(
    "question questions problem issue code error errors bug point guess bad pleasure function script query test tests build program output "
    "result results answer request data file files class method list table repo dataset dataframe project snippet loop array string "
    "variable column row endpoint app page server site website".split()
)
# A statement that points at the conversation ("I use this", "I have the following") is not self-contained.
_DEICTIC = re.compile(
    r"\b(?:this|these|those)\b(?!\s+(?:year|month|week|quarter|summer|winter|spring|fall|autumn|weekend|time))|\b(?:it|here|below|above|following)\b", re.I
)
_VAGUE = re.compile(r"^(?:a bit|a little|a lot|a fan of this|an idiot)\b", re.I)
MAX_OBJECT_WORDS = 12

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, str, float] | None]]


def third_person(verb: str) -> str:
    verb = verb.lower()
    if verb == "have":
        return "has"
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(verb) > 2 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _without_tail(text: str) -> str:
    """`text` up to a trailing reason or afterthought, without the separator before it."""
    match = _TAIL.search(text)
    return text if match is None else text[: match.start()].rstrip().removesuffix(",").rstrip()


def _obj(text: str) -> str:
    text = _without_tail(text).strip().rstrip(".!;:,")
    for pattern, repl in _PRONOUNS:
        text = pattern.sub(repl, text)
    return text


def _subject(word: str) -> str:
    return "User's team" if word.lower() in ("we", "our") else "User"


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


# Rules read one statement with its whitespace collapsed (`_statements`): a single space is all they match,
# so none can try each split of a run of whitespace.
RULES: list[Rule] = [
    (re.compile(r"^(?:I'm|I am) (?P<x>[A-Z][a-z]+)$"), lambda m: (f"User's name is {m['x']}", "fact", 0.8)),
    (_r(r"^(?:my name is|my name's|i'm called|i am called) (?P<x>[\w'-]+(?: [A-Z][\w'-]*){0,2})$"), lambda m: (f"User's name is {m['x']}", "fact", 0.9)),
    (_r(r"^(?:please )?(?:call me|i go by|you can call me) (?P<x>[\w'-]+(?: [A-Z][\w'-]*)?)$"), lambda m: (f"User goes by {m['x']}", "preference", 0.9)),
    (_r(r"^(?P<s>i|we) (?:no longer|don't|do not|dont) (?P<v>[a-z]+) (?P<x>.+?) (?:anymore|any more)$"),
     lambda m: (f"{_subject(m['s'])} no longer {third_person(m['v'])} {_obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we) no longer (?P<v>[a-z]+) (?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} no longer {third_person(m['v'])} {_obj(m['x'])}", "fact", 0.85)),
    (_r(r"^(?P<s>i|we) (?:stopped|quit) (?P<v>[a-z]+ing) (?P<x>.+)$"),
     lambda m: (f"{_subject(m['s'])} no longer {third_person(_ING.get(m['v'].lower(), m['v'][:-3]))} {_obj(m['x'])}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'d| would)? (?:(?:now|still|really|definitely|generally|usually|much|strongly|also|always) )*prefer (?P<x>.+)$"),
     lambda m: (f"{_subject(m['s'])} prefers {_obj(m['x'])}", "preference", 0.9)),
    (_r(r"^(?P<s>i|we)(?:'d| would) rather (?:use )?(?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} prefers {_obj(m['x'])}", "preference", 0.8)),
    (_r(r"^i (?:really |also )?(?P<v>hate|dislike|can't stand|cannot stand|don't like|do not like) (?P<x>.+)$"), lambda m: (f"User dislikes {_obj(m['x'])}", "preference", 0.85)),
    (_r(r"^i (?:really |also )?(?P<v>like|love|enjoy|adore) (?P<x>.+)$"), lambda m: (f"User {third_person(m['v'])} {_obj(m['x'])}", "preference", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am)? (?:(?:now|currently) )?(?:live|living|reside|residing|(?:am |are )?based) in (?P<x>.+)$"),
     lambda m: (f"{_subject(m['s'])} lives in {_obj(m['x'])}", "fact", 0.9)),
    (_r(r"^(?P<s>i|we)(?:'ve| have)? (?:just )?(?:moved|relocated) to (?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} lives in {_obj(m['x'])}", "fact", 0.8)),
    (_r(r"^i(?:'m| am)? (?:(?:now|currently) )?work(?:ing)? (?P<p>at|for|as) (?P<x>.+)$"), lambda m: (f"User works {m['p'].lower()} {_obj(m['x'])}", "fact", 0.9)),
    (_r(r"^(?P<s>my|our) (?P<a>(?:[\w'-]+ ){0,3}?[\w'-]+) (?P<verb>is|are) (?P<x>.+)$"), lambda m: _attribute(m)),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am) (?:(?:currently|now|slowly|finally) )?(?P<v>migrating|moving|switching|transitioning|upgrading) (?P<x>(?:from|to|over|our|everything)\b.+)$"),
     lambda m: (f"{_subject(m['s'])} is {m['v'].lower()} {_obj(m['x'])}", "decision", 0.85)),
    (_r(r"^(?P<s>i|we)(?:'ve| have)? (?:finally )?(?:decided|agreed|chosen|chose) (?P<x>(?:to|on) .+)$"),
     lambda m: (f"{_subject(m['s'])} decided {_obj(m['x'])}", "decision", 0.85)),
    (_r(r"^(?P<s>i|we)(?:'re| are|'m| am|'ll| will) going with (?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} chose {_obj(m['x'])}", "decision", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'re| are|'m| am) (?:planning (?P<on>on|to)|going to|gonna|hoping to|aiming to) (?P<x>(?!be\b|ask\b|need\b|have\b|try\b|get\b).+)$"),
     lambda m: (f"{_subject(m['s'])} plans {(m['on'] or 'to').lower()} {_obj(m['x'])}", "goal", 0.7)),
    (_r(r"^(?P<s>i|we) (?:plan|intend) to (?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} plans to {_obj(m['x'])}", "goal", 0.8)),
    (_r(r"^(?P<s>i|we)(?:'re|'m| are| am) (?:(?:now|currently|mostly|mainly|also) )?using (?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} uses {_obj(m['x'])}", "fact", 0.8)),
    (_r(r"^(?P<s>i|we) (?:(?:now|currently|mostly|mainly|also|only) )?use (?P<x>.+)$"), lambda m: (f"{_subject(m['s'])} uses {_obj(m['x'])}", "fact", 0.8)),
    (_r(r"^i(?:'m| am) (?:(?:also|now|still|strictly|currently) )?(?P<x>(?:a|an) .+)$"), lambda m: (f"User is {_obj(m['x'])}", "fact", 0.85)),
    (_r(rf"^i(?:'m| am) (?:(?:also|now|still|strictly|currently) )?(?P<x>(?!(?:{_NOT_STATE})\b)[\w-]+(?: (?:to|of|with|from) [\w' -]+)?)$"),
     lambda m: (f"User is {_obj(m['x'])}", "fact", 0.8)),
    (_r(r"^i have (?P<x>(?:a|an|two|three|four|five|\d+) (?!question|problem|issue|bug|error|doubt|quick|few questions)\b.+)$"), lambda m: (f"User has {_obj(m['x'])}", "fact", 0.75)),
    (_r(r"^i speak (?P<x>.+)$"), lambda m: (f"User speaks {_obj(m['x'])}", "fact", 0.85)),
    (_r(r"^i (?P<f>always|usually|never|often|typically|mostly) (?P<v>[a-z]+) (?P<x>.+)$"),
     lambda m: (f"User {m['f'].lower()} {third_person(m['v'])} {_obj(m['x'])}", "preference", 0.75)),
]


def _attribute(m: re.Match[str]) -> tuple[str, str, float] | None:
    attribute = _obj(m["a"]).lower()
    value = _obj(m["x"])
    if attribute in _TRANSIENT:
        return None
    owner = "User's team's" if m["s"].lower() == "our" else "User's"
    kind = "preference" if re.search(r"favou?rite|preferred", attribute) else "goal" if re.search(r"goal|plan|aim", attribute) else "fact"
    return f"{owner} {attribute} {m['verb'].lower()} {value}", kind, 0.9


def _statements(text: str) -> list[str]:
    """Sentences and clauses, each with its whitespace collapsed to single spaces (so no rule ever
    sees a run of it)."""
    return [" ".join(part.split()) for part in _SPLIT.split(text) if part and not part.isspace()]


def _from_sentence(sentence: str) -> tuple[str, str, float] | None:
    if looks_like_instruction(sentence) or _QUESTION.search(sentence):
        return None
    sentence = _FILLER.sub("", sentence).strip().rstrip(".!;")
    sentence = sentence.replace("\u2019", "'")
    if not sentence or _QUESTION.search(sentence) or _HYPOTHETICAL.search(sentence) or len(sentence.split()) > 30:
        return None
    for pattern, build in RULES:
        match = pattern.match(sentence)
        if match:
            found = build(match)
            if found is None or not 3 <= len(found[0].split()) <= MAX_OBJECT_WORDS + 3 or looks_like_instruction(found[0]):
                return None
            value = _without_tail(match.groupdict().get("x") or "")
            if _DEICTIC.search(value) or _VAGUE.match(value) or (found[0].startswith("User has ") and _TRANSIENT & set(value.lower().split())):
                return None
            return found
    return None


def _accepted_suggestion(user_text: str, context: Sequence[Message]) -> Candidate | None:
    """"Sounds good, let's do that" after "I'd suggest Postgres" -> the user decided on Postgres."""
    if not _ACCEPT.match(user_text.strip()) or len(user_text.split()) > 12:
        return None
    for message in reversed(context):
        if message.role == "assistant":
            match = _SUGGESTION.search(message.text)
            if match:
                return Candidate(f"User decided to use {_obj(match['x']).strip()}", "decision", 0.6)
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
        for sentence in _statements(message.text):
            result = _from_sentence(sentence)
            if result is not None:
                text, kind, confidence = result
                found.append(Candidate(text[0].upper() + text[1:], kind, confidence))
        for candidate in found:
            key = candidate.text.lower()
            if key not in seen:
                seen.add(key)
                out.append(candidate)
    return out
