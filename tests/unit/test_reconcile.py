"""extraction/reconcile.py: memory ids, and the plan (add, refresh, supersede) the Reconciler makes.

The Reconciler talks to a MemoryService only through embedder.embed, nearest, write, update and
supersede, so a small in-memory stand-in lets the planning logic run without LanceDB.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Sequence

import numpy as np

from gateway.extraction.base import Candidate, ExtractionError
from gateway.extraction.reconcile import CLOSE, DUPLICATE, OPPOSED, Group, Reconciler, Sourced, memory_id
from gateway.memory.records import Memory

DIM = 8


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


def at_cosine(base: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector whose cosine with `base` (a unit vector along axis 0..) is `cosine`."""
    other = np.zeros(DIM, dtype=np.float32)
    other[DIM - 1] = 1.0
    return (cosine * base + np.sqrt(max(0.0, 1 - cosine**2)) * other).astype(np.float32)


class FakeEmbedder:
    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    async def embed(self, texts: list[str]) -> np.ndarray:
        # Unknown texts get a vector of their own: orthogonal-ish to everything else.
        out = []
        for t in texts:
            if t not in self.vectors:
                rng = np.random.default_rng(abs(hash(t)) % 2**32)
                v = rng.normal(size=DIM).astype(np.float32)
                v[:3] = 0
                v[DIM - 1] = 0
                self.vectors[t] = v / np.linalg.norm(v)
            out.append(self.vectors[t])
        return np.stack(out)


class FakeMemory:
    """The MemoryService calls the Reconciler makes, over a list."""

    def __init__(self, vectors: dict[str, np.ndarray] | None = None) -> None:
        self.embedder = FakeEmbedder(vectors or {})
        self.rows: list[Memory] = []
        self.calls: list[tuple[Any, ...]] = []

    def existing(self, text: str, user: str = "u", agent: str | None = None, id: str | None = None, confidence: float = 0.5) -> Memory:
        vector = asyncio.run(self.embedder.embed([text]))[0]
        m = Memory(id=id or str(uuid.uuid4()), tenant="t", user_id=user, text=text, agent_id=agent, vector=vector, confidence=confidence)
        self.rows.append(m)
        return m

    async def warm_users(self, keys: list[tuple[str, str]]) -> None:
        pass  # nothing cached here: `nearest` reads the rows

    async def nearest(self, tenant: str, user: str, vector: np.ndarray, k: int) -> list[tuple[Memory, float]]:
        active = [m for m in self.rows if m.tenant == tenant and m.user_id == user and m.superseded_by is None]
        scored = sorted(((m, float(np.dot(m.vector, vector))) for m in active), key=lambda p: -p[1])
        return scored[:k]

    async def write(self, memories: list[Memory], cause: Any = "extraction", *, learned: Any = None) -> list[Memory]:
        self.calls.append(("write", [m.text for m in memories], cause))
        have = {m.id for m in self.rows}
        fresh = [m for m in memories if m.id not in have]
        self.rows += fresh
        return fresh

    async def update(self, tenant: str, user: str, id: str, *, confidence: float, cause: str, action: str, learned: Any = None) -> None:
        self.calls.append(("update", id, confidence, cause, action))

    async def revive(self, tenant: str, user: str, id: str, cause: str, *, learned: Any = None) -> None:
        self.calls.append(("revive", id))
        for m in self.rows:
            if m.id == id:
                m.superseded_by = None

    async def supersede(self, tenant: str, user: str, old_id: str, new_id: str, cause: str, new_text: str | None = None, *, learned: Any = None) -> None:
        self.calls.append(("supersede", old_id, new_id, new_text))
        for m in self.rows:
            if m.id == old_id:
                m.superseded_by = new_id


def group(*texts: str, job_id: int = 1, user: str = "u", agent: str | None = None, judge: Any = None, confidence: float = 0.8) -> Group:
    items = [Sourced(Candidate(t, "fact", confidence), job_id, i, "req") for i, t in enumerate(texts)]
    return Group("t", user, agent, items, "extraction", judge)


def apply(memory: FakeMemory, *groups: Group) -> Any:
    return asyncio.run(Reconciler(memory).apply(list(groups)))


def active(memory: FakeMemory, user: str = "u") -> list[str]:
    return sorted(m.text for m in memory.rows if m.user_id == user and m.superseded_by is None)


# -- memory_id ------------------------------------------------------------------------------------


def test_memory_id_is_the_same_for_every_restatement_of_a_fact_in_one_scope() -> None:
    assert memory_id("t", "u", None, "User lives in Paris") == memory_id("t", "u", None, "user lives in paris.")


