"""A statement that changes a fact supersedes the old memory, end to end: the user says the old fact,
later the new one (the heuristic extractor, the shipped rules), the queue is flushed, and the system
message the upstream receives for the next request carries the new fact and never the old one, whether
the change came in a later conversation or in the same one (then both may be extracted in one batch).
An allergy is critical under the shipped rules: its change is asked about first, and the user's yes settles it."""

from __future__ import annotations

from typing import Iterator

import pytest

from .extraction_helpers import flush, history, memories, say, system_text, texts
from .fake_upstream import FakeUpstream
from .harness import Gateway


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = Gateway(upstream.url, tmp_path_factory.mktemp("contradictions") / "data", tenant_mode="none").start()
    yield gateway
    gateway.stop()


# (user, what they said first, what they said later, a later question, what the model must be told, what it must never be told again)
CHANGES = [
    ("allergy", "I'm allergic to penicillin.", "I'm not allergic to penicillin, the test was negative.",
     "Can I take penicillin for this infection?", "User is not allergic to penicillin", "User is allergic to penicillin"),
    ("pulumi", "I prefer Terraform over CloudFormation.", "I now prefer Pulumi over Terraform.",
     "Which infrastructure-as-code tool should I use for the new stack?", "User prefers Pulumi over Terraform", "over CloudFormation"),
    ("lisbon", "I live in Berlin.", "I moved to Lisbon.", "Where should I live and eat out this weekend?", "User moved to Lisbon", "Berlin"),
    ("kids", "I have two kids.", "We have three kids now.", "How many kids seats do I need in the car?", "User has three kids", "two kids"),
    ("teams", "I use Slack.", "The team moved to Teams.", "Which chat tool should I post the update in?", "User's team switched to Teams", "User uses Slack"),
    ("neovim", "I use VS Code.", "I switched from VS Code to Neovim.", "Which editor plugins should I install?", "User switched from VS Code to Neovim",
     "User uses VS Code"),
    ("meat", "I eat meat every day.", "I don't eat meat anymore.", "What should I eat for dinner?", "User no longer eats meat", "User eats meat"),
    ("french", "Please always answer in French.", "Please always answer in English.", "What language should you answer me in?",
     "always answer in English", "in French"),
]


CRITICAL = {"allergy"}  # health: the shipped rules' `critical` holds its change for the user's confirmation


def answer_block(gw: Gateway, upstream: FakeUpstream, user: str, question: str, *, critical: bool) -> str:
    """The memory block the upstream gets for `question`; a critical change is first asked about (the block
    quotes both values and says confirm) and the user's yes settles it."""
    say(gw, user, question)
    block = system_text(upstream.last_chat())
    if not critical:
        return block
    [line] = [line for line in block.splitlines() if "confirm" in line]
    assert line.count('"User is') == 2  # the stored value and the new one, both quoted
    say(gw, user, "Yes, that's right.")
    flush(gw)
    say(gw, user, question)
    block = system_text(upstream.last_chat())
    assert "confirm" not in block
    return block


@pytest.mark.parametrize("user,before,after,question,told,stale", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_changed_fact_supersedes_the_old_one_and_only_the_new_one_is_injected(
    gw: Gateway, upstream: FakeUpstream, user: str, before: str, after: str, question: str, told: str, stale: str
) -> None:
    say(gw, user, before)
    flush(gw)
    [old] = memories(gw, user)
    say(gw, user, question)
    assert old["text"] in system_text(upstream.last_chat())  # the old fact was injected before the change
    say(gw, user, after)
    flush(gw)
    block = answer_block(gw, upstream, user, question, critical=user in CRITICAL)
    assert told in block
    assert stale not in block
    assert all(stale not in text for text in texts(gw, user))
    actions = [change["action"] for change in history(gw, user, old["id"])]
    assert actions == (["add", "confirm", "supersede"] if user in CRITICAL else ["add", "supersede"])


@pytest.mark.parametrize("user,before,after,question,told,stale", CHANGES, ids=[c[0] for c in CHANGES])
def test_a_fact_and_its_change_in_one_conversation_leave_only_the_change(
    gw: Gateway, upstream: FakeUpstream, user: str, before: str, after: str, question: str, told: str, stale: str
) -> None:
    user = "talk-" + user
    say(gw, user, before)
    say(gw, user, after, history=[{"role": "user", "content": before}, {"role": "assistant", "content": "Noted."}])
    flush(gw)
    block = answer_block(gw, upstream, user, question, critical=user.removeprefix("talk-") in CRITICAL)
    assert told in block
    assert stale not in block
    assert all(stale not in text for text in texts(gw, user))


def test_a_move_said_with_a_relative_time_is_stored_without_it(gw: Gateway) -> None:
    say(gw, "moved", "I moved to Berlin last month.")
    flush(gw)
    assert texts(gw, "moved") == ["User moved to Berlin"]


def test_an_unrelated_new_fact_supersedes_nothing(gw: Gateway) -> None:
    say(gw, "unrelated", "I have two kids.")
    say(gw, "unrelated", "I use Slack.")
    flush(gw)
    say(gw, "unrelated", "I have two cats.")
    say(gw, "unrelated", "I'm allergic to bees.")
    flush(gw)
    assert texts(gw, "unrelated") == ["User has two cats", "User has two kids", "User is allergic to bees", "User uses Slack"]
