"""The `memories` table's upkeep: what an existing table records, columns an older memgate lacked, indexes."""

from __future__ import annotations

from typing import Any

import lancedb
import pyarrow as pa
from lancedb.index import FTS, BTree, IvfPq

from gateway.memory.commits import committed
from gateway.memory.records import CORE_KINDS, META_DIM, META_EMBEDDER
from gateway.memory.sql import one_of

TABLE = "memories"


async def recorded(uri: str) -> tuple[str, int] | None:
    """(embedder name, dimension) recorded with an existing table, or None when there is no table yet."""
    db = await lancedb.connect_async(uri)
    try:
        if TABLE not in (await db.list_tables()).tables:
            return None
        table = await db.open_table(TABLE)
        meta = (await table.schema()).metadata or {}
        table.close()
        return meta.get(META_EMBEDDER, b"").decode(), int(meta.get(META_DIM, b"0") or 0)
    finally:
        db.close()


async def migrate(table: Any, schema: pa.Schema) -> None:
    """Add the columns a table made by an older memgate lacks; an old row's tier follows from its
    kind and pin (core or recall: episodes did not exist yet)."""
    have = set((await table.schema()).names)
    missing = [f for f in schema if f.name not in have]
    if not missing:
        return
    await table.add_columns(missing)
    if "tier" in {f.name for f in missing}:
        await table.update(updates_sql={"tier": "'core'"}, where=f"tier IS NULL AND (pinned IS TRUE OR {one_of('kind', CORE_KINDS)})")
        await table.update(updates_sql={"tier": "'recall'"}, where="tier IS NULL")


async def ensure_indexes(table: Any, ann_min_rows: int) -> None:
    """Scalar indexes on the scope columns, full text on text, ANN once the table has `ann_min_rows`."""
    # Retried on a commit conflict: replicas or workers starting together on a new store all create them.
    have = {tuple(i.columns): i.index_type for i in await table.list_indices()}
    for column in ("tenant", "user_id"):
        if (column,) not in have:
            await committed(lambda: table.create_index(column, config=BTree()))
    if ("text",) not in have:
        await committed(lambda: table.create_index("text", config=FTS()))
    if ("vector",) not in have and await table.count_rows() >= ann_min_rows:
        await committed(lambda: table.create_index("vector", config=IvfPq(distance_type="cosine")))
