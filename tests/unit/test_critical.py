"""extraction/critical.py and memory/confirmations.py: which changes need the user's confirmation, how an
answer reads, and when an answer counts."""

from __future__ import annotations

import pytest

from gateway.extraction.critical import answer, is_critical, mentions
from gateway.memory.confirmations import Asked, held_for, pending_on
from gateway.memory.records import Memory
from gateway.rules import CRITICAL_CATEGORIES

ALL = CRITICAL_CATEGORIES


def stored(text: str, pinned: bool = False) -> Memory:
    return Memory(id="old", tenant="t", user_id="u", text=text, pinned=pinned)


@pytest.mark.parametrize("old, new, category", [
    ("User is allergic to penicillin", "User is not allergic to penicillin", "health"),
    ("User takes insulin twice a day", "User takes insulin once a day", "health"),
    ("User's name is Ana", "User's name is Anna", "identity"),
    ("User's birthday is March 3", "User's birthday is March 4", "identity"),
    ("User's email is a@x.com", "User's email is b@y.com", "contact"),
    ("User's phone number is 555 0100", "User's phone number is 555 0199", "contact"),
])
def test_health_identity_and_contact_changes_are_critical_only_when_the_rule_lists_them(old: str, new: str, category: str) -> None:
    assert is_critical(stored(old), new, ALL) and is_critical(stored(old), new, (category,))
    assert not is_critical(stored(old), new, tuple(c for c in ALL if c != category))


def test_a_pinned_memory_is_critical_whatever_it_says_when_pinned_is_listed() -> None:
    assert is_critical(stored("User lives in Berlin", pinned=True), "User lives in Lisbon", ("pinned",))
    assert not is_critical(stored("User lives in Berlin", pinned=True), "User lives in Lisbon", ("health",))
    assert not is_critical(stored("User lives in Berlin"), "User lives in Lisbon", ALL)


def test_everyday_statements_mention_no_critical_category() -> None:
    for text in ("User prefers tea over coffee", "User works at Acme", "User uses Neovim", "User lives in Lisbon"):
        assert not mentions(text, ALL), text


@pytest.mark.parametrize("text", ["yes", "Yes!", "yes, that's right", "That's right.", "that is correct", "Correct", "yep", "“Yes”", "the new one"])
def test_yes_answers(text: str) -> None:
    assert answer(text) is True


@pytest.mark.parametrize("text", ["no", "No, that's wrong.", "nope", "wrong", "Not right", "no. keep the old one", "the old one"])
def test_no_answers(text: str) -> None:
    assert answer(text) is False


@pytest.mark.parametrize("text", ["", "What is my email?", "No longer true: I moved", "Yesterday I moved", "noted", "nothing", "yes " * 100])
def test_anything_else_is_no_answer(text: str) -> None:
    assert answer(text) is None


def test_a_pending_memory_names_the_memory_it_waits_on() -> None:
    said = Memory(id="new", tenant="t", user_id="u", text="x", superseded_by=pending_on("old"))
    assert held_for(said) == "old"
    assert held_for(Memory(id="n", tenant="t", user_id="u", text="x", superseded_by="other")) is None
    assert held_for(Memory(id="n", tenant="t", user_id="u", text="x")) is None


def test_an_answer_counts_only_after_an_earlier_request_showed_the_confirmation() -> None:
    asked = Asked()
    assert not asked.before("m", "r1")
    asked.note("m", "r1")
    assert not asked.before("m", "r1") and asked.before("m", "r2")
    asked.settled("m")
    assert not asked.before("m", "r2")
