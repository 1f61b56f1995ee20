"""Rewriting a first-person clause in the third person: verbs, pronouns, afterthoughts and relative times."""

from __future__ import annotations

import re

# The start of a reason or afterthought ("..., because ...", "... and I ..."): cut by `without_tail`.
_TAIL = re.compile(r",\s?(?:so|which|the|it|that|as)\b|[\s,](?:because|since|but|so that|so|though|although|and (?:I|I'm|getting|having|trying|seeing|it|now|then|when))\b", re.I)
_PRONOUNS = [
    (re.compile(r"\bI'm\b"), "they're"), (re.compile(r"\bI\b"), "they"), (re.compile(r"\bmy\b", re.I), "their"),
    (re.compile(r"\bmine\b", re.I), "theirs"), (re.compile(r"\bmyself\b", re.I), "themselves"), (re.compile(r"\bme\b", re.I), "them"),
    (re.compile(r"\bour\b", re.I), "their"), (re.compile(r"\bus\b"), "them"), (re.compile(r"\bwe\b", re.I), "they"),
    (re.compile(r"\byou\b", re.I), "the assistant"), (re.compile(r"\byour\b", re.I), "the assistant's"),
]
# A time relative to when it was said ("last month", "two years ago") is wrong a month later: dropped.
_RELATIVE_TIME = re.compile(
    r",? (?:(?:last|past) (?:week|weekend|month|year|summer|winter|spring|fall|autumn|quarter)|the other day|"
    r"(?:a|an|one|two|three|four|five|six|few|couple of|\d+) (?:days?|weeks?|months?|years?) ago|a while ago|recently|"
    r"yesterday|lately|these days|nowadays|(?:right )?now|anymore|any more|completely|originally)(?= |$)",
    re.I,
)
_IRREGULAR = {"have": "has", "be": "is", "do": "does", "go": "goes"}


def third_person(verb: str) -> str:
    verb = verb.lower()
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(verb) > 2 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def without_tail(text: str) -> str:
    """`text` up to a trailing reason or afterthought, without the separator before it."""
    match = _TAIL.search(text)
    return text if match is None else text[: match.start()].rstrip().removesuffix(",").rstrip()


def without_relative_time(text: str) -> str:
    """`text` without the times that only make sense on the day it was said."""
    return " ".join(_RELATIVE_TIME.sub("", text).split())


def obj(text: str) -> str:
    """The object of a clause in the third person, without its afterthought."""
    text = without_relative_time(without_tail(text)).strip().rstrip(".!;:,")
    for pattern, repl in _PRONOUNS:
        text = pattern.sub(repl, text)
    return text


def subject(words: str) -> str:
    """"User" for I and my; "User's team" for we, our and the team."""
    words = words.lower()
    return "User's team" if words in ("we", "our") or words.endswith(" team") else "User"
