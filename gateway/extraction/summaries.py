"""Session summaries written by the `llm` extractor's upstream, for requests whose extractor is `llm`; the
memory layer falls back to its extractive summary whenever this gives none."""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from gateway.config import Settings
from gateway.exchange import ChatContext, well_formed
from gateway.extraction.base import ExtractionError
from gateway.extraction.llm import LLMExtractor
from gateway.extraction.llm_status import LLMStatus
from gateway.extraction.output_modes import MODES
from gateway.memory.sessions import SUMMARY_CHARS
from gateway.upstream import Upstream

log = logging.getLogger("memgate.learn")

LLM_PREFIX = "Last session: "
TIMEOUT_SECONDS = 30.0  # the whole call, every output mode tried; past it the extractive summary stands in
MAX_TURN_CHARS = 2_000  # of each user turn, its opening
MAX_INPUT_CHARS = 16_000  # of all turns, the newest kept


def summary_input(turns: Sequence[str]) -> list[str]:
    """The user's turns as the summary prompt gets them: each cut to its opening, the newest that fit MAX_INPUT_CHARS."""
    kept: list[str] = []
    size = 0
    for turn in reversed(turns):
        text = well_formed(turn).strip()[:MAX_TURN_CHARS]
        if not text:
            continue
        if size + len(text) > MAX_INPUT_CHARS:
            break
        kept.append(text)
        size += len(text)
    return kept[::-1]


def capped(summary: str) -> str:
    """One line, prefixed, at most SUMMARY_CHARS characters (cut at a word, marked with an ellipsis); "" when empty."""
    text = " ".join(summary.split())
    if not text:
        return ""
    text = LLM_PREFIX + text
    if len(text) <= SUMMARY_CHARS:
        return text
    return text[:SUMMARY_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


class LLMSummarizer:
    """The memory layer's `summarize`: the llm's summary of a session's user turns, or None (extractor not `llm`,
    no key, or any failure: counted in memgate_extraction_llm_problems_total like the extractor's own)."""

    def __init__(self, settings: Settings, upstream: Upstream, status: LLMStatus) -> None:
        self.settings = settings
        self.upstream = upstream
        self.status = status

    async def __call__(self, ctx: ChatContext, turns: Sequence[str]) -> str | None:
        if (ctx.rule.extractor or self.settings.extractor) != "llm":
            return None
        key = self.settings.extraction_api_key or ctx.api_key
        quoted = summary_input(turns)
        if not key or not quoted:
            return None
        model = self.settings.extraction_model
        extractor = LLMExtractor(self.upstream, model, key, max_calls=len(MODES), status=self.status, timeout=TIMEOUT_SECONDS)
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                text = capped(await extractor.summarize(quoted))
        except TimeoutError:
            self.status.problem(model, "-", "timeout", f"summary: no answer within {TIMEOUT_SECONDS:g} s")
            return None
        except ExtractionError as exc:  # every failed mode is counted (and kept for GET /admin/v1/queue) already
            log.info("llm session summary failed: using the extractive one", extra={"request_id": ctx.request_id, "error": type(exc).__name__})
            return None
        if not text:
            self.status.problem(model, "-", "invalid", "summary: empty")
            return None
        return text
