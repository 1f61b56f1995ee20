"""Memory hygiene through HTTP: the per-user cap evicts the least useful (never pinned), TTL and
unused expiry follow tenant/user rules, removals are in the history and metrics, recall stops
injecting what was removed, and a pass leaves no removed or forgotten text in any file of the data
dir. Old memories are seeded by importing JSONL with old timestamps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway, with_rules
from .memory_helpers import chat, memory_block, tenant_of

DAY = 86400.0
KEY = "sk-hygiene-ttl"
TTL_TENANT = tenant_of(KEY)
CAP = 3
RULES = f"""
[[rule]]
name = "short-lived"
match = {{ tenant = "{TTL_TENANT}" }}
ttl_days = 30

[[rule]]
name = "idle"
match = {{ tenant = "idle-*", user = "u*" }}
expire_unused_days = 10

[[rule]]
name = "model-specific"  # also matches on model: never decides retention
match = {{ tenant = "model-*", model = "gpt-4*" }}
ttl_days = 1
"""


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = with_rules(upstream.url, tmp_path_factory.mktemp("hygiene"), "retention.toml", RULES, max_memories_per_user=CAP, hygiene_interval=0).start()
    yield gateway
    gateway.stop()


def seed(admin: httpx.Client, tenant: str, user: str, rows: list[dict[str, Any]]) -> None:
    now = time.time()
    lines = []
    for row in rows:
        age = row.pop("age_days", 0.0)
        lines.append(json.dumps({"tenant": tenant, "user_id": user, "created_at": now - age * DAY, **row}))
    result = admin.post("/import", content="\n".join(lines)).json()
    assert result == {"imported": len(rows), "skipped": 0, "failed": 0, "errors": []}


def texts(admin: httpx.Client, tenant: str, user: str) -> set[str]:
    response = admin.get(f"/tenants/{tenant}/users/{user}/memories", params={"limit": 500})
    return {m["text"] for m in response.json()["memories"]} if response.status_code == 200 else set()


def history(admin: httpx.Client, tenant: str, user: str, mid: str) -> list[tuple[str, str]]:
    return [(h["action"], h["cause"]) for h in admin.get(f"/tenants/{tenant}/users/{user}/memories/{mid}/history").json()["history"]]


def run(admin: httpx.Client) -> dict[str, int]:
    response = admin.post("/hygiene/run")
    assert response.status_code == 200, response.text
    return response.json()["removed"]


def test_the_cap_evicts_the_least_useful_and_never_a_pinned_memory(gw: Gateway, admin: httpx.Client) -> None:
    now = time.time()
    seed(admin, "cap-t", "u1", [
        {"id": "cap-pinned", "text": "My name is Ada", "pinned": True, "age_days": 400, "confidence": 0.2},
        {"id": "cap-used", "text": "I deploy with Helm", "use_count": 12, "last_used_at": now - 3600, "age_days": 90},
        {"id": "cap-some", "text": "I like dark roast coffee", "use_count": 3, "last_used_at": now - 5 * DAY, "age_days": 60},
        {"id": "cap-unsure", "text": "I might move to Berlin", "confidence": 0.3, "age_days": 200},
        {"id": "cap-stale", "text": "I was at a conference", "age_days": 120},
    ])
    before = gw.metric("memgate_hygiene_removed_total", reason="cap")
    assert run(admin)["cap"] == 2
    assert texts(admin, "cap-t", "u1") == {"My name is Ada", "I deploy with Helm", "I like dark roast coffee"}
    assert gw.metric("memgate_hygiene_removed_total", reason="cap") - before == 2
    assert history(admin, "cap-t", "u1", "cap-unsure") == [("add", "import"), ("evict", "hygiene")]
    assert history(admin, "cap-t", "u1", "cap-stale")[-1] == ("evict", "hygiene")
    assert run(admin)["cap"] == 0  # at the cap now: a second pass removes nothing


def test_ttl_expires_old_memories_for_the_rules_tenant_and_recall_stops_injecting_them(gw: Gateway, admin: httpx.Client, upstream: FakeUpstream) -> None:
    seed(admin, TTL_TENANT, "tess", [
        {"id": "ttl-old", "text": "I am training for the Berlin marathon", "age_days": 45},
        {"id": "ttl-new", "text": "I am training for the Oslo marathon", "age_days": 2},
        {"id": "ttl-pinned", "text": "I am training for the Boston marathon", "age_days": 45, "pinned": True},
    ])
    seed(admin, "model-t", "tess", [{"id": "model-old", "text": "I am training for a marathon", "age_days": 45}])
    question = [{"role": "user", "content": "Which marathon am I training for?"}]
    assert "Berlin" in memory_block((chat(gw, KEY, "tess", question), upstream.last_chat())[1])  # loaded in the hot tier

    before = gw.metric("memgate_hygiene_removed_total", reason="ttl")
    assert run(admin)["ttl"] == 1
    assert gw.metric("memgate_hygiene_removed_total", reason="ttl") - before == 1
    assert texts(admin, TTL_TENANT, "tess") == {"I am training for the Oslo marathon", "I am training for the Boston marathon"}
    assert history(admin, TTL_TENANT, "tess", "ttl-old") == [("add", "import"), ("expire", "hygiene")]
    assert texts(admin, "model-t", "tess") == {"I am training for a marathon"}  # a model-matching rule keeps no-TTL defaults

    block = memory_block((chat(gw, KEY, "tess", question), upstream.last_chat())[1])
    assert "Oslo" in block and "Boston" in block and "Berlin" not in block


def test_memories_never_recalled_within_the_window_expire(gw: Gateway, admin: httpx.Client) -> None:
    now = time.time()
    seed(admin, "idle-t", "u7", [
        {"id": "idle-never", "text": "I collect stamps", "age_days": 20},
        {"id": "idle-recent", "text": "I play chess", "age_days": 20, "use_count": 2, "last_used_at": now - 2 * DAY},
        {"id": "idle-long-ago", "text": "I knit", "age_days": 40, "use_count": 5, "last_used_at": now - 15 * DAY},
        {"id": "idle-fresh", "text": "I bake bread", "age_days": 1},
    ])
    seed(admin, "idle-t", "x7", [{"id": "idle-other-user", "text": "I collect coins", "age_days": 20}])  # user glob u* does not match
    assert run(admin)["unused"] == 2
    assert texts(admin, "idle-t", "u7") == {"I play chess", "I bake bread"}
    assert texts(admin, "idle-t", "x7") == {"I collect coins"}
    assert history(admin, "idle-t", "u7", "idle-never")[-1] == ("expire", "hygiene")


def test_hygiene_runs_by_itself_every_interval(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway(max_memories_per_user=1, hygiene_interval=0.5)
    with gw.admin() as admin:
        seed(admin, "auto-t", "u1", [{"id": "auto-1", "text": "I surf", "age_days": 3}, {"id": "auto-2", "text": "I ski", "use_count": 4, "last_used_at": time.time()}])
        deadline = time.monotonic() + 20
        while texts(admin, "auto-t", "u1") != {"I ski"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert texts(admin, "auto-t", "u1") == {"I ski"}
    assert gw.metric("memgate_hygiene_removed_total", reason="cap") == 1


def files_holding(root: Path, words: list[str]) -> dict[str, list[str]]:
    """Each word (any case, so the full-text index's lowercased tokens count) -> files under `root` whose raw bytes hold it."""
    found: dict[str, list[str]] = {word: [] for word in words}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes().lower()
        for word in words:
            if word.lower().encode() in raw:
                found[word].append(str(path.relative_to(root)))
    return found


def test_forgotten_expired_and_evicted_text_is_gone_from_every_file_of_the_data_dir_after_a_pass(gw: Gateway, admin: httpx.Client, upstream: FakeUpstream) -> None:
    run(admin)  # a first pass after start rewrites every fragment; this test is about the ones after it
    seed(admin, TTL_TENANT, "vera", [
        {"id": "wipe-ttl", "text": "I rowed across Lake Wakatipuq", "age_days": 45},
        {"id": "wipe-kept", "text": "I sail on Lake Ulvikqa", "age_days": 1},
    ])
    seed(admin, "wipe-t", "u2", [{"id": f"wipe-cap-{i}", "text": f"I read book number {i}", "use_count": 5, "last_used_at": time.time()} for i in range(CAP)]
         + [{"id": "wipe-cap-doomed", "text": "I once owned a ferret named Quozzlebert", "confidence": 0.1, "age_days": 300}])
    # Forgotten: learned through the proxy (so the text also passed through the queue) and edited by an admin.
    chat(gw, KEY, "fay", [{"role": "user", "content": "I live in Zanthorpe."}]).raise_for_status()
    assert admin.post("/queue/flush").json()["done"] is True
    [learned] = admin.get(f"/tenants/{TTL_TENANT}/users/fay/memories").json()["memories"]
    assert "Zanthorpe" in learned["text"]
    admin.patch(f"/tenants/{TTL_TENANT}/users/fay/memories/{learned['id']}", json={"text": "Lives in Zanthorpe near Yarrowmeq"}).raise_for_status()
    gone = ["Wakatipuq", "Quozzlebert", "Zanthorpe", "Yarrowmeq"]
    before = files_holding(gw.data_dir, gone + ["Ulvikqa"])
    assert all(before.values()), before  # the grep sees text where it is

    assert admin.delete(f"/tenants/{TTL_TENANT}/users/fay").status_code == 200
    response = admin.post("/hygiene/run")
    assert response.status_code == 200 and response.json()["removed"]["ttl"] == 1 and response.json()["removed"]["cap"] == 1
    assert response.json()["erased"] is True
    after = files_holding(gw.data_dir, gone + ["Ulvikqa"])
    assert {word: after[word] for word in gone} == {word: [] for word in gone}
    assert after["Ulvikqa"]  # what was kept is still there
    assert texts(admin, TTL_TENANT, "vera") == {"I sail on Lake Ulvikqa"}
    changes = admin.get(f"/tenants/{TTL_TENANT}/users/vera/memories/wipe-ttl/history").json()["history"]
    assert [(c["action"], c["old_text"], c["new_text"]) for c in changes] == [("add", None, None), ("expire", None, None)]  # when and why, no text


def test_a_memory_removed_on_one_replica_has_one_redacted_history_on_both(start_gateway, tmp_path: Path) -> None:
    """History lives in the shared store: B's delete of a memory A added is one history, without its
    text, read the same through both replicas; no file of either replica or of the store keeps the text."""
    shared = str(tmp_path / "shared-lancedb")
    a = start_gateway(data_dir=tmp_path / "a", store_uri=shared, hygiene_interval=0)
    b = start_gateway(data_dir=tmp_path / "b", store_uri=shared, hygiene_interval=0)
    with a.admin() as admin_a, b.admin() as admin_b:
        created = admin_a.post("/tenants/rep-t/users/u1/memories", json={"text": "I grow Plumquatch tomatoes"}).json()
        path = f"/tenants/rep-t/users/u1/memories/{created['id']}"
        deadline = time.monotonic() + 20
        while admin_b.delete(path).status_code == 404 and time.monotonic() < deadline:  # until B's reads see A's commit
            time.sleep(0.05)
        assert admin_b.post("/hygiene/run").json()["erased"] is True
        assert admin_a.post("/hygiene/run").status_code == 200
        redacted = [("add", None, None), ("delete", None, None)]
        for admin in (admin_a, admin_b):
            assert [(h["action"], h["old_text"], h["new_text"]) for h in admin.get(path + "/history").json()["history"]] == redacted
    assert files_holding(tmp_path, ["Plumquatch"]) == {"Plumquatch": []}  # both replicas' SQLite files and the shared store


def test_hygiene_run_needs_the_admin_token(gw: Gateway) -> None:
    assert httpx.post(gw.url + "/admin/v1/hygiene/run").status_code == 401
