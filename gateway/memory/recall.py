"""Recall: the query text of a request, and hybrid ranking (dense + BM25, then a recency/usage prior)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.exchange import content_texts, well_formed
from gateway.memory.hot import UserMemories
from gateway.memory.keywords import terms
from gateway.memory.records import CORE_KINDS, Memory

# Fusion weights, tuned on the dev half of bench/data (bench/bench_recall_quality.py prints both halves).
DENSE_WEIGHT = 0.5
RRF_K = 60
PRIOR_WEIGHT = 0.05  # a tie-breaker: relevance decides, recency and use nudge
PRIOR_SHORTLIST = 64  # the prior is computed for this many (+ 4 x top_k) best-relevance candidates
# An episode below this fused relevance is not injected: a turn sharing no word and little meaning with
# the question is noise (tuned with episodes_top_k on the dev half: bench/bench_archival_quality.py --sweep).
EPISODE_MIN_SCORE = 0.1
PRIOR_RECENCY_DAYS = 90.0  # ranking prior: a memory untouched this many days has lost 63% of its recency
CONFIDENCE_WEIGHT = 0.5  # a memory of confidence c scores (1 - 0.5 (1 - c)) of its relevance: 0.75 at c = 0.5
# A short last message ("and in summer?") borrows this much preceding user text.
SHORT_QUERY_CHARS = 40
CONTEXT_CHARS = 200


def query_text(payload: dict[str, Any]) -> str:
    """The last user message, plus a little preceding user text when it is short."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return ""
    users = [" ".join(content_texts(m.get("content"))) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    users = [t for t in users if t.strip()]
    if not users:
        return ""
    query = users[-1].strip()
    if len(query) < SHORT_QUERY_CHARS and len(users) > 1:
        query = users[-2].strip()[-CONTEXT_CHARS:] + "\n" + query
    return well_formed(query[-4000:])  # the end of a pasted document says what is being asked


@dataclass(frozen=True)
class Query:
    vector: np.ndarray
    terms: list[str]

    @classmethod
    def of(cls, text: str, vector: np.ndarray) -> Query:
        return cls(vector, terms(text))


def fuse(dense: np.ndarray, keyword: np.ndarray, method: str = "score", weight: float = DENSE_WEIGHT) -> np.ndarray:
    """Combine dense cosine and BM25 scores. 'score' (0..1): weighted sum of the cosine (negative counts as 0) and
    BM25 scaled by its max; 'rrf' (0..1): reciprocal rank, scaled by the best possible sum."""
    if method == "dense":
        return dense
    if method == "keyword":
        return keyword
    if method == "rrf":
        out = np.zeros_like(dense)
        out[np.argsort(-dense)] += 1.0 / (RRF_K + np.arange(1, len(dense) + 1))
        matched = np.flatnonzero(keyword > 0)
        out[matched[np.argsort(-keyword[matched])]] += 1.0 / (RRF_K + np.arange(1, len(matched) + 1))
        return out * ((RRF_K + 1) / 2)
    top = float(keyword.max()) if len(keyword) else 0.0
    scaled = keyword / top if top > 0 else keyword
    return weight * np.clip(dense, 0.0, 1.0) + (1 - weight) * scaled


def prior(entry: UserMemories, index: np.ndarray, now: float) -> np.ndarray:
    """0..1 per memory: recently written or used, and often used."""
    last = np.maximum(entry.written_at[index], entry.used_at[index])
    recency = np.exp(-np.maximum(0.0, now - last) / (PRIOR_RECENCY_DAYS * 86400))
    usage = np.minimum(1.0, np.log1p(entry.use_count[index]) / math.log1p(20))
    return 0.5 * recency + 0.5 * usage


def trust(entry: UserMemories, index: np.ndarray) -> np.ndarray:
    """The share of its relevance a memory keeps for its confidence: 1 when sure, 0.5 at confidence 0."""
    return 1.0 - CONFIDENCE_WEIGHT * (1.0 - entry.confidence[index])
def relevance_of(entry: UserMemories, query: Query, method: str = "score", weight: float = DENSE_WEIGHT) -> np.ndarray:
    """Fused relevance of every memory of the user (all tiers) to the query."""
    return fuse(entry.matrix @ query.vector, entry.keywords.scores(query.terms), method, weight)


def rank(
    entry: UserMemories, query: Query, *, agent: str | None = None, top_k: int = 12, min_score: float = 0.0,
    include_flagged: bool = False, every_agent: bool = False, method: str = "score", weight: float = DENSE_WEIGHT, now: float | None = None,
    archival: bool | None = None, scores: np.ndarray | None = None,
) -> list[tuple[Memory, float]]:
    """The best `top_k` memories for the query, best first, with their scores: fused relevance (0..1 with the
    default 'score' fusion) times `trust` (confidence), nudged down by at most PRIOR_WEIGHT for a stale,
    unused memory. Memories scoring 0 (no shared meaning, no shared word) or below `min_score` are left out.
    `archival` True ranks only episodes, False everything else, None every tier; `scores` reuses a `relevance_of`."""
    if len(entry) == 0 or top_k <= 0:
        return []
    mask = entry.visible(agent, include_flagged, every_agent)
    if archival is not None:
        mask &= entry.archival if archival else ~entry.archival
    visible = np.flatnonzero(mask)
    relevance = relevance_of(entry, query, method, weight) if scores is None else scores
    trusted = relevance[visible] * trust(entry, visible)
    keep = (trusted >= min_score) & (trusted > 0)  # the prior only lowers a score: this drops nothing that could pass
    candidates, trusted = visible[keep], trusted[keep]
    if len(candidates) == 0:
        return []
    shortlist = PRIOR_SHORTLIST + 4 * top_k
    if len(candidates) > shortlist:
        # The prior moves a score by at most PRIOR_WEIGHT: only the head of the trusted order can win.
        head = np.argpartition(-trusted, shortlist - 1)[:shortlist]
        candidates, trusted = candidates[head], trusted[head]
    final = trusted * (1 + PRIOR_WEIGHT * prior(entry, candidates, now or time.time())) / (1 + PRIOR_WEIGHT)
    chosen = np.flatnonzero(final >= min_score)
    if len(chosen) > top_k:
        chosen = chosen[np.argpartition(-final[chosen], top_k - 1)[:top_k]]
    chosen = chosen[np.argsort(-final[chosen], kind="stable")]
    return [(entry.memories[candidates[i]], float(final[i])) for i in chosen]


def core_profile(entry: UserMemories, ranked: list[tuple[Memory, float]], *, agent: str | None, include_flagged: bool) -> list[Memory]:
    """Pinned memories (most recently updated first), then standing preferences, the relevant ones first."""
    visible = entry.visible(agent, include_flagged)
    pinned = np.flatnonzero(visible & entry.pinned)
    pinned = pinned[np.argsort(-entry.written_at[pinned], kind="stable")]
    prefs = np.flatnonzero(visible & entry.core_kind & ~entry.pinned)
    relevant = [m for m, _ in ranked if m.kind in CORE_KINDS and not m.pinned]
    seen = {m.id for m in relevant}
    rest = prefs[np.argsort(-entry.written_at[prefs], kind="stable")][: len(seen) + 64]  # more never fit a core budget
    return [entry.memories[i] for i in pinned] + relevant + [entry.memories[i] for i in rest if entry.memories[i].id not in seen]
