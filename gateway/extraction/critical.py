"""Critical facts: which changes must be confirmed by the user before they replace what is stored, and
whether a user's message answers such a confirmation with yes or no."""

from __future__ import annotations

import re
from typing import Sequence

from gateway.extraction.statements import slot
from gateway.memory.records import Memory

# One pattern per category, over the stored and the new statement (lower-cased); all linear-time.
_CATEGORIES = {
    "health": re.compile(r"\b(?:allerg\w*|intoleran\w*|anaphyla\w*|medica\w*|medicine|prescri\w*|diagnos\w*|diabet\w*|asthma|epilep\w*"
                         r"|blood type|blood pressure|pregnan\w*|disease|disorder|illness|inhaler|insulin|epipen|vaccin\w*)\b"),
    "identity": re.compile(r"\b(?:name|names|goes by|called|birthday|date of birth|born|pronouns|gender|nationality|passport)\b"),
    "contact": re.compile(r"\b(?:e-?mail|email address|phone|mobile|cell|telephone|address|postcode|zip code|contact)\b"),
}
_YES = re.compile(r"(?:yes|yeah|yep|yup|correct|right|exactly|confirmed|indeed|that'?s right|that is right|that'?s correct|that is correct"
                  r"|the new one|the second)\b")
_NO = re.compile(r"(?:no|nope|nah|wrong|incorrect|not right|that'?s wrong|that is wrong|that'?s not right|the old one|the first)\b(?! longer)")
_LEAD = re.compile(r"^[\s\"'(*_\u201c\u2018-]+")
ANSWER_CHARS = 200  # a longer message is not read as an answer to a confirmation


def is_critical(stored: Memory, said: str, categories: Sequence[str]) -> bool:
    """Whether replacing `stored` by `said` needs the user's confirmation under a rule's `critical` categories."""
    return ("pinned" in categories and stored.pinned) or mentions(f"{stored.text} \n {said}", categories)


def mentions(statement: str, categories: Sequence[str]) -> bool:
    """Whether a statement is about one of the `critical` categories (health, identity, contact)."""
    if "identity" in categories and (slot(statement) or ("",))[1:2] == ("name",):
        return True
    text = statement.lower()
    return any(name in categories and pattern.search(text) for name, pattern in _CATEGORIES.items())


def answer(message: str) -> bool | None:
    """True for a yes ("yes", "that's right", "correct"), False for a no ("no", "wrong"), None for anything else."""
    text = _LEAD.sub("", message[: ANSWER_CHARS + 1].lower().replace("\u2019", "'"))
    if len(message) > ANSWER_CHARS or not text:
        return None
    yes, no = _YES.match(text) is not None, _NO.match(text) is not None
    return None if yes == no else yes
