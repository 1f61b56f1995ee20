"""Three replicas on one S3-compatible store (moto, started here), each with its own data dir and
SQLite file: what one learns the others recall, history and dedupe are shared, forget reaches every
replica within its bound and is never undone by a queued job, supersedes survive concurrent updates,
hygiene on every replica at once removes and records each memory once, and a replica killed with -9
loses nothing it accepted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx
import pytest

from .extraction_helpers import KEY, TENANT, flush, history, memories, say
from .fake_upstream import FakeUpstream
from .harness import Gateway
from .object_store import ObjectStore

BOUND = 2.0  # seconds: learned on one replica -> recalled on another; forget on one -> nothing injected anywhere
LLM = {"X-Extractor": "llm"}  # a rule sends these exchanges to the llm extractor, whose calls the test can hold
RULES = """
[[rule]]
name = "capped"
match = { user = "cap-*" }
max_memories = 2

[[rule]]
name = "held"
match = { header = { "X-Extractor" = "llm" } }
extractor = "llm"
"""


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    store = ObjectStore(tmp_path_factory.mktemp("moto")).start()
    yield store
    store.stop()


@pytest.fixture(scope="module")
def replicas(s3: ObjectStore, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    root = tmp_path_factory.mktemp("replicas")
    rules = root / "rules"
    rules.mkdir()
    (rules / "10-replicas.toml").write_text(RULES)
    uri = s3.new_uri()
    started: list[Gateway] = []
    try:
        for name in "abc":  # one after another: the first creates the tables
            gw = Gateway(upstream.url, root / name, rules, store_uri=uri, tenant_mode="none", hygiene_interval=0, extraction_workers=1,
                         extraction_api_key="sk-extract")
            gw.env.update(s3.env)
            started.append(gw.start())
        yield started
    finally:
        for gw in started:
            gw.stop()


def ask(gw: Gateway, user: str, question: str) -> httpx.Response:
    payload = {"model": "m", "messages": [{"role": "user", "content": question}]}
    response = httpx.post(gw.v1 + "/chat/completions", json=payload, headers={"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def injected(gw: Gateway, user: str, question: str) -> int:
    return int(ask(gw, user, question).headers["X-Memory-Injected"])


def within(seconds: float, predicate: Callable[[], bool]) -> float | None:
    """Seconds until `predicate` first held (polled), or None if it did not within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def admin(gw: Gateway, method: str, path: str, **kwargs: Any) -> Any:
    with gw.admin() as client:
        response = client.request(method, path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_what_one_replica_learns_another_recalls_within_the_bound_and_every_one_lists_at_once(replicas: list[Gateway]) -> None:
    a, b, c = replicas
    say(a, "rita", "I prefer Terraform over CloudFormation.")
    flush(a)
    assert [m["text"] for m in memories(c, "rita")] == ["User prefers Terraform over CloudFormation"]  # the first listing after the commit
    took = within(BOUND, lambda: injected(b, "rita", "Which infrastructure tool do I like?") >= 1)
    assert took is not None, f"replica B did not recall rita's memory within {BOUND} s"


def test_the_history_of_a_memory_is_complete_and_the_same_through_every_replica(replicas: list[Gateway]) -> None:
    a, b, c = replicas
    created = admin(a, "POST", f"/tenants/{TENANT}/users/hugo/memories", json={"text": "My bike is a green Brompton"})
    admin(b, "PATCH", f"/tenants/{TENANT}/users/hugo/memories/{created['id']}", json={"text": "My bike is a red Brompton"})
    admin(c, "DELETE", f"/tenants/{TENANT}/users/hugo/memories/{created['id']}")
    expected = [("add", "admin"), ("update", "admin"), ("delete", "admin")]
    seen = [[(h["action"], h["cause"]) for h in history(gw, "hugo", created["id"])] for gw in replicas]
    assert seen == [expected] * 3


def test_the_same_fact_through_two_replicas_at_once_is_one_memory(replicas: list[Gateway]) -> None:
    a, b, c = replicas
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda gw: say(gw, "hal", "My locker number is 42."), (a, b)))
        list(pool.map(flush, (a, b)))
    found = memories(c, "hal")
    assert [m["text"] for m in found] == ["User's locker number is 42"]
    assert [h["action"] for h in history(c, "hal", found[0]["id"])].count("add") == 1  # the later one may refresh it: a restatement
    assert [m["text"] for m in memories(c, "hal", tier="archival")] == ["My locker number is 42."]  # the user's words: one episode too


