"""memory/records.py: a Memory to an Arrow row and back, the schema, the listing cursor."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.memory.records import COLUMNS, META_DIM, META_EMBEDDER, Memory, StoreMismatch, cursor_decode, cursor_encode, rows_to_memories, schema, to_arrow

DIM = 4


def full(id: str = "m1", **changes: object) -> Memory:
    values: dict[str, object] = dict(
        id=id, tenant="acme", user_id="u-1", text="User lives in Zürich 🏔", kind="preference", agent_id="coder", session_id="s1",
        vector=np.array([0.1, -0.2, 0.3, 0.4], dtype=np.float32), created_at=1_700_000_000.5, updated_at=1_700_000_100.25,
        last_used_at=1_700_000_200.0, use_count=3, confidence=0.75, source_request_id="req-1", superseded_by="m2", pinned=True,
        flagged=True, tokens=9, tier="core", source_episode="e1",
    )
    values.update(changes)
    return Memory(**values)  # type: ignore[arg-type]


def same(a: Memory, b: Memory) -> bool:
    da, db = asdict(a), asdict(b)
    va, vb = da.pop("vector"), db.pop("vector")
    return da == db and np.array_equal(np.asarray(va), np.asarray(vb))


def test_a_memory_survives_the_round_trip_through_arrow() -> None:
    m = full()
    (back,) = rows_to_memories(to_arrow([m], schema(DIM, "local"), DIM))
    assert same(back, m)


def test_a_memory_with_only_defaults_survives_the_round_trip() -> None:
    m = Memory(id="a", tenant="t", user_id="u", text="", vector=np.zeros(DIM, np.float32))
    (back,) = rows_to_memories(to_arrow([m], schema(DIM, "local"), DIM))
    assert same(back, m)


def test_many_memories_keep_their_order_and_vectors() -> None:
    ms = [full(f"m{i}", vector=np.full(DIM, i, np.float32)) for i in range(5)]
    back = rows_to_memories(to_arrow(ms, schema(DIM, "local"), DIM))
    assert [m.id for m in back] == [m.id for m in ms] and [float(m.vector[0]) for m in back] == [0, 1, 2, 3, 4]


def test_vectors_come_back_as_float32() -> None:
    m = full(vector=[1, 2, 3, 4])
    (back,) = rows_to_memories(to_arrow([m], schema(DIM, "local"), DIM))
    assert back.vector.dtype == np.float32 and back.vector.tolist() == [1, 2, 3, 4]


def test_a_vector_of_the_wrong_dimension_is_a_store_mismatch() -> None:
    with pytest.raises(StoreMismatch, match="3 dims, the table 4"):
        to_arrow([full(vector=np.zeros(3, np.float32))], schema(DIM, "local"), DIM)


def test_the_schema_records_embedder_and_dimension() -> None:
    s = schema(384, "minilm")
    assert s.metadata[META_EMBEDDER] == b"minilm" and s.metadata[META_DIM] == b"384"
    assert s.field("vector").type == pa.list_(pa.float32(), 384)


def test_the_schema_has_a_column_for_every_field() -> None:
    assert tuple(schema(DIM, "local").names) == COLUMNS


def test_rows_without_a_vector_column_give_memories_without_vectors() -> None:
    table = to_arrow([full()], schema(DIM, "local"), DIM).drop(["vector"])
    (back,) = rows_to_memories(table)
    assert back.vector is None and back.text == full().text


def test_null_counts_and_flags_read_as_zero_and_false() -> None:
    table = to_arrow([full()], schema(DIM, "local"), DIM)
    for name in ("use_count", "tokens", "pinned", "flagged"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(name), pa.nulls(1, table.schema.field(name).type))
    (back,) = rows_to_memories(table)
    assert (back.use_count, back.tokens, back.pinned, back.flagged) == (0, 0, False, False)


def test_unknown_columns_are_ignored() -> None:
    table = to_arrow([full()], schema(DIM, "local"), DIM).append_column("_distance", pa.array([0.5]))
    assert same(rows_to_memories(table)[0], full())


def test_an_empty_table_gives_no_memories() -> None:
    assert rows_to_memories(schema(DIM, "local").empty_table()) == []


def test_public_is_json_safe_and_has_no_vector() -> None:
    public = full().public()
    assert "vector" not in public and json.loads(json.dumps(public))["text"] == full().text


@settings(max_examples=50, deadline=None)
@given(st.text(), st.floats(0, 4e9), st.integers(0, 2**31 - 1), st.lists(st.floats(-1, 1, width=32), min_size=DIM, max_size=DIM))
def test_any_text_times_and_vectors_survive_the_round_trip(text: str, created: float, uses: int, vector: list[float]) -> None:
    m = full(text=text, created_at=created, use_count=uses, vector=np.array(vector, np.float32))
    assert same(rows_to_memories(to_arrow([m], schema(DIM, "local"), DIM))[0], m)


# -- cursors --------------------------------------------------------------------------------------


def test_a_cursor_decodes_to_the_memorys_creation_time_and_id() -> None:
    assert cursor_decode(cursor_encode(full())) == (1_700_000_000.5, "m1")


def test_a_cursor_is_url_safe() -> None:
    cursor = cursor_encode(full(id="?/+" * 10))
    assert all(c.isalnum() or c in "-_=" for c in cursor)


@pytest.mark.parametrize("cursor", [
    "", "not base64!", base64.urlsafe_b64encode(b"not json").decode(), base64.urlsafe_b64encode(b"[1]").decode(),
    base64.urlsafe_b64encode(b'[1, 2]').decode(), base64.urlsafe_b64encode(b'["x", "id"]').decode(),
    base64.urlsafe_b64encode(b'[NaN, "id"]').decode(), base64.urlsafe_b64encode(b'[Infinity, "id"]').decode(),
])
def test_a_cursor_this_store_did_not_hand_out_is_a_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        cursor_decode(cursor)
