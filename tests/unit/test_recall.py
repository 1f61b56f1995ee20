"""memory/recall.py: the query text of a request, score fusion, the recency/usage prior, ranking and
the core profile, over a UserMemories entry built the way the hot tier builds it (no LanceDB)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.memory.hot import UserMemories
from gateway.memory.recall import (
    CONFIDENCE_WEIGHT, CONTEXT_CHARS, PRIOR_SHORTLIST, PRIOR_WEIGHT, SHORT_QUERY_CHARS, Query, core_profile, fuse, prior, query_text, rank,
)
from gateway.memory.records import Memory

DIM = 4
NOW = 1_750_000_000.0
DAY = 86400.0


def axis(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1
    return v


def mem(id: str, text: str, vector: np.ndarray | None = None, **fields: object) -> Memory:
    fields.setdefault("created_at", NOW - DAY)
    return Memory(id=id, tenant="t", user_id="u", text=text, vector=axis(0) if vector is None else vector, **fields)  # type: ignore[arg-type]


def entry(*memories: Memory) -> UserMemories:
    return UserMemories(list(memories), DIM, version=1)


# -- query_text -----------------------------------------------------------------------------------


def test_the_query_joins_the_text_parts_of_content_parts_with_spaces() -> None:
    long = "what should I cook for dinner tonight with the vegetables that are left in my fridge"
    content = [{"type": "text", "text": long}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "please"}]
    assert query_text({"messages": [{"role": "user", "content": content}]}) == long + " please"


def test_the_query_is_the_last_user_message() -> None:
    long = "What should I cook for dinner tonight with what is in my fridge?"
    payload = {"messages": [{"role": "user", "content": "first question that is long enough to stand alone"},
                            {"role": "assistant", "content": "answer"}, {"role": "user", "content": long}]}
    assert query_text(payload) == long


def test_a_short_last_message_borrows_the_end_of_the_previous_user_message() -> None:
    before = "x" * 500 + " Where should I travel in Italy?"
    payload = {"messages": [{"role": "user", "content": before}, {"role": "assistant", "content": "Rome"},
                            {"role": "user", "content": "and in summer?"}]}
    assert query_text(payload) == before[-CONTEXT_CHARS:] + "\nand in summer?"


def test_a_short_only_message_is_the_whole_query() -> None:
    assert query_text({"messages": [{"role": "user", "content": "  hi  "}]}) == "hi"


def test_a_query_of_exactly_the_short_limit_borrows_nothing() -> None:
    last = "q" * SHORT_QUERY_CHARS
    assert query_text({"messages": [{"role": "user", "content": "earlier"}, {"role": "user", "content": last}]}) == last


def test_blank_and_non_user_messages_are_not_queries() -> None:
    payload = {"messages": [{"role": "system", "content": "You are helpful"}, {"role": "user", "content": "   "}, "junk"]}
    assert query_text(payload) == ""


@pytest.mark.parametrize("payload", [{}, {"messages": None}, {"messages": "hi"}, {"messages": []}])
def test_a_payload_without_messages_has_no_query(payload: dict) -> None:
    assert query_text(payload) == ""


def test_a_very_long_query_keeps_its_end() -> None:
    text = "start " + "y" * 5000 + " the actual question"
    assert query_text({"messages": [{"role": "user", "content": text}]}) == text[-4000:]


def test_lone_surrogates_in_the_query_are_replaced() -> None:
    query = query_text({"messages": [{"role": "user", "content": "caf\ud800 tonight please, what to eat?"}]})
    query.encode("utf-8")  # would raise on a lone surrogate
    assert "\ufffd" in query


# -- fuse -----------------------------------------------------------------------------------------


def test_fuse_dense_and_keyword_methods_pass_one_side_through() -> None:
    dense, keyword = np.array([0.1, 0.9]), np.array([3.0, 0.0])
    assert fuse(dense, keyword, "dense") is dense and fuse(dense, keyword, "keyword") is keyword


def test_fuse_score_scales_bm25_by_its_max() -> None:
    assert np.allclose(fuse(np.array([0.2, 0.4]), np.array([4.0, 2.0]), "score", 0.5), [0.6, 0.45])


def test_fuse_score_without_keyword_matches_is_the_weighted_dense_score() -> None:
    assert np.allclose(fuse(np.array([0.2, 0.4]), np.zeros(2), "score", 0.5), [0.1, 0.2])


def test_fuse_of_nothing_is_nothing() -> None:
    assert fuse(np.zeros(0), np.zeros(0)).shape == (0,)


def test_fuse_rrf_adds_reciprocal_ranks_and_ignores_non_matching_keywords() -> None:
    out = fuse(np.array([0.9, 0.5, 0.1]), np.array([0.0, 2.0, 0.0]), "rrf")
    assert np.allclose(out, np.array([1 / 61, 1 / 62 + 1 / 61, 1 / 63]) * 61 / 2)


def test_fused_scores_stay_between_0_and_1_whatever_the_cosine() -> None:
    dense, keyword = np.array([-0.8, 0.0, 0.3, 1.0]), np.array([0.0, 5.0, 1.0, 5.0])
    for method in ("score", "rrf"):
        out = fuse(dense, keyword, method)
        assert 0.0 <= out.min() and out.max() <= 1.0
    assert fuse(dense, keyword, "score")[0] == 0.0 and math.isclose(fuse(dense, keyword, "score")[3], 1.0)
    assert math.isclose(fuse(np.array([1.0]), np.array([3.0]), "rrf")[0], 1.0)  # first on both sides


# -- prior ----------------------------------------------------------------------------------------


def test_the_prior_is_higher_for_recent_and_often_used_memories() -> None:
    e = entry(mem("old", "a", created_at=NOW - 400 * DAY), mem("new", "b", created_at=NOW), mem("used", "c", created_at=NOW - 400 * DAY,
                                                                                                   last_used_at=NOW, use_count=20))
    p = prior(e, np.arange(3), NOW)
    assert p[1] > p[0] and p[2] > p[1]
    assert 0 <= p.min() and p.max() <= 1


def test_the_prior_usage_part_saturates_at_twenty_uses() -> None:
    e = entry(mem("a", "a", created_at=NOW, use_count=20), mem("b", "b", created_at=NOW, use_count=1000))
    assert np.allclose(prior(e, np.arange(2), NOW), [1.0, 1.0])


def test_a_future_timestamp_counts_as_now() -> None:
    e = entry(mem("a", "a", created_at=NOW + 10 * DAY))
    assert math.isclose(float(prior(e, np.arange(1), NOW)[0]), 0.5)


# -- rank -----------------------------------------------------------------------------------------


def test_rank_of_an_empty_entry_is_empty() -> None:
    assert rank(entry(), Query(axis(0), ["x"])) == []


def test_rank_with_top_k_zero_is_empty() -> None:
    assert rank(entry(mem("a", "tea")), Query(axis(0), ["tea"]), top_k=0) == []


def test_rank_orders_by_relevance_best_first() -> None:
    e = entry(mem("far", "User plays chess", (0.1 * axis(0) + 0.995 * axis(1)).astype(np.float32)), mem("near", "User likes tea", axis(0)), mem("mid", "User likes coffee", (axis(0) + axis(1)) / np.sqrt(2)))
    ranked = rank(e, Query.of("tea", axis(0)), now=NOW)
    assert [m.id for m, _ in ranked] == ["near", "mid", "far"]
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


def test_rank_returns_at_most_top_k() -> None:
    e = entry(*(mem(str(i), f"memory {i}", axis(i % DIM)) for i in range(10)))
    assert len(rank(e, Query(axis(0), []), top_k=3, now=NOW)) == 3


def test_rank_drops_memories_below_min_score() -> None:
    e = entry(mem("near", "a", axis(0)), mem("far", "b", axis(1)))
    assert [m.id for m, _ in rank(e, Query(axis(0), []), min_score=0.1, now=NOW)] == ["near"]


def test_the_prior_only_breaks_ties() -> None:
    e = entry(mem("relevant", "a", axis(0), created_at=NOW - 900 * DAY),
              mem("popular", "b", (0.95 * axis(0) + 0.31 * axis(1)).astype(np.float32), created_at=NOW, use_count=100, last_used_at=NOW))
    assert [m.id for m, _ in rank(e, Query(axis(0), []), now=NOW)][0] == "relevant"
    tie = entry(mem("stale", "a", axis(0), created_at=NOW - 900 * DAY), mem("fresh", "b", axis(0), created_at=NOW, use_count=5, last_used_at=NOW))
    assert [m.id for m, _ in rank(tie, Query(axis(0), []), now=NOW)][0] == "fresh"


def test_the_prior_favours_the_recently_used_and_the_often_used_among_equals() -> None:
    recent = entry(mem("idle", "a", axis(0), created_at=NOW - 60 * DAY), mem("recent", "b", axis(0), created_at=NOW - 60 * DAY, last_used_at=NOW - DAY))
    assert [m.id for m, _ in rank(recent, Query(axis(0), []), now=NOW)] == ["recent", "idle"]
    often = entry(mem("once", "a", axis(0), last_used_at=NOW, use_count=1), mem("often", "b", axis(0), last_used_at=NOW, use_count=15))
    assert [m.id for m, _ in rank(often, Query(axis(0), []), now=NOW)] == ["often", "once"]


def test_the_score_is_relevance_times_trust_with_the_prior_as_a_bounded_nudge() -> None:
    # Relevance 0.5: a perfect cosine, no keyword. The prior (0..1) moves it by at most a factor 1/1.05.
    fresh = rank(entry(mem("a", "a", axis(0), created_at=NOW, last_used_at=NOW, use_count=20)), Query(axis(0), []), now=NOW)
    stale = rank(entry(mem("a", "a", axis(0), created_at=NOW - 3650 * DAY)), Query(axis(0), []), now=NOW)
    unsure = rank(entry(mem("a", "a", axis(0), created_at=NOW, last_used_at=NOW, use_count=20, confidence=0.5)), Query(axis(0), []), now=NOW)
    assert math.isclose(fresh[0][1], 0.5) and math.isclose(stale[0][1], 0.5 / (1 + PRIOR_WEIGHT), rel_tol=1e-4)
    assert math.isclose(unsure[0][1], 0.5 * (1 - CONFIDENCE_WEIGHT * 0.5))


def test_low_confidence_ranks_below_an_equally_relevant_sure_memory_but_relevance_still_counts() -> None:
    e = entry(mem("unsure", "a", axis(0), confidence=0.4), mem("sure", "b", axis(0), confidence=1.0))
    assert [m.id for m, _ in rank(e, Query(axis(0), []), now=NOW)] == ["sure", "unsure"]
    far = entry(mem("unsure", "a", axis(0), confidence=0.6), mem("sure", "b", (0.5 * axis(0) + 0.87 * axis(1)).astype(np.float32)))
    assert [m.id for m, _ in rank(far, Query(axis(0), []), now=NOW)] == ["unsure", "sure"]


def test_min_score_applies_to_the_final_score_so_confidence_counts() -> None:
    e = entry(mem("sure", "a", axis(0), created_at=NOW, use_count=20, last_used_at=NOW), mem("unsure", "b", axis(0), created_at=NOW, confidence=0.2))
    assert [m.id for m, _ in rank(e, Query(axis(0), []), min_score=0.45, now=NOW)] == ["sure"]
    assert all(0 < s <= 1 for _, s in rank(e, Query(axis(0), []), now=NOW))


def test_a_memory_sharing_neither_meaning_nor_words_is_never_recalled() -> None:
    e = entry(mem("opposite", "User plays chess", -axis(0)), mem("orthogonal", "User likes tea", axis(1)))
    assert rank(e, Query.of("espresso", axis(0)), now=NOW) == []


def test_a_confidence_outside_0_to_1_counts_as_sure() -> None:
    e = entry(mem("nan", "a", axis(0), confidence=float("nan")), mem("none", "b", axis(0), confidence=None))
    assert [s for _, s in rank(e, Query(axis(0), []), now=NOW)] == [fuse(np.ones(1), np.zeros(1))[0] * (1 + PRIOR_WEIGHT * prior(e, np.arange(1), NOW)[0]) / (1 + PRIOR_WEIGHT)] * 2


def test_flagged_memories_are_hidden_unless_included() -> None:
    e = entry(mem("ok", "a"), mem("bad", "b", flagged=True))
    assert [m.id for m, _ in rank(e, Query(axis(0), []), now=NOW)] == ["ok"]
    assert {m.id for m, _ in rank(e, Query(axis(0), []), include_flagged=True, now=NOW)} == {"ok", "bad"}


def test_agent_memories_are_visible_to_that_agent_only() -> None:
    e = entry(mem("wide", "a"), mem("mine", "b", agent_id="coder"), mem("theirs", "c", agent_id="travel"))
    assert {m.id for m, _ in rank(e, Query(axis(0), []), agent="coder", now=NOW)} == {"wide", "mine"}
    assert {m.id for m, _ in rank(e, Query(axis(0), []), now=NOW)} == {"wide"}
    assert {m.id for m, _ in rank(e, Query(axis(0), []), every_agent=True, now=NOW)} == {"wide", "mine", "theirs"}


def test_superseded_memories_never_enter_the_entry() -> None:
    e = entry(mem("old", "a", superseded_by="new"), mem("new", "b"))
    assert [m.id for m, _ in rank(e, Query(axis(0), []), now=NOW)] == ["new"]


def test_a_keyword_match_lifts_a_memory_with_equal_dense_score() -> None:
    e = entry(mem("plain", "User plays chess", axis(0)), mem("match", "User likes espresso", axis(0)))
    assert rank(e, Query.of("espresso please", axis(0)), now=NOW)[0][0].id == "match"


def test_rank_over_a_long_shortlist_still_returns_the_best() -> None:
    n = PRIOR_SHORTLIST + 100
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    e = entry(*(mem(str(i), f"m{i}", vectors[i]) for i in range(n)))
    query = vectors[17]
    assert rank(e, Query(query, []), top_k=1, now=NOW)[0][0].id == "17"


# -- core_profile ---------------------------------------------------------------------------------


def test_core_profile_puts_pinned_first_newest_first_then_preferences() -> None:
    e = entry(
        mem("p-old", "a", pinned=True, created_at=NOW - 10 * DAY),
        mem("p-new", "b", pinned=True, created_at=NOW - DAY),
        mem("pref-old", "c", kind="preference", created_at=NOW - 5 * DAY),
        mem("pref-new", "d", kind="preference", created_at=NOW - 2 * DAY),
        mem("fact", "e"),
    )
    assert [m.id for m in core_profile(e, [], agent=None, include_flagged=False)] == ["p-new", "p-old", "pref-new", "pref-old"]


def test_core_profile_puts_relevant_preferences_before_the_rest_without_repeats() -> None:
    e = entry(mem("pref-a", "a", kind="preference", created_at=NOW - DAY), mem("pref-b", "b", kind="preference", created_at=NOW - 9 * DAY))
    ranked = [(e.memories[1], 0.9)]
    assert [m.id for m in core_profile(e, ranked, agent=None, include_flagged=False)] == ["pref-b", "pref-a"]


def test_core_profile_leaves_out_flagged_and_other_agents_memories() -> None:
    e = entry(mem("flagged", "a", pinned=True, flagged=True), mem("other", "b", kind="preference", agent_id="travel"), mem("mine", "c", kind="preference"))
    assert [m.id for m in core_profile(e, [], agent="coder", include_flagged=False)] == ["mine"]


def test_core_profile_of_an_empty_entry_is_empty() -> None:
    assert core_profile(entry(), [], agent=None, include_flagged=False) == []
