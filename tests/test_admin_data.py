"""Export and import through HTTP: every field round-trips, vectors are reused only from the same
embedder, bad lines are reported by number, ids make import idempotent."""

from __future__ import annotations

import json
import time
from typing import Iterator

import httpx
import pytest

from .harness import Gateway


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client


def export(admin: httpx.Client, **params: str) -> list[dict]:
    response = admin.get("/export", params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson"), response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_export_round_trips_every_field_into_another_scope(admin: httpx.Client) -> None:
    made = admin.post("/tenants/exp-a/users/u1/memories", json={"text": "I use vim", "kind": "preference", "pinned": True, "confidence": 0.7}).json()
    admin.post("/tenants/exp-a/users/u2/memories", json={"text": "I use emacs"})
    rows = export(admin, tenant="exp-a", user="u1")
    assert len(rows) == 1 and "vector" not in rows[0] and "embedder" not in rows[0]
    assert rows[0] == made  # every public field: timestamps, use_count, pinned, flagged, superseded_by...
    assert {r["user_id"] for r in export(admin, tenant="exp-a")} == {"u1", "u2"}
    assert {"exp-a"} <= {r["tenant"] for r in export(admin)}

    # Ids are global: a copy into another tenant takes a new id (its own one is an error there, see test_import_edges.py).
    copied = {**rows[0], "tenant": "exp-b", "id": "exp-copy"}
    assert admin.post("/import", content=json.dumps(copied)).json() == {"imported": 1, "skipped": 0, "failed": 0, "errors": []}
    assert export(admin, tenant="exp-b", user="u1") == [copied]
    assert export(admin, tenant="exp-a", user="u1") == [made]
    assert admin.post("/import", content=json.dumps(copied)).json()["skipped"] == 1

def test_vectors_are_reused_from_the_same_embedder_and_re_embedded_otherwise(admin: httpx.Client) -> None:
    admin.post("/tenants/vec-a/users/u1/memories", json={"text": "My cat is called Pixel"})
    [row] = export(admin, tenant="vec-a", user="u1", vectors="true")
    assert row["embedder"] and len(row["vector"]) > 16
    # Same embedder: the vector is taken as is (a deliberately odd one proves it is not recomputed).
    odd = [1.0] + [0.0] * (len(row["vector"]) - 1)
    foreign = [0.5] * 7
    lines = [
        json.dumps({**row, "id": "vec-same", "tenant": "vec-b", "vector": odd}),
        json.dumps({**row, "id": "vec-other", "tenant": "vec-b", "embedder": "some-other-model", "vector": foreign}),
        json.dumps({**row, "id": "vec-none", "tenant": "vec-b", "vector": None}),
    ]
    assert admin.post("/import", content="\n".join(lines)).json()["imported"] == 3
    by_id = {r["id"]: r["vector"] for r in export(admin, tenant="vec-b", vectors="true")}
    assert by_id["vec-same"] == odd
    assert by_id["vec-other"] == pytest.approx(row["vector"], abs=1e-5) and by_id["vec-none"] == pytest.approx(row["vector"], abs=1e-5)


def test_bad_lines_are_reported_by_line_number_and_the_rest_imported(admin: httpx.Client) -> None:
    ok = {"id": "bad-ok", "tenant": "bad-t", "user_id": "u1", "text": "I run", "created_at": time.time() - 86400}
    lines = [
        json.dumps(ok), "[1, 2]", json.dumps({**ok, "id": "bad 1"}), json.dumps({**ok, "id": "bad-2", "text": "  "}),
        json.dumps({**ok, "id": "bad-3", "confidence": 2}), json.dumps({**ok, "id": "bad-4", "created_at": "yesterday"}),
        json.dumps({**ok, "id": "bad-5", "pinned": "yes"}), json.dumps({**ok, "id": "bad-6", "vector": [float("nan")] * 3, "embedder": "x"}),
        json.dumps({k: v for k, v in ok.items() if k != "user_id"}),
    ]
    result = admin.post("/import", content="\n".join(lines)).json()
    assert result["imported"] == 2 and result["failed"] == 7  # line 8's NaN vector is another embedder's: re-embedded
    assert [e["line"] for e in result["errors"]] == [2, 3, 4, 5, 6, 7, 9]
    messages = {e["line"]: e["message"] for e in result["errors"]}
    assert "JSON object" in messages[2] and "id" in messages[3] and "text" in messages[4]
    assert "confidence" in messages[5] and "created_at" in messages[6] and "pinned" in messages[7] and "user_id" in messages[9]


def test_a_body_that_is_not_utf8_is_refused(admin: httpx.Client) -> None:
    response = admin.post("/import", content=b"\xff\xfe{}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_jsonl"


def test_export_of_a_user_needs_the_tenant(admin: httpx.Client) -> None:
    response = admin.get("/export", params={"user": "u1"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tenant"