def test_memory_id_differs_by_tenant_user_agent_and_fact() -> None:
    ids = {memory_id("t", "u", None, "User lives in Paris"), memory_id("t2", "u", None, "User lives in Paris"),
           memory_id("t", "u2", None, "User lives in Paris"), memory_id("t", "u", "a", "User lives in Paris"),
           memory_id("t", "u", None, "User lives in Rome")}
    assert len(ids) == 5


def test_memory_id_is_a_uuid5() -> None:
    assert uuid.UUID(memory_id("t", "u", None, "x")).version == 5


# -- the plan -------------------------------------------------------------------------------------


def test_nothing_to_reconcile_writes_nothing() -> None:
    memory = FakeMemory()
    plan = apply(memory)
    assert (plan.new, plan.refresh, plan.replace, memory.calls) == ([], {}, [], [])


def test_a_new_statement_is_added_with_its_derived_id() -> None:
    memory = FakeMemory()
    plan = apply(memory, group("User lives in Paris", job_id=3))
    mid = memory_id("t", "u", None, "User lives in Paris")
    assert [(m.id, m.text, m.tenant, m.user_id) for m in plan.new] == [(mid, "User lives in Paris", "t", "u")]
    assert plan.causes == {mid: "extraction"}


def test_new_memories_of_every_group_go_in_one_write() -> None:
    memory = FakeMemory()
    apply(memory, group("User lives in Paris", user="a"), group("User speaks French", user="b", job_id=2))
    writes = [c for c in memory.calls if c[0] == "write"]
    assert len(writes) == 1 and sorted(writes[0][1]) == ["User lives in Paris", "User speaks French"]


def test_a_restatement_refreshes_the_old_memory_instead_of_adding() -> None:
    memory = FakeMemory()
    old = memory.existing("User lives in Paris", confidence=0.5)
    plan = apply(memory, group("user really lives in Paris.", confidence=0.9))
    assert plan.new == []
    assert list(plan.refresh) == [old.id]
    assert ("update", old.id, 0.9, "extraction", "refresh") in memory.calls


def test_a_refresh_never_lowers_the_confidence() -> None:
    memory = FakeMemory()
    old = memory.existing("User lives in Paris", confidence=0.95)
    plan = apply(memory, group("User lives in Paris", confidence=0.6))
    assert plan.refresh[old.id][1] == 0.95


def test_a_near_identical_vector_is_the_same_memory_whatever_the_words() -> None:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User enjoys mountain walks": base, "User loves hiking": at_cosine(base, DUPLICATE + 0.01)})
    old = memory.existing("User enjoys mountain walks")
    plan = apply(memory, group("User loves hiking"))
    assert plan.new == [] and list(plan.refresh) == [old.id]


def test_a_close_vector_adding_a_content_word_is_a_new_memory() -> None:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User likes Vim": base, "User likes Vim and Emacs": at_cosine(base, (CLOSE + DUPLICATE) / 2)})
    memory.existing("User likes Vim")
    plan = apply(memory, group("User likes Vim and Emacs"))
    assert [m.text for m in plan.new] == ["User likes Vim and Emacs"]


def test_a_close_vector_adding_no_content_word_is_the_same_memory() -> None:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User likes Vim a lot": base, "User likes Vim": at_cosine(base, (CLOSE + DUPLICATE) / 2)})
    old = memory.existing("User likes Vim a lot")
    plan = apply(memory, group("User likes Vim"))
    assert plan.new == [] and list(plan.refresh) == [old.id]


def test_a_new_value_of_a_slot_supersedes_the_old_one() -> None:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User lives in Paris": base, "User lives in Berlin": at_cosine(base, 0.99)})
    old = memory.existing("User lives in Paris")
    plan = apply(memory, group("User lives in Berlin"))
    assert [m.text for m in plan.new] == ["User lives in Berlin"]
    assert [(o.id, s.text) for o, s, _ in plan.replace] == [(old.id, "User lives in Berlin")]
    assert active(memory) == ["User lives in Berlin"]


def test_a_close_denial_of_what_an_old_memory_affirms_supersedes_it() -> None:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User loves Java": base, "User dislikes Java": at_cosine(base, OPPOSED + 0.02)})
    old = memory.existing("User loves Java")
    plan = apply(memory, group("User dislikes Java"))
    assert [(o.id, s.text) for o, s, _ in plan.replace] == [(old.id, "User dislikes Java")]
    assert active(memory) == ["User dislikes Java"]


def test_a_distant_denial_sharing_a_word_supersedes_nothing() -> None:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User loves Java": base, "User dislikes Java": at_cosine(base, OPPOSED - 0.05)})
    memory.existing("User loves Java")
    plan = apply(memory, group("User dislikes Java"))
    assert plan.replace == [] and active(memory) == ["User dislikes Java", "User loves Java"]


def test_new_rows_are_written_before_anything_is_superseded() -> None:
    memory = FakeMemory()
    memory.existing("User lives in Paris")
    apply(memory, group("User lives in Berlin"))
    assert [c[0] for c in memory.calls] == ["write", "supersede"]


