"""BM25 keyword scoring over one user's memories: small, incremental, numpy-backed."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between both but by
    can could did do does doing down during each few for from further had has have having he her here hers herself him himself
    his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves then there these they this
    those through to too under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves i'm im ive id dont does did anything something thing things tell know remember""".split()
)
K1 = 1.2
B = 0.75


def stem(word: str) -> str:
    """A light suffix stripper: enough to meet 'hiking'/'hikes'/'hiked' at 'hik'."""
    for suffix in ("ingly", "edly", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    return word


def terms(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


class KeywordIndex:
    """BM25 postings for documents 0..n-1. Appends are incremental; removal rebuilds from kept term counts."""

    def __init__(self) -> None:
        self.doc_terms: list[Counter[str]] = []
        self.doc_len = np.zeros(0, dtype=np.float32)
        self.postings: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per-term numpy view, rebuilt on change
        self._norm: np.ndarray | None = None  # BM25 length normalisation per document, rebuilt on change

    def __len__(self) -> int:
        return len(self.doc_terms)

    def add(self, texts: list[str]) -> None:
        start = len(self.doc_terms)
        lengths = []
        for offset, text in enumerate(texts):
            counts = Counter(terms(text))
            self.doc_terms.append(counts)
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                docs, tfs = self.postings.setdefault(term, ([], []))
                docs.append(start + offset)
                tfs.append(tf)
                self._arrays.pop(term, None)
        self.doc_len = np.concatenate([self.doc_len, np.asarray(lengths, dtype=np.float32)])
        self._norm = None

    def keep(self, mask: np.ndarray) -> None:
        """Keep only documents where mask is true (renumbered in order)."""
        kept = [counts for counts, ok in zip(self.doc_terms, mask) if ok]
        self.doc_terms, self.postings, self._arrays, self._norm = [], {}, {}, None
        self._add_counts(kept)

    def _add_counts(self, all_counts: list[Counter[str]]) -> None:
        for index, counts in enumerate(all_counts):
            self.doc_terms.append(counts)
            for term, tf in counts.items():
                docs, tfs = self.postings.setdefault(term, ([], []))
                docs.append(index)
                tfs.append(tf)
        self.doc_len = np.asarray([sum(c.values()) for c in all_counts], dtype=np.float32)

    def _posting(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        found = self._arrays.get(term)
        if found is None:
            raw = self.postings.get(term)
            if raw is None:
                return None
            found = (np.asarray(raw[0], dtype=np.int64), np.asarray(raw[1], dtype=np.float32))
            self._arrays[term] = found
        return found

    def scores(self, query_terms: list[str]) -> np.ndarray:
        """BM25 score of every document for the query (zeros where nothing matches)."""
        n = len(self.doc_terms)
        out = np.zeros(n, dtype=np.float32)
        if n == 0 or not query_terms:
            return out
        norm = self._norm
        if norm is None:
            avg = float(self.doc_len.mean()) or 1.0
            norm = self._norm = K1 * (1 - B + B * self.doc_len / avg)
        for term in set(query_terms):
            posting = self._posting(term)
            if posting is None:
                continue
            docs, tfs = posting
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            out[docs] += idf * tfs * (K1 + 1) / (tfs + norm[docs])
        return out
