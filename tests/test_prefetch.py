"""The start-up prefetch through a real restart: /readyz says ready only once the most recently active users
are in the hot tier, so their first request after a deploy is a hot-tier hit, not a store read."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .harness import Gateway
from .memory_helpers import chat, injected_texts, tenant_of

KEY = "sk-prefetch"
TENANT = tenant_of(KEY)
DAY = 86400.0


def seed(gw: Gateway) -> None:
    """Five users; by latest write or use: u1 (recalled just now), then u5, u4, u3, u2."""
    now = time.time()
    lines = []
    for n in range(1, 6):
        written = now - (10 - n) * DAY
        row = {"id": f"pf-{n}", "tenant": TENANT, "user_id": f"u{n}", "text": f"User {n} grows tomatoes on the balcony",
               "created_at": written, "updated_at": written}
        if n == 1:
            row.update(created_at=now - 30 * DAY, updated_at=now - 30 * DAY, last_used_at=now - 60, use_count=3)
        lines.append(json.dumps(row))
    with gw.admin() as admin:
        assert admin.post("/import", content="\n".join(lines)).json()["imported"] == 5


def misses(gw: Gateway) -> float:
    return gw.metric("memgate_hot_tier_lookups_total", result="miss")


def ask(gw: Gateway, user: str) -> str:
    """How many memories the user's question got injected."""
    response = chat(gw, KEY, user, [{"role": "user", "content": "What grows on my balcony?"}])
    assert response.status_code == 200
    return response.headers["X-Memory-Injected"]


def test_after_a_restart_the_most_recent_users_are_warm_before_ready_and_their_first_request_hits(start_gateway, upstream, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_gateway(data_dir=data, prefetch_users=3)
    assert first.metric("memgate_prefetch_users") == 0  # an empty store: nothing to warm
    seed(first)
    first.stop()

    gw = start_gateway(data_dir=data, prefetch_users=3)  # returns at the first 200 from /readyz
    assert gw.metric("memgate_prefetch_users") == 3 and gw.metric("memgate_prefetch_seconds") > 0
    assert misses(gw) == 0
    hits = gw.metric("memgate_hot_tier_lookups_total", result="hit")
    for user in ("u1", "u5", "u4"):  # the three most recently active, whatever their age of creation
        assert ask(gw, user) == "1"
        assert injected_texts(upstream.last_chat()) == [f"User {user[1]} grows tomatoes on the balcony"]
    assert misses(gw) == 0 and gw.metric("memgate_hot_tier_lookups_total", result="hit") == hits + 3
    assert ask(gw, "u2") == "1" and misses(gw) == 1  # beyond --prefetch-users: loaded on its first request
    gw.stop()

    cold = start_gateway(data_dir=data, prefetch_users=0)
    assert cold.metric("memgate_prefetch_users") == 0
    assert ask(cold, "u1") == "1" and misses(cold) == 1
