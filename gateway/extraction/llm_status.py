"""What the llm extractor learned about its upstream: which output mode works per model, and what went wrong."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import httpx

from gateway.extraction.output_modes import MODES
from gateway.logs import scrub
from gateway.metrics import Metrics

log = logging.getLogger("memgate.learn")

RECENT_ERRORS = 20  # kept for GET /admin/v1/queue
DETAIL_CHARS = 200


def upstream_label(base_url: str) -> str:
    """The upstream as shown in logs and the admin API: scheme, host, port and path, never user-info."""
    url = httpx.URL(base_url)
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


class LLMStatus:
    """Shared by every batch of one gateway: the mode `auto` settled on per model, per-reason
    counters, the most recent problems, and a warning logged once per upstream and model."""

    def __init__(self, metrics: Metrics, upstream_base: str, configured_mode: str) -> None:
        self.metrics = metrics
        self.upstream = upstream_label(upstream_base)
        self.configured = configured_mode
        self.learned: dict[str, str] = {}  # model -> the mode that last worked (auto only)
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_ERRORS)
        self._warned: set[str] = set()

    def modes_for(self, model: str) -> list[str]:
        """The modes to try, in order: the configured one alone, or (auto) the one that worked last, then the rest."""
        if self.configured != "auto":
            return [self.configured]
        first = self.learned.get(model, MODES[0])
        return [first, *(mode for mode in MODES if mode != first)]

    def worked(self, model: str, mode: str) -> None:
        if self.configured == "auto" and self.learned.get(model) != mode:
            if model in self.learned or mode != MODES[0]:
                log.info("llm extraction output mode chosen", extra={"upstream": self.upstream, "model": model, "mode": mode})
            self.learned[model] = mode

    def problem(self, model: str, mode: str, reason: str, detail: str) -> None:
        """Count, keep and (once per upstream and model) log one failed or repaired answer."""
        detail = scrub(detail)[:DETAIL_CHARS]
        self.metrics.llm_extraction_problems.labels(reason).inc()
        self.recent.append({"time": round(time.time(), 3), "upstream": self.upstream, "model": model, "mode": mode, "reason": reason, "detail": detail})
        if model not in self._warned:
            self._warned.add(model)
            log.warning(
                "llm extraction: the upstream's answer failed or needed repair (logged once per upstream and model; "
                "see memgate_extraction_llm_problems_total and GET /admin/v1/queue)",
                extra={"upstream": self.upstream, "model": model, "mode": mode, "reason": reason, "detail": detail},
            )

    def view(self) -> dict[str, Any]:
        """For GET /admin/v1/queue: the configured mode, what auto learned, the newest problems first."""
        return {"output_mode": self.configured, "learned_modes": dict(self.learned), "recent_errors": list(reversed(self.recent))}
