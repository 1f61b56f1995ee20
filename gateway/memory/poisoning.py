"""The instruction (prompt-poisoning) detector every memory write shares: text aimed at the model is never an ordinary memory."""

from __future__ import annotations

import re

from gateway.memory.linebreaks import LINE_BREAK_CLASS


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
