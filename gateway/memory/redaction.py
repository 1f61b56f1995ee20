"""Secret redaction for every memory write: credentials a user pastes or mentions never become memory text."""

from __future__ import annotations

import re

from gateway.logs import scrub

MASK = "***"
# "my password is hunter2", "the wifi passcode: 1234", "API key = abc": the value after a secret's name.
# Possessive runs keep each search linear in the text.
_NAMED = re.compile(
    r"(?i)\b((?:password|passcode|passphrase|pin(?:\s++code)?|api\s*+key|secret\s++key|access\s++token|auth\s++token)\b"
    r"(?:\s++(?:is|was)\s++|\s*+[:=]\s*+))[^\s,;:=*][^\s,;]{2,}+"
)
# Well-known key shapes, whatever surrounds them: GitHub, Slack, AWS, Google.
_SHAPED = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}+|xox[abposr]-[A-Za-z0-9\-]{10,}+|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,}+)")


def redact(text: str) -> str:
    """`text` with credentials masked: what the log masks (bearer keys, `sk-...`, `token=...`, URL
    user-info), a value named as a password, PIN, key or token, and well-known key shapes."""
    text = scrub(text)
    text = _NAMED.sub(lambda m: m.group(1) + MASK, text)
    return _SHAPED.sub(MASK, text)


def redact_all(texts: list[str]) -> list[str]:
    return [redact(t) for t in texts]
