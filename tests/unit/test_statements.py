"""extraction/statements.py: which statements are the same, and which slot a statement fills."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.extraction.statements import adds_nothing, conflicts, negated_object, normalised, opposed, slot, words


def test_normalised_ignores_case_punctuation_and_filler_words() -> None:
    assert normalised("The User REALLY, definitely prefers Vim!") == normalised("user prefers vim")


def test_normalised_keeps_content_words() -> None:
    assert normalised("User prefers Vim") != normalised("User prefers Emacs")


def test_normalised_keeps_technical_names_whole() -> None:
    assert words("User uses Node.js, C++ and C#.") == ["user", "uses", "node.js", "c++", "and", "c#"]


def test_normalised_of_empty_or_filler_only_text_is_empty() -> None:
    assert normalised("") == ""
    assert normalised("the really very...") == ""


def test_values_in_other_scripts_keep_statements_apart() -> None:
    assert normalised("User lives in Москве") != normalised("User lives in Токио")


def test_a_new_value_in_another_script_conflicts() -> None:
    assert conflicts("User lives in Токио", "User lives in Москве")


def test_adds_nothing_when_every_content_word_is_already_there() -> None:
    assert adds_nothing("User really likes Vim", "User likes Vim a lot")


def test_adds_something_when_a_content_word_is_new() -> None:
    assert not adds_nothing("User likes Vim and Emacs", "User likes Vim")


def test_empty_text_adds_nothing() -> None:
    assert adds_nothing("", "User likes Vim")


@pytest.mark.parametrize("text,expected", [
    ("User's name is Alice", ("user", "name")),
    ("User goes by Sam", ("user", "name")),
    ("User's team is migrating to AWS", ("user's team", "migrating")),
    ("User's favorite editor is Neovim", ("user", "attr", "favorite editor")),
    ("User's team's favorite editor is Vim", ("user's team", "attr", "favorite editor")),
    ("User lives in Paris", ("user", "lives_in")),
    ("User now lives in Berlin.", ("user", "lives_in")),
    ("User works at Acme", ("user", "works_at")),
    ("User works for Initech", ("user", "works_at")),
    ("User works as a nurse", ("user", "works_as")),
    ("User prefers tea for breakfast", ("user", "prefers", "for", "breakfast")),
    ("User prefers Terraform over CloudFormation", ("user", "prefers", "pair", "cloudformation", "terraform")),
    ("User no longer uses Slack", ("user", "does", "use", "slack")),
    ("User uses Slack", ("user", "does", "use", "slack")),
    ("User likes cats", ("user", "does", "like", "cats")),
    ("The user lives in Oslo", ("user", "lives_in")),
    ("User moved to Lisbon", ("user", "lives_in")),
    ("User joined Stripe", ("user", "works_at")),
    ("User is a vegetarian", ("user", "is", "vegetarian")),
    ("User is no longer vegetarian", ("user", "is", "vegetarian")),
    ("User is not allergic to penicillin", ("user", "is", "allergic to penicillin")),
])
def test_slot_names_what_a_statement_is_about(text: str, expected: tuple[str, ...]) -> None:
    assert slot(text) == expected


@pytest.mark.parametrize("text", ["User has two kids", "User prefers Vim", "", "Paris is nice", "User's kids are playing"])
def test_statements_outside_every_slot_fill_none(text: str) -> None:
    assert slot(text) is None


def test_a_preference_pair_fills_the_same_slot_in_either_order() -> None:
    assert slot("User prefers Terraform over CloudFormation") == slot("User prefers CloudFormation to Terraform")


def test_slot_ignores_case_and_extra_whitespace() -> None:
    assert slot("USER   lives in  paris.") == slot("User lives in Paris")


def test_negated_object_is_the_subject_and_what_was_given_up() -> None:
    assert negated_object("User no longer uses Slack.") == ("user", "slack")
    assert negated_object("User's team stopped using Jenkins") == ("user's team", "jenkins")


def test_a_positive_statement_has_no_negated_object() -> None:
    assert negated_object("User uses Slack") is None


def test_a_new_value_of_the_same_slot_conflicts() -> None:
    assert conflicts("User lives in Berlin", "User lives in Paris")
    assert conflicts("User goes by Sam", "User's name is Samuel")


def test_a_restatement_never_conflicts() -> None:
    assert not conflicts("User lives in Paris.", "user really lives in paris")


def test_different_slots_do_not_conflict() -> None:
    assert not conflicts("User lives in Berlin", "User works at Acme")


def test_different_subjects_do_not_conflict() -> None:
    assert not conflicts("User's team is migrating to GCP", "User is migrating to AWS")


def test_a_negation_conflicts_with_a_statement_about_the_same_thing() -> None:
    assert conflicts("User no longer uses Slack", "User uses Slack daily for chat")


def test_a_negation_does_not_conflict_with_a_word_that_only_contains_the_thing() -> None:
    assert not conflicts("User no longer uses Slack", "User uses Slackware")


def test_a_negation_does_not_replace_another_negation() -> None:
    assert not conflicts("User no longer uses Slack", "User stopped using Slack and Teams")


def test_a_negation_does_not_replace_another_subjects_statement() -> None:
    assert not conflicts("User's team no longer uses Slack", "User uses Slack")


@given(st.text(max_size=80))
def test_nothing_conflicts_with_itself(text: str) -> None:
    assert not conflicts(text, text)


@given(st.text(max_size=80), st.text(max_size=80))
def test_slot_conflicts_are_symmetric_for_non_negations(a: str, b: str) -> None:
    if negated_object(a) is None and negated_object(b) is None:
        assert conflicts(a, b) == conflicts(b, a)


# -- changes of fact the issue named (issue 13): each new statement replaces the old one --------------

@pytest.mark.parametrize("new,old", [
    ("User prefers Pulumi over Terraform", "User prefers Terraform over CloudFormation"),
    ("User prefers Terraform over CloudFormation", "User prefers Pulumi over Terraform"),
    ("User moved to Lisbon", "User lives in Berlin"),
    ("User has three kids", "User has two kids and a dog"),
    ("User has 3 children", "User has two kids"),
    ("User's team switched to Teams", "User uses Slack"),
    ("User switched from VS Code to Neovim", "User uses VS Code"),
    ("User uses Neovim", "User's team uses VS Code for everything"),
    ("User's team switched from Jenkins to GitHub Actions", "User's team uses Jenkins"),
    ("User is not allergic to penicillin", "User is allergic to penicillin"),
    ("User is allergic to penicillin", "User is not allergic to penicillin"),
    ("User has a peanut allergy", "User is allergic to peanuts"),
    ("User is no longer vegetarian", "User is vegetarian"),
    ("User no longer eats meat", "User eats meat every day"),
    ("User works at Stripe", "User works at Acme as a data engineer"),
    ("User prefers that the assistant always answer in English", "User prefers that the assistant always answer in French"),
])
def test_a_changed_fact_conflicts_with_the_old_one(new: str, old: str) -> None:
    assert conflicts(new, old)


@pytest.mark.parametrize("new,old", [
    ("User uses Python", "User uses Slack"),
    ("User uses Slack and Discord", "User uses Mattermost"),  # two chat tools at once: neither replaces the old one
    ("User has two cats", "User has two kids"),
    ("User is a nurse", "User is vegetarian"),
    ("User is allergic to bees", "User is allergic to penicillin"),
    ("User prefers tea over coffee", "User prefers Terraform over CloudFormation"),
    ("User's daughter Emma turns 7 on March 3", "User has two kids"),
    ("User has a bad knee", "User has a peanut allergy"),
])
def test_facts_about_different_things_do_not_conflict(new: str, old: str) -> None:
    assert not conflicts(new, old)


def test_opposed_statements_deny_and_affirm_the_same_content_word() -> None:
    assert opposed("User dislikes Java", "User loves Java")
    assert not opposed("User dislikes Java", "User loves Kotlin")
    assert not opposed("User loves Java", "User loves Java a lot")
    assert not opposed("User's team dislikes Java", "User loves Java")
