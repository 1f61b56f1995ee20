"""Standing requests about how to answer ("Please always answer in French", "don't use emojis in your
replies"): preferences to keep, told apart from one-off task instructions and from attacks on the
model's rules (those stay with the instruction detector and are never kept)."""

from __future__ import annotations

import re

from gateway.memory.poisoning import looks_like_instruction

_LANGUAGE = (r"(?:english|french|german|spanish|italian|portuguese|dutch|polish|japanese|chinese|mandarin|cantonese|korean|russian|arabic|"
             r"hindi|turkish|swedish|norwegian|danish|finnish|greek|hebrew|ukrainian|czech|vietnamese|thai|indonesian|catalan|romanian)")
# Said once, meant for every later answer.
_STANDING = re.compile(r"\b(?:always|never|from now on|by default|going forward|in (?:the )?future|every time|whenever|with me|"
                       r"(?:answers|replies|responses|explanations))\b", re.I)
# What an answer looks like, not what it is about: a style asked for is a standing preference.
_STYLE = re.compile(rf"\b(?:spelling|units|emojis?|tone|formal|informal|jargon|markdown|bullet points|type hints|sources|citations|comments|in {_LANGUAGE})\b", re.I)
_MARKERS = re.compile(r"^(?:(?:please|kindly|always|never|from now on|by default|going forward|in (?:the )?future|and)\b[, ]*)+", re.I)
_TRAILING = re.compile(r"(?:,? (?:please|always|thanks|thank you|from now on|going forward))+$", re.I)
_VERB = re.compile(r"^(?P<v>answer|reply|respond|write|talk|speak|use|include|give|keep|avoid|add|be|explain|show|cite|format|skip|stop|don't|do not)\b(?P<rest>.*)$", re.I)
_SPEAKING = re.compile(rf"^(?:answer|reply|respond|write|talk|speak)\b(?: to (?:me|the user))? (?:\w+ ){{0,3}}?in {_LANGUAGE}\b", re.I)
_PERSONA = re.compile(r"\bas (?:a|an|if|though|my|your)\b|\b(?:pretend|roleplay|role-play|persona|character)\b", re.I)
# A request about the answer at hand ("answer this one in French") is not a standing preference.
_AT_HAND = re.compile(r"\b(?:this|that|it|these|those|here|below|above|next|now|today)\b|\bone\b", re.I)
_ME = [(re.compile(r"\bmy\b", re.I), "the user's"), (re.compile(r"\bme\b", re.I), "the user"), (re.compile(r"\byour ", re.I), "")]


def answer_preference(sentence: str) -> str | None:
    """"User prefers that the assistant always answer in French" for a standing request about
    answers, None for anything else (a question, a one-off task, an instruction aimed at the rules)."""
    text = sentence.strip().rstrip(".!")
    trailing = _TRAILING.search(text)
    ending = trailing.group(0).lower() if trailing else ""
    core = text[: trailing.start()] if trailing else text
    markers = _MARKERS.match(core)
    lead = markers.group(0).lower() if markers else ""
    core = core[markers.end():] if markers else core
    verb = _VERB.match(core)
    if verb is None or not (_STANDING.search(text) or _STYLE.search(text)) or _PERSONA.search(core) or _AT_HAND.search(core):
        return None
    name = verb["v"].lower()
    if name in ("answer", "reply", "respond", "write", "talk", "speak") and not (_SPEAKING.match(core) or _STYLE.search(core)):
        return None  # "always respond in pirate speak": a voice, not a language or a style
    if looks_like_instruction("User prefers: " + core):
        return None
    for pattern, replacement in _ME:
        core = pattern.sub(replacement, core)
    core = re.sub(r"^(?:don't|do not)\b", "not", core, flags=re.I)
    when = "never " if "never" in lead else "always " if "always" in lead + ending else ""
    return f"User prefers that the assistant {when}{core[0].lower()}{core[1:]}"
