"""A memory as a record: the dataclass, its Arrow schema in the LanceDB table, conversions both ways
and the listing cursor. No I/O here; `store.py` does the reading and writing."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa

from gateway.metrics import MEMORY_TIERS

KINDS = ("fact", "preference", "decision", "goal", "event", "note")  # what extractors may learn
SUMMARY_KIND = "summary"  # a session's running summary (gateway/memory/sessions.py), never extracted
STORED_KINDS = (*KINDS, SUMMARY_KIND)
# MemGPT's split: core is always injected (pinned memories, standing preferences), recall holds
# extracted facts, archival the user's own turns verbatim (episodes).
TIERS = MEMORY_TIERS
CORE_KINDS = ("preference",)  # standing preferences join pinned memories in the core profile
META_EMBEDDER = b"memgate.embedder"
META_DIM = b"memgate.dim"


class StoreMismatch(RuntimeError):
    """The table holds vectors from another embedder or dimension: never mix them (`memgate export` and `memgate import` into a new store re-embed)."""


@dataclass
class Memory:
    id: str
    tenant: str
    user_id: str
    text: str
    kind: str = "fact"
    agent_id: str | None = None
    session_id: str | None = None
    vector: np.ndarray | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    last_used_at: float | None = None
    use_count: int = 0
    confidence: float = 1.0
    source_request_id: str | None = None
    superseded_by: str | None = None
    pinned: bool = False
    flagged: bool = False
    tokens: int = 0
    tier: str | None = None  # None: derived from kind and pinned when written (see tier_for)
    source_episode: str | None = None  # the archival episode an extracted memory came from

    def public(self) -> dict[str, Any]:
        """JSON-safe view for the admin API (no vector)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "vector"}


COLUMNS = tuple(f.name for f in fields(Memory))


def tier_for(kind: str, pinned: bool, tier: str | None = None) -> str:
    """A memory's tier: archival stays archival (an episode pinned is still the user's words), else
    core for pinned memories and standing preferences, recall for the rest."""
    if tier == "archival":
        return tier
    return "core" if pinned or kind in CORE_KINDS else "recall"


def schema(dim: int, embedder_name: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("tenant", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("kind", pa.string()),
            pa.field("agent_id", pa.string()),
            pa.field("session_id", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("created_at", pa.float64()),
            pa.field("updated_at", pa.float64()),
            pa.field("last_used_at", pa.float64()),
            pa.field("use_count", pa.int64()),
            pa.field("confidence", pa.float64()),
            pa.field("source_request_id", pa.string()),
            pa.field("superseded_by", pa.string()),
            pa.field("pinned", pa.bool_()),
            pa.field("flagged", pa.bool_()),
            pa.field("tokens", pa.int32()),
            pa.field("tier", pa.string()),
            pa.field("source_episode", pa.string()),
        ],
        metadata={META_EMBEDDER: embedder_name.encode(), META_DIM: str(dim).encode()},
    )


def rows_to_memories(table: pa.Table) -> list[Memory]:
    names = [n for n in table.column_names if n in COLUMNS]
    vectors = None
    if "vector" in names and table.num_rows:
        flat = table.column("vector").combine_chunks()
        vectors = flat.flatten().to_numpy(zero_copy_only=False).reshape(table.num_rows, -1).astype(np.float32, copy=False)
    cols = {n: table.column(n).to_pylist() for n in names if n != "vector"}
    out = []
    for i in range(table.num_rows):
        m = Memory(**{n: cols[n][i] for n in cols})
        if vectors is not None:
            m.vector = vectors[i]
        m.pinned, m.flagged = bool(m.pinned), bool(m.flagged)
        m.use_count, m.tokens = int(m.use_count or 0), int(m.tokens or 0)
        out.append(m)
    return out


def cursor_encode(m: Memory) -> str:
    return base64.urlsafe_b64encode(json.dumps([m.created_at, m.id]).encode()).decode()


def cursor_decode(cursor: str) -> tuple[float, str]:
    """Raises ValueError for a cursor this store did not hand out."""
    try:
        created, mid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(mid, str) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise ValueError
        return float(created), mid
    except Exception:
        raise ValueError("invalid cursor") from None


def to_arrow(memories: list[Memory], schema: pa.Schema, dim: int) -> pa.Table:
    cols: dict[str, list[Any]] = {n: [getattr(m, n) for m in memories] for n in COLUMNS if n != "vector"}
    vectors = np.stack([np.asarray(m.vector, dtype=np.float32).reshape(-1) for m in memories])
    if vectors.shape[1] != dim:
        raise StoreMismatch(f"vector has {vectors.shape[1]} dims, the table {dim}")
    arrays = {n: pa.array(v, type=schema.field(n).type) for n, v in cols.items()}
    arrays["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    return pa.table([arrays[n] for n in schema.names], schema=schema)


__all__ = ["KINDS", "SUMMARY_KIND", "STORED_KINDS", "TIERS", "CORE_KINDS", "tier_for", "COLUMNS", "Memory", "StoreMismatch", "schema", "rows_to_memories", "to_arrow", "cursor_encode", "cursor_decode"]