def test_a_negation_supersedes_what_it_negates() -> None:
    memory = FakeMemory()
    old = memory.existing("User uses Slack for chat")
    plan = apply(memory, group("User no longer uses Slack"))
    assert [o.id for o, _, _ in plan.replace] == [old.id]


def test_a_new_value_in_another_script_supersedes_the_old_one() -> None:
    memory = FakeMemory()
    memory.existing("User lives in Москве")
    apply(memory, group("User lives in Токио"))
    assert active(memory) == ["User lives in Токио"]


def test_said_and_corrected_in_one_batch_keeps_only_the_correction() -> None:
    memory = FakeMemory()
    plan = apply(memory, group("User lives in Paris", "User lives in Berlin"))
    assert [m.text for m in plan.new] == ["User lives in Berlin"]
    assert plan.replace == []


def test_the_same_statement_twice_in_a_batch_is_added_once() -> None:
    memory = FakeMemory()
    plan = apply(memory, group("User lives in Paris", "User lives in Paris."))
    assert [m.text for m in plan.new] == ["User lives in Paris"]


def test_replaying_a_job_writes_nothing_new() -> None:
    memory = FakeMemory()
    apply(memory, group("User lives in Paris", job_id=5))
    memory.calls.clear()
    plan = apply(memory, group("User lives in Paris", job_id=5))
    assert plan.new == [] and plan.refresh == {} and plan.replace == []
    assert memory.calls == []


def test_another_agents_memory_is_neither_refreshed_nor_superseded() -> None:
    memory = FakeMemory()
    memory.existing("User lives in Paris", agent="travel")
    plan = apply(memory, group("User lives in Berlin"))
    assert [m.text for m in plan.new] == ["User lives in Berlin"] and plan.replace == []


def test_new_memories_carry_the_candidates_kind_confidence_and_agent() -> None:
    memory = FakeMemory()
    items = [Sourced(Candidate("User prefers tea", "preference", 0.7), 1, 0, "req-9", "s1")]
    plan = apply(memory, Group("t", "u", "coder", items, "extraction"))
    m = plan.new[0]
    assert (m.kind, m.confidence, m.agent_id, m.session_id, m.source_request_id) == ("preference", 0.7, "coder", "s1", "req-9")


# -- the judge (llm extractor) --------------------------------------------------------------------


def judged(answer: tuple[str, int] | Exception) -> tuple[FakeMemory, Memory, Any]:
    base = unit(1, 0, 0)
    memory = FakeMemory({"User drinks coffee": base, "User enjoys espresso": at_cosine(base, 0.8)})
    old = memory.existing("User drinks coffee")
    asked: list[tuple[str, Sequence[str]]] = []

    async def judge(text: str, close: Sequence[str]) -> tuple[str, int]:
        asked.append((text, list(close)))
        if isinstance(answer, Exception):
            raise answer
        return answer

    plan = apply(memory, group("User enjoys espresso", judge=judge))
    assert asked == [("User enjoys espresso", ["User drinks coffee"])]
    return memory, old, plan


def test_the_judge_saying_same_refreshes() -> None:
    _, old, plan = judged(("same", 0))
    assert plan.new == [] and list(plan.refresh) == [old.id]


def test_the_judge_saying_replaces_supersedes() -> None:
    _, old, plan = judged(("replaces", 0))
    assert [o.id for o, _, _ in plan.replace] == [old.id] and len(plan.new) == 1


def test_a_failing_judge_adds_the_memory_as_new() -> None:
    _, _, plan = judged(ExtractionError("down"))
    assert [m.text for m in plan.new] == ["User enjoys espresso"] and plan.replace == []


def test_the_judge_is_not_asked_about_distant_memories() -> None:
    memory = FakeMemory({"User drinks coffee": unit(1, 0, 0), "User has a cat": unit(0, 1, 0)})
    memory.existing("User drinks coffee")

    async def judge(text: str, close: Sequence[str]) -> tuple[str, int]:
        raise AssertionError("asked")

    plan = apply(memory, group("User has a cat", judge=judge))
    assert [m.text for m in plan.new] == ["User has a cat"]


def test_a_restatement_of_a_stored_fact_refreshes_it_but_a_replay_of_its_own_job_does_nothing() -> None:
    memory = FakeMemory()
    stored = memory.existing("User lives in Paris", id=memory_id("t", "u", None, "User lives in Paris"))
    stored.source_request_id = "req"  # the request `group` attributes its candidates to
    assert apply(memory, group("User lives in Paris")).refresh == {}  # the replay: same id, same request
    stored.source_request_id = "an-earlier-request"
    assert list(apply(memory, group("User lives in Paris")).refresh) == [stored.id]
