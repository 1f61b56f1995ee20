"""The shipped static embedding model, run with numpy and `tokenizers` alone: no torch, no model2vec, no download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The model ships inside the package (package data), built by `memgate prepare-model`.
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "model" / "m2v-minilm-256"
WEIGHTS_FILE = "model.safetensors"
MODEL_FILES = ("config.json", "tokenizer.json", WEIGHTS_FILE)

_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "I8": np.int8}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data), memory-mapped
    read-only: the pages are shared by every process that loads the same file."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[spec["dtype"]]).newbyteorder("<")
        shape = tuple(spec["shape"])
        if end - start != dtype.itemsize * int(np.prod(shape)):
            raise ValueError(f"{path}: tensor {name} is {end - start} bytes, not {shape} of {dtype}")
        tensors[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + header_len + start, shape=shape)
    return tensors


class StaticModel:
    """Mean of token vectors, as model2vec computes it: BERT WordPiece tokens (no specials, no [UNK]), truncated."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        self.embedding = read_safetensors(model_dir / WEIGHTS_FILE)["embeddings"]
        self.dim = int(self.embedding.shape[1])
        self.max_tokens = int(config.get("max_length") or 512)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        vocab = self._tokenizer.get_vocab()
        if len(vocab) != self.embedding.shape[0]:
            raise ValueError(f"{model_dir}: {len(vocab)} tokens but {self.embedding.shape[0]} vectors")
        # model2vec cuts each text to max_tokens * the median token length before tokenizing; so do we.
        self.max_chars = self.max_tokens * int(np.median([len(token) for token in vocab]))
        unk = getattr(self._tokenizer.model, "unk_token", None)  # model2vec drops [UNK] tokens from the mean
        self._unk_id = self._tokenizer.token_to_id(unk) if unk else None

    def encode(self, texts: list[str]) -> np.ndarray:
        """An (n, dim) float32 array of the texts' mean token vectors (a zero row for a text with no tokens)."""
        encodings = self._tokenizer.encode_batch_fast([text[: self.max_chars] for text in texts], add_special_tokens=False)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        by_length: dict[int, list[tuple[int, list[int]]]] = {}
        for row, encoding in enumerate(encodings):
            ids = [i for i in encoding.ids if i != self._unk_id]
            if ids:
                by_length.setdefault(len(ids), []).append((row, ids))
        for rows_ids in by_length.values():  # one gather per length: no padding, no Python loop over tokens
            rows = [row for row, _ in rows_ids]
            out[rows] = self.embedding[np.array([ids for _, ids in rows_ids], dtype=np.int64)].astype(np.float32).mean(axis=1)
        return out
