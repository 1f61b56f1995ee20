"""memory/hygiene.py: which rule governs a user's retention, usefulness, and the removal plan."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.memory.hygiene import DAY, EVICTION_RECENCY_DAYS, plan, retention_for, usefulness
from gateway.memory.records import Memory
from gateway.rules import RuleSettings, load_rules

NOW = 1_750_000_000.0


def mem(id: str, age_days: float = 1, used_days_ago: float | None = None, use_count: int = 0, confidence: float = 0.8, **fields: object) -> Memory:
    return Memory(id=id, tenant="t", user_id="u", text=id, created_at=NOW - age_days * DAY,
                  last_used_at=None if used_days_ago is None else NOW - used_days_ago * DAY, use_count=use_count, confidence=confidence,
                  **fields)  # type: ignore[arg-type]


def ids(memories: list[Memory]) -> list[str]:
    return [m.id for m in memories]


# -- retention_for --------------------------------------------------------------------------------


def rules_from(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    (tmp_path / "r.toml").write_text(text)
    return load_rules(tmp_path)


def test_retention_uses_the_first_identity_only_rule_that_matches(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[[rule]]\nname = "acme"\nmatch = { tenant = "acme" }\nttl_days = 30\n'
                                 '[[rule]]\nname = "all"\nmatch = { user = "*" }\nttl_days = 90\n')
    assert retention_for(rules, "acme", "u1").ttl_days == 30
    assert retention_for(rules, "other", "u1").ttl_days == 90


def test_rules_that_match_on_model_path_or_headers_never_decide_retention(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[defaults]\nttl_days = 7\n'
                                 '[[rule]]\nname = "m"\nmatch = { model = "gpt-*" }\nttl_days = 1\n'
                                 '[[rule]]\nname = "p"\nmatch = { path = "/v1/*" }\nttl_days = 2\n'
                                 '[[rule]]\nname = "h"\nmatch = { header = { "X-Env" = "ci" } }\nttl_days = 3\n')
    assert retention_for(rules, "t", "u").ttl_days == 7


def test_a_rule_without_a_match_governs_everyone(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[[rule]]\nname = "everyone"\nmax_memories = 10\n')
    assert retention_for(rules, "t", "u").max_memories == 10


def test_without_a_matching_rule_the_defaults_govern(tmp_path: Path) -> None:
    rules = rules_from(tmp_path, '[defaults]\nexpire_unused_days = 5\n[[rule]]\nname = "vip"\nmatch = { user = "vip-*" }\nexpire_unused_days = 0\n')
    assert retention_for(rules, "t", "regular").expire_unused_days == 5
    assert retention_for(rules, "t", "vip-1").expire_unused_days == 0


# -- usefulness -----------------------------------------------------------------------------------


def test_usefulness_grows_with_use_recency_and_confidence() -> None:
    base = usefulness(mem("a", age_days=60), NOW)
    assert usefulness(mem("b", age_days=60, use_count=5), NOW) > base
    assert usefulness(mem("c", age_days=60, used_days_ago=1), NOW) > base
    assert usefulness(mem("d", age_days=60, confidence=1.0), NOW) > base


def test_usefulness_of_a_brand_new_memory_is_one_plus_its_confidence() -> None:
    assert math.isclose(usefulness(mem("a", age_days=0, confidence=0.5), NOW), 1.5)


def test_recency_decays_to_a_third_after_the_recency_period() -> None:
    fresh = usefulness(mem("a", age_days=0, confidence=0), NOW)
    old = usefulness(mem("b", age_days=EVICTION_RECENCY_DAYS, confidence=0), NOW)
    assert math.isclose(old, fresh / math.e)


# -- plan -----------------------------------------------------------------------------------------


def test_nothing_is_removed_by_default_under_the_cap() -> None:
    out = plan([mem("a", age_days=5000), mem("b")], RuleSettings(), 100, NOW)
    assert out == {"ttl": [], "unused": [], "cap": []}


def test_ttl_expires_memories_created_longer_ago() -> None:
    out = plan([mem("old", age_days=31), mem("young", age_days=29)], RuleSettings(ttl_days=30), 0, NOW)
    assert ids(out["ttl"]) == ["old"] and out["cap"] == []


def test_ttl_ignores_recent_use() -> None:
    out = plan([mem("old", age_days=31, used_days_ago=0, use_count=9)], RuleSettings(ttl_days=30), 0, NOW)
    assert ids(out["ttl"]) == ["old"]


def test_a_memory_exactly_at_the_ttl_is_kept() -> None:
    assert plan([mem("edge", age_days=30)], RuleSettings(ttl_days=30), 0, NOW)["ttl"] == []


def test_unused_expiry_counts_from_the_last_use() -> None:
    rows = [mem("never", age_days=20), mem("stale", age_days=100, used_days_ago=20), mem("recent", age_days=100, used_days_ago=2)]
    out = plan(rows, RuleSettings(expire_unused_days=10), 0, NOW)
    assert ids(out["unused"]) == ["never", "stale"]


def test_a_memory_expired_by_ttl_is_not_also_counted_as_unused() -> None:
    out = plan([mem("old", age_days=100)], RuleSettings(ttl_days=30, expire_unused_days=10), 0, NOW)
    assert ids(out["ttl"]) == ["old"] and out["unused"] == []


def test_pinned_memories_are_never_removed() -> None:
    rows = [mem("pinned", age_days=1000, pinned=True), *(mem(f"m{i}") for i in range(3))]
    out = plan(rows, RuleSettings(ttl_days=1, expire_unused_days=1, max_memories=1), 0, NOW)
    assert "pinned" not in ids(out["ttl"] + out["unused"] + out["cap"])


def test_the_cap_evicts_the_least_useful_first() -> None:
    rows = [mem("useful", use_count=10), mem("useless", age_days=300, confidence=0.1), mem("middling", age_days=30)]
    out = plan(rows, RuleSettings(), 2, NOW)
    assert ids(out["cap"]) == ["useless"]


def test_the_cap_evicts_exactly_the_excess() -> None:
    rows = [mem(f"m{i}", age_days=i) for i in range(10)]
    out = plan(rows, RuleSettings(max_memories=4), 100, NOW)
    assert ids(out["cap"]) == ["m9", "m8", "m7", "m6", "m5", "m4"]


def test_at_exactly_the_cap_nothing_is_evicted() -> None:
    assert plan([mem(f"m{i}") for i in range(4)], RuleSettings(max_memories=4), 0, NOW)["cap"] == []


def test_the_rules_cap_overrides_the_gateway_cap() -> None:
    rows = [mem(f"m{i}") for i in range(5)]
    assert len(plan(rows, RuleSettings(max_memories=3), 1, NOW)["cap"]) == 2
    assert len(plan(rows, RuleSettings(), 1, NOW)["cap"]) == 4


def test_a_zero_cap_everywhere_means_no_cap() -> None:
    assert plan([mem(f"m{i}") for i in range(50)], RuleSettings(), 0, NOW)["cap"] == []


def test_superseded_rows_do_not_count_toward_the_cap() -> None:
    rows = [mem("a"), mem("b"), mem("old1", superseded_by="a"), mem("old2", superseded_by="b")]
    assert plan(rows, RuleSettings(max_memories=2), 0, NOW)["cap"] == []


def test_pinned_memories_count_toward_the_cap_but_are_not_evicted() -> None:
    rows = [mem("p1", pinned=True), mem("p2", pinned=True), mem("a"), mem("b", use_count=3)]
    out = plan(rows, RuleSettings(max_memories=3), 0, NOW)
    assert ids(out["cap"]) == ["a"]


def test_equal_usefulness_evicts_the_oldest_then_by_id() -> None:
    rows = [Memory(id=i, tenant="t", user_id="u", text=i, created_at=NOW, last_used_at=NOW) for i in ("c", "a", "b")]
    assert ids(plan(rows, RuleSettings(max_memories=1), 0, NOW)["cap"]) == ["a", "b"]


def test_expired_memories_are_not_evicted_twice() -> None:
    rows = [mem("old", age_days=100), mem("a"), mem("b")]
    out = plan(rows, RuleSettings(ttl_days=30, max_memories=2), 0, NOW)
    assert ids(out["ttl"]) == ["old"] and out["cap"] == []


def test_an_empty_user_plans_nothing() -> None:
    assert plan([], RuleSettings(ttl_days=1, max_memories=1), 1, NOW) == {"ttl": [], "unused": [], "cap": []}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400), st.integers(0, 20), st.booleans(), st.booleans()), max_size=30), st.integers(0, 10))
def test_the_cap_leaves_exactly_the_cap_or_only_pinned_memories(rows: list[tuple[float, int, bool, bool]], cap: int) -> None:
    memories = [mem(f"m{i}", age_days=age, use_count=uses, pinned=pinned, superseded_by="x" if gone else None)
                for i, (age, uses, pinned, gone) in enumerate(rows)]
    out = plan(memories, RuleSettings(max_memories=cap), 0, NOW)
    evicted = set(ids(out["cap"]))
    active = [m for m in memories if m.superseded_by is None]
    left = [m for m in active if m.id not in evicted]
    assert not any(m.pinned for m in out["cap"])
    assert all(m.superseded_by is None for m in out["cap"])
    if cap:
        assert len(left) == min(len(active), max(cap, sum(m.pinned for m in active)))
        kept_scores = [usefulness(m, NOW) for m in left if not m.pinned]
        assert all(usefulness(m, NOW) <= min(kept_scores, default=math.inf) for m in out["cap"])
    else:
        assert evicted == set()


def test_episodes_count_toward_their_own_cap_and_never_evict_facts() -> None:
    now = 1_000_000.0
    facts = [Memory(id=f"f{i}", tenant="t", user_id="u", text="f", created_at=now - i, tier="recall") for i in range(3)]
    said = [Memory(id=f"e{i}", tenant="t", user_id="u", text="e", created_at=now - i, tier="archival") for i in range(6)]
    doomed = plan(facts + said, RuleSettings(max_memories=3), 5000, now, episode_cap=4)
    assert sorted(m.id for m in doomed["cap"]) == ["e4", "e5"]  # the two oldest episodes; all three facts stay
    assert plan(facts + said, RuleSettings(max_memories=2), 5000, now)["cap"] == [facts[2]]  # no episode cap: episodes kept