def test_a_supersede_is_never_undone_by_a_concurrent_update_on_another_replica(replicas: list[Gateway]) -> None:
    a, b, c = replicas
    say(a, "sue", "I live in Paris.")
    flush(a)
    [paris] = memories(c, "sue")
    assert within(10, lambda: injected(b, "sue", "Where do I live?") >= 1) is not None  # B's reconcile will see Paris
    path = f"/tenants/{TENANT}/users/sue/memories/{paris['id']}"

    def patch_repeatedly() -> int:
        done = 0
        for confidence in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            admin(c, "PATCH", path, json={"confidence": confidence})
            done += 1
        return done

    with ThreadPoolExecutor(2) as pool:
        patches = pool.submit(patch_repeatedly)
        say(b, "sue", "I live in Berlin now.")
        flush(b)
        assert patches.result() == 6
    for gw in replicas:
        old = admin(gw, "GET", path)
        assert old["superseded_by"] is not None and old["confidence"] == 0.95  # both changes kept
        assert [m["text"] for m in memories(gw, "sue")] == ["User lives in Berlin"]
        assert [h["action"] for h in history(gw, "sue", paris["id"])].count("supersede") == 1


def test_forget_on_one_replica_stops_every_replica_injecting_within_the_bound(replicas: list[Gateway]) -> None:
    a, b, c = replicas
    admin(a, "POST", f"/tenants/{TENANT}/users/fay/memories", json={"text": "My cat is called Miso"})
    for gw in (b, c):  # fay is in both hot tiers
        assert within(10, lambda: injected(gw, "fay", "What is my cat called?") == 1) is not None
    admin(a, "DELETE", f"/tenants/{TENANT}/users/fay")
    started = time.monotonic()
    for gw in (b, c):
        took = within(BOUND + 1, lambda: injected(gw, "fay", "What is my cat called?") == 0)
        assert took is not None and time.monotonic() - started <= BOUND, f"{gw.url} still injected fay's memory {time.monotonic() - started:.2f} s after the forget"
        assert [injected(gw, "fay", "What is my cat called?") for _ in range(5)] == [0] * 5  # and stays clear


def test_jobs_queued_and_running_on_another_replica_before_a_forget_never_write_the_user_back(replicas: list[Gateway], upstream: FakeUpstream) -> None:
    a, b, c = replicas
    upstream.hold_extractions.clear()
    try:
        calls = upstream.extraction_calls
        say(c, "gus", "My locker number is 7.", headers=LLM)
        assert upstream.wait_for(lambda: upstream.extraction_calls > calls, timeout=30)  # C's batch is inside its extraction call
        say(c, "gus", "My favourite colour is teal.", headers=LLM)  # queued on C behind it
        admin(a, "DELETE", f"/tenants/{TENANT}/users/gus")
    finally:
        upstream.hold_extractions.set()
    flush(c)
    assert [memories(gw, "gus") + memories(gw, "gus", tier="archival") for gw in replicas] == [[], [], []]
    say(b, "gus", "I live in Oslo.")  # after the forget: learned as usual
    flush(b)
    assert [m["text"] for m in memories(a, "gus")] == ["User lives in Oslo"]


def test_hygiene_on_every_replica_at_once_removes_and_records_each_memory_once(replicas: list[Gateway]) -> None:
    a, b, c = replicas
    ids = [admin(a, "POST", f"/tenants/{TENANT}/users/cap-ann/memories", json={"text": f"Fact number {i} about ann"})["id"] for i in range(6)]
    before = sum(gw.metric("memgate_hygiene_removed_total", reason="cap") for gw in replicas)
    with ThreadPoolExecutor(3) as pool:
        passes = list(pool.map(lambda gw: admin(gw, "POST", "/hygiene/run"), replicas))
    kept = {m["id"] for m in memories(b, "cap-ann")}
    assert len(kept) == 2 and kept <= set(ids)
    assert sum(p["removed"]["cap"] for p in passes) == 4
    assert sum(gw.metric("memgate_hygiene_removed_total", reason="cap") for gw in replicas) - before == 4
    for mid in set(ids) - kept:
        for gw in replicas:
            assert [h["action"] for h in history(gw, "cap-ann", mid)] == ["add", "evict"]


def test_a_replica_killed_with_sigkill_loses_nothing_it_accepted_and_the_others_keep_serving(replicas: list[Gateway], upstream: FakeUpstream) -> None:
    a, b, c = replicas
    users = [f"kim{i}" for i in range(8)]
    upstream.hold_extractions.clear()
    try:
        calls = upstream.extraction_calls
        for i, user in enumerate(users):
            say(c, user, f"My locker number is {100 + i}.", headers=LLM)  # answered: C committed the job
        assert upstream.wait_for(lambda: upstream.extraction_calls > calls, timeout=30)
        c.kill()
    finally:
        upstream.hold_extractions.set()
    assert injected(a, "rita", "Which infrastructure tool do I like?") >= 1  # the others serve on
    c.start()
    flush(c)
    for i, user in enumerate(users):
        assert [m["text"] for m in memories(a, user)] == [f"The user's locker number is {100 + i}"], user
