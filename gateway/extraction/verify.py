"""The llm extractor's second pass for critical facts: each extracted statement about health, identity or
contact details is checked against the user's own words by another structured call before it is learned."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

from gateway.extraction.base import Candidate, ExtractionError, Message
from gateway.extraction.critical import mentions
from gateway.extraction.llm import LLMExtractor

log = logging.getLogger("memgate.verify")

UNVERIFIED_CONFIDENCE = 0.5  # a critical fact the second pass could not check is kept, marked unsure when injected


async def verified(extractor: LLMExtractor, found: Sequence[Candidate], messages: Sequence[Message], categories: Sequence[str]) -> list[Candidate]:
    """`found` without the critical statements the verifier rejects; one it cannot check keeps a low confidence."""
    words = "\n".join(m.text for m in messages if m.source)
    kept = []
    for candidate in found:
        if not mentions(candidate.text, categories):
            kept.append(candidate)
            continue
        try:
            if await extractor.verify(candidate.text, words):
                kept.append(candidate)
            else:
                log.info("a critical statement the user's words do not support was not learned")
        except ExtractionError as exc:
            log.warning("critical statement not verified; kept as unsure", extra={"reason": str(exc)})
            kept.append(replace(candidate, confidence=min(candidate.confidence, UNVERIFIED_CONFIDENCE)))
    return kept
