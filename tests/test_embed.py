from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.memory.embed import Embedder, LocalEmbedder, make_embedder
from gateway.memory.static_model import MODEL_FILES, SHIPPED_MODEL_DIR, WEIGHTS_FILE, read_safetensors
from gateway.errors import UpstreamUnreachable


@pytest.fixture(scope="session")
def local_model_dir() -> Path:
    return SHIPPED_MODEL_DIR


def embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    return asyncio.run(embedder.embed(texts))


def test_local_embedder_gives_unit_vectors_of_its_dim(local_model_dir: Path) -> None:
    embedder = make_embedder("local")
    vectors = embed(embedder, ["I prefer Terraform for infrastructure", "My cat is named Felix"])
    assert embedder.name == f"local:{local_model_dir.name}"
    assert vectors.shape == (2, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrase_is_closer_than_an_unrelated_sentence(local_model_dir: Path) -> None:
    fact, question, unrelated = embed(
        LocalEmbedder(local_model_dir),
        ["I prefer Terraform for infrastructure", "Which IaC tool do I like?", "My cat is named Felix"],
    )
    assert fact @ question > fact @ unrelated
    assert fact @ question > question @ unrelated


def test_repeated_text_is_served_from_the_cache(local_model_dir: Path) -> None:
    embedder = LocalEmbedder(local_model_dir)
    first = embed(embedder, ["Which IaC tool do I like?"])
    calls = embedder.batch_calls
    again = embed(embedder, ["Which IaC tool do I like?", "Which IaC tool do I like?"])
    assert embedder.batch_calls == calls
    assert np.array_equal(again, np.vstack([first, first]))


def test_cache_forgets_the_least_recently_used_text(local_model_dir: Path) -> None:
    embedder = LocalEmbedder(local_model_dir, cache_size=2)
    for text in ["one", "two", "one", "three"]:  # "two" is now the oldest
        embed(embedder, [text])
    calls = embedder.batch_calls
    embed(embedder, ["one", "three"])
    assert embedder.batch_calls == calls
    embed(embedder, ["two"])
    assert embedder.batch_calls == calls + 1


def test_calls_arriving_during_a_batch_are_gathered_into_the_next_one(local_model_dir: Path) -> None:
    embedder = LocalEmbedder(local_model_dir, inline_max_chars=0)  # force the threaded, batched path
    encode, release, batches = embedder._model.encode, threading.Event(), []

    def counting_encode(texts: list[str], **kwargs: Any) -> np.ndarray:
        batches.append(list(texts))
        release.wait(5)  # hold the first batch so the others queue behind it
        return encode(texts, **kwargs)

    embedder._model.encode = counting_encode  # type: ignore[method-assign]

    async def scenario() -> list[np.ndarray]:
        first = asyncio.create_task(embedder.embed(["first question"]))
        await asyncio.sleep(0.05)
        later = [asyncio.create_task(embedder.embed([f"question {i}", "shared"])) for i in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *later)

    results = asyncio.run(scenario())
    assert batches == [["first question"], ["question 0", "shared", *[f"question {i}" for i in range(1, 5)]]]
    assert all(result.shape == (len(result), embedder.dim) for result in results)


def test_minilm_embedder_gives_384_unit_vectors() -> None:
    embedder = make_embedder("minilm")
    vectors = embed(embedder, ["I prefer Terraform for infrastructure", "Which IaC tool do I like?"])
    assert embedder.dim == 384 and vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


class FakeEmbeddingsUpstream(BaseHTTPRequestHandler):
    """A real HTTP server answering /embeddings with deterministic unnormalised vectors."""

    requests: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        if self.status != 200:
            self.send_response(self.status)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
            return
        data = [{"object": "embedding", "index": i, "embedding": [len(text) + 1.0] + [float(i + 2)] * 7}
                for i, text in enumerate(body["input"])]
        payload = json.dumps({"object": "list", "data": data[::-1], "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[type[FakeEmbeddingsUpstream]]:
    handler = type("Handler", (FakeEmbeddingsUpstream,), {"requests": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.base = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def run_openai(upstream: type[FakeEmbeddingsUpstream], calls: list[list[str]]) -> list[np.ndarray]:
    async def scenario() -> list[np.ndarray]:
        async with httpx.AsyncClient() as client:
            embedder = make_embedder(
                "openai", http_client=client,
                upstream_base=upstream.base, api_key="sk-test", model="text-embedding-3-small",  # type: ignore[attr-defined]
            )
            results = await asyncio.gather(*(embedder.embed(texts) for texts in calls))
            assert embedder.name == "openai:text-embedding-3-small" and embedder.dim == 8
            await embedder.aclose()
            return list(results)

    return asyncio.run(scenario())


def test_openai_embedder_posts_to_the_upstream_and_normalises_in_input_order(upstream: Any) -> None:
    [vectors] = run_openai(upstream, [["a", "abc"]])
    [request] = upstream.requests
    assert request["path"] == "/v1/embeddings" and request["auth"] == "Bearer sk-test"
    assert request["model"] == "text-embedding-3-small" and request["input"] == ["a", "abc"]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    expected = np.array([[2.0] + [2.0] * 7, [4.0] + [3.0] * 7])
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True))


def test_openai_embedder_sends_concurrent_calls_in_one_request(upstream: Any) -> None:
    results = run_openai(upstream, [["one"], ["two", "one"], ["three"]])
    assert [r["input"] for r in upstream.requests] == [["one", "two", "three"]]
    assert [r.shape for r in results] == [(1, 8), (2, 8), (1, 8)]
    assert np.array_equal(results[0][0], results[1][1])


def test_openai_embedder_failure_reaches_every_waiting_caller(upstream: Any) -> None:
    upstream.status = 500
    with pytest.raises(UpstreamUnreachable, match="500"):
        run_openai(upstream, [["one"], ["two"]])


def test_unknown_embedder_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedder kind"):
        make_embedder("word2vec")


def test_the_numpy_runtime_embeds_like_model2vec_on_the_same_files(local_model_dir: Path) -> None:
    from model2vec import StaticModel as Model2Vec  # the [local] extra; the gateway itself never imports it

    texts = ["I prefer Terraform for infrastructure", "", "   ", "[UNK] [CLS] naïve café 日本語 🙂", "word " * 3000, "x" * 5000]
    ours = embed(LocalEmbedder(local_model_dir), texts)
    reference = Model2Vec.from_pretrained(local_model_dir, force_download=False).encode(texts, use_multiprocessing=False)
    reference = reference.astype(np.float32)
    norms = np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.array_equal(norms[:, 0] == 0, np.linalg.norm(ours, axis=1) == 0)  # the same texts have no tokens
    # model2vec averages in float16, we in float32: the difference is float16 rounding, nothing more.
    assert np.abs(ours - reference / np.where(norms == 0, 1, norms)).max() < 1e-3


@pytest.mark.timeout(900)  # distillation: ~20 s on an idle machine, minutes on a shared one
def test_the_shipped_model_is_what_its_recipe_builds(tmp_path: Path) -> None:
    """`memgate prepare-model` rebuilds it; three builds on the dev machine were byte-identical, and
    other CPUs may round the float16 weights differently, so weights get a tight tolerance."""
    result = subprocess.run([sys.executable, "-m", "gateway", "prepare-model", "--model-cache", str(tmp_path)],
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    built = Path(result.stdout.strip().splitlines()[-1])
    assert built == tmp_path / SHIPPED_MODEL_DIR.name
    assert sorted(p.name for p in built.iterdir()) == sorted(MODEL_FILES)
    for name in ("config.json", "tokenizer.json"):
        assert (built / name).read_bytes() == (SHIPPED_MODEL_DIR / name).read_bytes(), name
    fresh = read_safetensors(built / WEIGHTS_FILE)["embeddings"].astype(np.float32)
    shipped = read_safetensors(SHIPPED_MODEL_DIR / WEIGHTS_FILE)["embeddings"].astype(np.float32)
    assert fresh.shape == shipped.shape
    assert np.abs(fresh - shipped).max() <= 1e-3
