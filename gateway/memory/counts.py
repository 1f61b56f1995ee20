"""Exact token counts of chat messages, cached by content hash: clients resend the same history every turn,
so a long conversation is counted once, not on every request."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, TypeVar

from gateway.memory import tokens

V = TypeVar("V")
CACHE_ENTRIES = 65_536  # messages remembered per process (a key and an int each)


class BoundedCache(Generic[V]):
    """A dict that forgets its oldest entries past `size` (insertion order); safe to share with worker threads."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self.size = size
        self._items: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        return self._items.get(key)

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Piece:
    """One message (or the tools/response_format of a request) as counting sees it."""

    texts: tuple[str, ...]
    framing: int  # fixed tokens: per-message framing and image parts
    key: int  # content hash (Python's salted SipHash: collisions are not chosen by callers)
    chars: int

    @property
    def bound(self) -> int:
        """Free upper bound: a token is at least one UTF-8 byte."""
        return self.framing + sum(len(t.encode("utf-8", "surrogatepass")) for t in self.texts)


def message_piece(message: Any) -> Piece:
    if not isinstance(message, dict):
        return Piece((), 0, 0, 0)
    texts, images = tokens.message_texts(message)
    framed = tuple(texts)
    return Piece(framed, tokens.PER_MESSAGE_TOKENS + images * tokens.IMAGE_PART_TOKENS, hash(framed), sum(map(len, framed)))


def extras_piece(payload: dict[str, Any]) -> Piece:
    """The request's tools, functions and response_format, which count toward the prompt too."""
    _, texts = tokens.prompt_parts({k: payload[k] for k in ("tools", "functions", "response_format") if k in payload})
    framed = tuple(texts)
    return Piece(framed, 0, hash(framed), sum(map(len, framed)))


class NeedsThread(Exception):
    """Sizing on the event loop met more new text than it may count or parse there: redo it in a worker thread."""


class MessageCounter:
    """Counts pieces exactly, from the cache when it can; at most `exact_chars` of new text per request is
    counted (the rest at its upper bound), and `stop()` ends counting between slices (CountStopped). With
    `inline_chars` (on the event loop), more new text than that raises NeedsThread instead."""

    cache: BoundedCache[tuple[int, bool]] = BoundedCache()  # (encoding, key) -> (tokens, exact)

    def __init__(
        self, model: str, exact_chars: int = tokens.EXACT_COUNT_MAX_CHARS, stop: Callable[[], bool] = lambda: False, inline_chars: int | None = None,
    ) -> None:
        self.encoding = tokens.encoding_for(model)
        self.left = exact_chars
        self.stop = stop
        self.inline_left = inline_chars

    def spend(self, chars: int) -> None:
        """Account for `chars` of new text about to be counted or parsed (NeedsThread past the inline allowance)."""
        if self.inline_left is not None:
            if chars > self.inline_left:
                raise NeedsThread
            self.inline_left -= chars

    def cached(self, piece: Piece) -> int | None:
        found = self.cache.get((self.encoding.name, piece.key))
        return None if found is None else found[0]

    def count(self, piece: Piece) -> int:
        known = self.cached(piece)
        if known is not None:
            return known
        if piece.chars > self.left and piece.chars <= tokens.EXACT_COUNT_MAX_CHARS:
            return piece.bound  # counted exactly by a later request, which has the room
        self.spend(min(piece.chars, self.left))
        total, exact = piece.framing, True
        for text in piece.texts:
            for part in tokens.slices(text):
                if len(part) > self.left:
                    total += len(part.encode("utf-8", "surrogatepass"))
                    exact = False
                    continue
                if self.stop():
                    raise tokens.CountStopped
                total += len(self.encoding.encode_ordinary(part))
                self.left -= len(part)
        # A message too big to ever count exactly keeps its bound: never under the truth, never recounted.
        self.cache.put((self.encoding.name, piece.key), (total, exact))
        return total
