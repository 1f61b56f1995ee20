"""Import and the admin API share one validator per memory field: out-of-range values are refused
per line (the good lines of the batch are kept), ids stay global, and a time stored before these
checks never breaks a recall."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.memory.records import Memory
from gateway.memory.store import MemoryStore

from .extraction_helpers import KEY, system_text
from .fake_upstream import FakeUpstream
from .harness import Gateway

NOW = time.time()


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client


def import_lines(admin: httpx.Client, lines: list[str]) -> dict:
    response = admin.post("/import", content="\n".join(lines))
    assert response.status_code == 200, response.text
    return response.json()


def test_out_of_range_fields_are_reported_per_line_and_the_good_lines_of_the_batch_kept(admin: httpx.Client) -> None:
    ok = {"id": "rng-ok", "tenant": "rng-t", "user_id": "u1", "text": "I run", "created_at": NOW - 86400}
    line = lambda **changes: json.dumps({**ok, **changes})  # noqa: E731
    lines = [
        line(),
        line(id="rng-1", text="tea \\ud800 time").replace("\\\\ud800", "\\ud800"),  # a lone surrogate, as JSON can carry one
        line(id="rng-2", use_count=2**63),
        line(id="rng-max", use_count=2**63 - 1, last_used_at=NOW),
        line(id="rng-3", created_at=1e300),
        line(id="rng-4", created_at=946684799),  # 1999-12-31
        line(id="rng-5", last_used_at=NOW + 10 * 366 * 86400),
        line(id="rng-6", updated_at=float("nan")),
        line(id="rng-7", agent_id="not an id"),
        line(id="rng-8", source_request_id="r" * 300),
        line(id="rng-9", use_count=-1),
        line(id="rng-last", text="I swim"),
    ]
    assert "\\ud800" in lines[1] and "\\\\ud800" not in lines[1]
    result = import_lines(admin, lines)
    assert result["imported"] == 3 and result["failed"] == 9
    messages = {e["line"]: e["message"] for e in result["errors"]}
    assert sorted(messages) == [2, 3, 5, 6, 7, 8, 9, 10, 11]
    for number, field in {2: "text", 3: "use_count", 5: "created_at", 6: "created_at", 7: "last_used_at", 8: "updated_at",
                          9: "agent_id", 10: "source_request_id", 11: "use_count"}.items():
        assert field in messages[number], (number, messages[number])
    assert "surrogate" in messages[2]
    rows = {r["id"]: r for r in map(json.loads, admin.get("/export", params={"tenant": "rng-t"}).text.splitlines())}
    assert sorted(rows) == ["rng-last", "rng-max", "rng-ok"] and rows["rng-max"]["use_count"] == 2**63 - 1


@pytest.mark.parametrize("field, value", [
    ("text", "x" * 4001), ("text", "  "), ("kind", "poem"), ("confidence", 2), ("confidence", True), ("pinned", "yes"), ("agent_id", "a b"),
])
def test_the_admin_api_and_import_refuse_the_same_values_with_the_same_message(admin: httpx.Client, field: str, value: object) -> None:
    body = {"text": "I like plums", field: value}
    response = admin.post("/tenants/same-t/users/u1/memories", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == field
    result = import_lines(admin, [json.dumps({"id": "same-1", "tenant": "same-t", "user_id": "u1", **body})])
    assert result["imported"] == 0 and result["errors"] == [{"line": 1, "message": response.json()["error"]["message"]}]


def test_an_id_held_by_another_user_is_an_error_for_its_line_and_overwrites_nothing(admin: httpx.Client) -> None:
    held = admin.post("/tenants/own-a/users/u1/memories", json={"text": "I use vim"}).json()
    theirs = {**held, "user_id": "u2", "text": "I use emacs"}
    result = import_lines(admin, [json.dumps(theirs), json.dumps({**theirs, "tenant": "own-b", "user_id": "u1"}), json.dumps(held)])
    assert result["imported"] == 0 and result["skipped"] == 1 and [e["line"] for e in result["errors"]] == [1, 2]
    assert "belongs to another user" in result["errors"][0]["message"]
    assert admin.get("/tenants/own-a/users/u2/memories").status_code == 404
    assert admin.get("/export", params={"tenant": "own-b"}).text == ""
    assert admin.get(f"/tenants/own-a/users/u1/memories/{held['id']}").json()["text"] == "I use vim"
    # Within one body too: the first scope to claim an id keeps it.
    fresh = {"id": "own-new", "tenant": "own-c", "user_id": "u1", "text": "I use nano"}
    result = import_lines(admin, [json.dumps(fresh), json.dumps({**fresh, "user_id": "u2"}), json.dumps(fresh)])
    assert result["imported"] == 1 and result["skipped"] == 1 and [e["line"] for e in result["errors"]] == [2]


def test_an_import_body_may_be_up_to_max_body_bytes_while_other_admin_bodies_stop_at_1_mib(start_gateway) -> None:
    gw = start_gateway(max_body_bytes=3 * 1024 * 1024)
    padding = [0.5] * 100_000  # another embedder's vector: ignored (re-embedded), but it is body bytes
    lines = [json.dumps({"id": f"big-{i}", "tenant": "big-t", "user_id": "u1", "text": f"I own {i} bikes", "embedder": "other", "vector": padding})
             for i in range(4)]
    body = "\n".join(lines).encode()
    assert 1024 * 1024 < len(body) < 3 * 1024 * 1024
    with gw.admin() as admin:
        assert admin.post("/import", content=body).json()["imported"] == 4
        over = admin.post("/import", content=body + b"\n" + body)
        assert over.status_code == 413 and over.json()["error"]["code"] == "request_too_large"
        big_json = admin.post("/tenants/big-t/users/u1/memories", content=json.dumps({"text": "I ski", "pad": "x" * (1024 * 1024)}))
        assert big_json.status_code == 413


def test_a_memory_stored_with_a_time_out_of_range_before_the_checks_is_still_recalled(start_gateway, upstream: FakeUpstream, tmp_path: Path) -> None:
    data = tmp_path / "legacy"
    gw = start_gateway(data_dir=data, tenant_mode="none")
    with gw.admin() as admin:
        admin.post("/tenants/default/users/vera/memories", json={"text": "I drink green tea", "pinned": True}).raise_for_status()
        [row] = [json.loads(line) for line in admin.get("/export", params={"tenant": "default", "vectors": "true"}).text.splitlines()]
    gw.stop()

    async def store_legacy_row() -> None:  # what an import accepted before it checked times
        store = await MemoryStore.open(str(data / "lancedb"), row["embedder"], len(row["vector"]))
        vector = np.asarray(row["vector"], dtype=np.float32)
        await store.add([Memory("legacy-1", "default", "vera", "I drink oolong at night", vector=vector / np.linalg.norm(vector),
                                created_at=1e300, updated_at=1e300, last_used_at=1e300, pinned=True, tokens=8)])
        await store.aclose()

    asyncio.run(store_legacy_row())
    gw = start_gateway(data_dir=data, tenant_mode="none")
    response = httpx.post(gw.v1 + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "What tea should I drink?"}]},
                          headers={"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": "vera"}, timeout=30)
    assert response.status_code == 200 and response.headers["X-Memory-Status"] == "ok", gw.log()[-3000:]
    assert '(undated, fact) "I drink oolong at night"' in system_text(upstream.last_chat())


hostile_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=12),
    st.sampled_from(["\ud800", "a\udfffb", "x" * 4001, " ", "a b", "x' OR '1'='1", "fact", "default", 946684800, 2**63 - 1, 2**63, 1e300]),
    st.lists(st.integers() | st.floats() | st.text(max_size=3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
FIELDS = ("id", "tenant", "user_id", "text", "kind", "agent_id", "session_id", "created_at", "updated_at", "last_used_at", "use_count",
          "confidence", "source_request_id", "superseded_by", "pinned", "flagged", "tokens", "vector", "embedder")
import_lines_strategy = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(FIELDS), hostile_values, max_size=4),
        st.sampled_from(["same-dim", "nested", "huge"]).map(lambda shape: {"vector": shape, "embedder": "same"}),
    ),
    min_size=1, max_size=5,
)


_EMBEDDER: dict[str, tuple[str, int]] = {}


def _embedder(admin: httpx.Client) -> tuple[str, int]:
    """The gateway's embedder name and dimension, read once from an export with vectors."""
    if str(admin.base_url) in _EMBEDDER:
        return _EMBEDDER[str(admin.base_url)]
    made = admin.post("/tenants/fz-seed/users/u1/memories", json={"text": "I seed"}).json()
    [row] = [json.loads(line) for line in admin.get("/export", params={"tenant": "fz-seed", "user": "u1", "vectors": "true"}).text.splitlines()]
    assert row["id"] == made["id"]
    _EMBEDDER[str(admin.base_url)] = row["embedder"], len(row["vector"])
    return _EMBEDDER[str(admin.base_url)]


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=import_lines_strategy, seed=st.integers(0, 10**6))
def test_any_import_line_is_imported_skipped_or_reported_never_a_500(admin: httpx.Client, lines: list[dict], seed: int) -> None:
    embedder, dim = _embedder(admin)
    body = []
    for number, overrides in enumerate(lines):
        row = {"id": f"fz-{seed}-{number}", "tenant": "fz-t", "user_id": f"u{seed % 7}", "text": f"I collect {seed} stamps", **overrides}
        shape = row.get("vector")
        if row.get("embedder") == "same":
            row["embedder"] = embedder
            row["vector"] = {"same-dim": [0.25] * dim, "nested": [[0.25, 0.5]] * dim, "huge": [10**400] * dim}.get(str(shape), shape)
        body.append(json.dumps(row))
    response = admin.post("/import", content="\n".join(body))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["imported"] + result["skipped"] + result["failed"] == len(body)
    assert all(isinstance(e["line"], int) and e["message"] for e in result["errors"])
