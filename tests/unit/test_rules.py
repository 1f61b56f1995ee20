"""rules.py: loading `*.toml` rules from a directory, first match wins, validation, change detection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.rules import Match, RequestFacts, RuleSettings, RulesError, load_rules, rules_fingerprint

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_missing_directory_means_defaults(tmp_path: Path) -> None:
    rules = load_rules(tmp_path / "nope")
    assert rules.defaults == RuleSettings() and rules.rules == () and rules.files == ()


def test_an_empty_directory_means_defaults(tmp_path: Path) -> None:
    assert load_rules(tmp_path).select(RequestFacts(model="gpt-4o")) == ("defaults", RuleSettings())


def test_the_shipped_rules_load() -> None:
    rules = load_rules(SHIPPED)
    assert rules.files and all(Path(f).suffix == ".toml" for f in rules.files)


def test_only_toml_files_are_read(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[defaults]\ntop_k = 3\n")
    write(tmp_path, "b.txt", "this is not toml [")
    assert load_rules(tmp_path).defaults.top_k == 3


def test_files_load_in_name_order_and_later_defaults_win(tmp_path: Path) -> None:
    write(tmp_path, "20-late.toml", "[defaults]\ntop_k = 7\n")
    write(tmp_path, "10-early.toml", "[defaults]\ntop_k = 3\nbudget_tokens = 500\n")
    rules = load_rules(tmp_path)
    assert [Path(f).name for f in rules.files] == ["10-early.toml", "20-late.toml"]
    assert (rules.defaults.top_k, rules.defaults.budget_tokens) == (7, 500)


def test_rules_keep_file_then_declaration_order(tmp_path: Path) -> None:
    write(tmp_path, "b.toml", '[[rule]]\nname = "b1"\n[[rule]]\nname = "b2"\n')
    write(tmp_path, "a.toml", '[[rule]]\nname = "a1"\n')
    assert [r.name for r in load_rules(tmp_path).rules] == ["a1", "b1", "b2"]


def test_the_first_matching_rule_wins(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[[rule]]\nname = "mini"\nmatch = { model = "*-mini" }\ntop_k = 1\n'
                              '[[rule]]\nname = "gpt"\nmatch = { model = "gpt-*" }\ntop_k = 2\n')
    rules = load_rules(tmp_path)
    assert rules.select(RequestFacts(model="gpt-4o-mini")) == ("mini", rules.rules[0].settings)
    assert rules.select(RequestFacts(model="gpt-4o"))[0] == "gpt"
    assert rules.select(RequestFacts(model="claude"))[0] == "defaults"


def test_a_rule_inherits_defaults_from_any_file(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[[rule]]\nname = "r"\ninject = false\n')
    write(tmp_path, "b.toml", "[defaults]\ntop_k = 4\n")
    settings = load_rules(tmp_path).rules[0].settings
    assert (settings.inject, settings.top_k) == (False, 4)


def test_an_integer_is_accepted_for_a_float_field(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[defaults]\nrecall_timeout_ms = 80\n")
    value = load_rules(tmp_path).defaults.recall_timeout_ms
    assert value == 80.0 and isinstance(value, float)


def test_extract_roles_becomes_a_tuple(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[defaults]\nextract_roles = ["user", "assistant"]\n')
    assert load_rules(tmp_path).defaults.extract_roles == ("user", "assistant")


def test_match_on_path_tenant_user_and_headers() -> None:
    match = Match(path="/v1/chat/*", tenant="acme*", user="u-*", header={"X-Env": "ci"})
    facts = RequestFacts(model="m", path="/v1/chat/completions", tenant="acme-eu", user="u-1", headers={"x-env": "ci"})
    assert match.matches(facts)
    assert not match.matches(RequestFacts(model="m", path="/v1/chat/completions", tenant="acme-eu", user="u-1", headers={"x-env": "prod"}))
    assert not match.matches(RequestFacts(model="m", path="/v1/chat/completions", tenant="acme-eu", user=None, headers={"x-env": "ci"}))


def test_a_header_rule_does_not_match_a_request_without_the_header() -> None:
    assert not Match(header={"X-Env": "ci"}).matches(RequestFacts())


def test_model_globs_are_case_sensitive() -> None:
    assert not Match(model="gpt-*").matches(RequestFacts(model="GPT-4o"))


@pytest.mark.parametrize("text,message", [
    ("[defaults]\ntop_k = true\n", "field 'top_k' must be int, got True"),
    ("[defaults]\ntop_k = 1.5\n", "field 'top_k' must be int, got 1.5"),
    ("[defaults]\ninject = 1\n", "field 'inject' must be bool, got 1"),
    ("[defaults]\ntop_k = -1\n", "field 'top_k' must not be negative"),
    ("[defaults]\nbudget_ratio = 0\n", "field 'budget_ratio' must be in (0, 1]"),
    ("[defaults]\nbudget_ratio = 1.5\n", "field 'budget_ratio' must be in (0, 1]"),
    ('[defaults]\ntemplate = "fancy"\n', "field 'template' must be 'default' or 'compact'"),
    ('[defaults]\nextractor = "gpt"\n', "field 'extractor' must be 'heuristic' or 'llm'"),
    ('[defaults]\nextract_roles = ["bot"]\n', "field 'extract_roles' must be a list of"),
    ('[defaults]\nextract_roles = "user"\n', "field 'extract_roles' must be a list of"),
    ("[defaults]\nbogus = 1\n", "unknown field 'bogus' (known: budget_ratio"),
    ("junk = 1\n", "unknown top-level key 'junk'"),
    ("defaults = 5\n", "[defaults] must be a table"),
    ("rule = 5\n", "'rule' must be an array of tables"),
    ("[[rule]]\ntop_k = 3\n", "rule #1: field 'name' is required"),
    ('[[rule]]\nname = "a"\n[[rule]]\nname = "a"\n', "rule 'a': field 'name' repeats an earlier rule"),
    ('[[rule]]\nname = "a"\nmatch = 5\n', "rule 'a': field 'match' must be a table"),
    ('[[rule]]\nname = "a"\nmatch = { modle = "x" }\n', "rule 'a': unknown match field 'modle'"),
    ('[[rule]]\nname = "a"\nmatch = { model = 5 }\n', "rule 'a': match field 'model' must be a string"),
    ('[[rule]]\nname = "a"\nmatch = { header = { X = 1 } }\n', "rule 'a': match field 'header' must map header names to strings"),
    ('[[rule]]\nname = "a"\ntop_k = "many"\n', "rule 'a': field 'top_k' must be int"),
    ("[defaults\n", "Expected"),
])
def test_an_invalid_file_raises_a_rules_error_naming_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_a_file_that_is_not_utf8_raises_a_rules_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_bytes(b"[defaults]\ntemplate = \"\xff\"\n")
    with pytest.raises(RulesError, match="bad.toml"):
        load_rules(tmp_path)


def test_a_rules_error_is_a_value_error() -> None:
    assert issubclass(RulesError, ValueError)


def test_a_nan_min_score_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[defaults]\nmin_score = nan\n")
    with pytest.raises(RulesError, match="min_score"):
        load_rules(tmp_path)


# -- rules_fingerprint ----------------------------------------------------------------------------


def test_the_fingerprint_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert rules_fingerprint(tmp_path / "nope") == ()


def test_the_fingerprint_is_stable_without_changes(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[defaults]\n")
    assert rules_fingerprint(tmp_path) == rules_fingerprint(tmp_path)


def test_the_fingerprint_changes_when_a_file_is_edited(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", "[defaults]\ntop_k = 3\n")
    before = rules_fingerprint(tmp_path)
    path.write_text("[defaults]\ntop_k = 30\n")
    assert rules_fingerprint(tmp_path) != before


def test_the_fingerprint_changes_on_a_same_size_edit_with_a_new_mtime(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", "[defaults]\ntop_k = 3\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = rules_fingerprint(tmp_path)
    path.write_text("[defaults]\ntop_k = 4\n")
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert rules_fingerprint(tmp_path) != before


def test_the_fingerprint_changes_when_a_file_is_added_or_removed(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[defaults]\n")
    before = rules_fingerprint(tmp_path)
    extra = write(tmp_path, "b.toml", "[defaults]\n")
    added = rules_fingerprint(tmp_path)
    extra.unlink()
    assert added != before and rules_fingerprint(tmp_path) == before


def test_the_fingerprint_ignores_other_files(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", "[defaults]\n")
    before = rules_fingerprint(tmp_path)
    write(tmp_path, "notes.md", "hello")
    assert rules_fingerprint(tmp_path) == before
