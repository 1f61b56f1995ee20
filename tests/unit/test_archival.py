"""memory/archival.py and memory/redaction.py: what becomes an episode, its id, its size, its source link;
what a secret looks like to every memory write."""

from __future__ import annotations

from gateway.memory.archival import ELLIPSIS, MAX_EPISODE_CHARS, capped, episode_id, episodes, only_questions, source_of
from gateway.memory.redaction import redact


def test_restatements_share_an_id_per_user_and_agent_only() -> None:
    same = episode_id("t", "u", None, "My locker number is 1000.")
    assert episode_id("t", "u", None, "  my LOCKER number is 1000!! ") == same
    assert episode_id("t", "other", None, "My locker number is 1000.") != same
    assert episode_id("t", "u", "coach", "My locker number is 1000.") != same
    assert episode_id("t", "u", None, "My locker number is 1001.") != same


def test_a_long_turn_keeps_its_start_cut_at_a_word_break() -> None:
    text = "word " * 1000
    kept = capped(text)
    assert len(kept) <= MAX_EPISODE_CHARS and kept.endswith("word" + ELLIPSIS)
    assert capped("short turn ") == "short turn"


def test_a_turn_of_questions_only_or_without_content_is_not_kept() -> None:
    made = episodes("t", "u", None, "s1", ["What is my dog called?", "ok", "I have a beagle. What is it called?", "Is it? Really?"], "r1", 5.0)
    assert [(e.text, e.tier, e.kind, e.session_id, e.created_at, e.source_request_id) for e in made] == [
        ("I have a beagle. What is it called?", "archival", "note", "s1", 5.0, "r1")
    ]
    assert only_questions("Why?") and not only_questions("Book me a seat on the flight to Oslo")


def test_two_identical_turns_of_one_job_make_one_episode() -> None:
    assert len(episodes("t", "u", None, None, ["I live in Berlin.", "i live in berlin"], "r", 1.0)) == 1


def test_a_fact_links_to_the_episode_sharing_most_of_its_words() -> None:
    said = episodes("t", "u", None, None, ["I live in Berlin with my cat.", "My locker number at the gym is 1000."], "r", 1.0)
    assert source_of("User's locker number at the gym is 1000", said) == said[1].id
    assert source_of("User lives in Berlin", said) == said[0].id
    assert source_of("User likes jazz", said) is None
    assert source_of("User likes jazz", said[:1]) == said[0].id  # one turn: it came from that one


def test_secrets_are_masked_and_prose_is_left_alone() -> None:
    assert redact("My password is hunter2 and I like tea.") == "My password is *** and I like tea."
    assert redact("my api key is sk-abcdef1234567890") == "my api key is ***"
    assert redact("token=abcd1234") == "token=***"
    assert redact("I use ghp_abcdefghijklmnopqrstuvwx12 daily") == "I use *** daily"
    for prose in ("I like pinball", "My secret is out", "I prefer Terraform over CloudFormation.", "The token economy is weird"):
        assert redact(prose) == prose
