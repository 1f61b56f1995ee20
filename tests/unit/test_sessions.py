"""memory/sessions.py: session ids, when a summary is due, the extractive summary and which one is "last time"."""

from __future__ import annotations

from gateway.memory.records import Memory
from gateway.memory.sessions import PREFIX, SUMMARY_CHARS, due, previous_summary, session_of, summarize, summary_id


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_the_header_names_the_session_else_the_first_user_message_does() -> None:
    first = [{"role": "system", "content": "s"}, user("Plan my Kyoto trip")]
    later = first + [{"role": "assistant", "content": "ok"}, user("and the hotel?")]
    assert session_of("trip-1", later) == "trip-1"
    assert session_of(None, first) == session_of(None, later) != session_of(None, [user("Another conversation")])
    assert session_of(None, first).startswith("conv-")


def test_a_summary_is_due_every_n_user_turns_and_never_with_zero() -> None:
    turns = [user("a"), {"role": "assistant", "content": "b"}, user("c")]
    assert due(turns, 2) and not due(turns[:1], 2) and not due(turns, 0)


def test_the_summary_keeps_the_sentences_with_the_conversations_recurring_terms_in_order() -> None:
    texts = ["Hello there.", "I am planning a trip to Kyoto in April.", "The weather is nice today.",
             "For the Kyoto trip we want a ryokan near Gion.", "Book the Kyoto trip trains too."]
    summary = summarize(texts)
    assert summary.startswith(PREFIX) and len(summary) <= SUMMARY_CHARS
    assert summary.index("planning a trip") < summary.index("ryokan")
    assert "Hello there" not in summary
    assert summarize(["ok", "hi"]) == ""


def test_a_long_conversation_still_gives_a_short_summary() -> None:
    assert len(summarize([f"Sentence number {i} is about the Kyoto trip budget." for i in range(500)])) <= SUMMARY_CHARS


def test_the_previous_summary_is_the_newest_of_another_session_for_the_same_agent() -> None:
    def memory(mid: str, session: str, at: float, agent: str | None = None, kind: str = "summary") -> Memory:
        return Memory(mid, "t", "u", "x", kind=kind, session_id=session, agent_id=agent, updated_at=at)

    memories = [memory("a", "s1", 1), memory("b", "s2", 2), memory("c", "now", 3), memory("d", "s3", 4, agent="bot"), memory("e", "s4", 5, kind="fact")]
    assert previous_summary(memories, None, "now").id == "b"
    assert previous_summary(memories, "bot", "now").id == "d"
    assert previous_summary(memories[2:3], None, "now") is None


def test_each_session_of_each_user_has_its_own_summary_id() -> None:
    ids = {summary_id("t", "u", None, "s"), summary_id("t", "u", None, "s2"), summary_id("t", "u2", None, "s"), summary_id("t", "u", "a", "s")}
    assert len(ids) == 4 and summary_id("t", "u", None, "s") == summary_id("t", "u", None, "s")
