"""Rules: validated at start-up and by `memgate rules check`, explained by `memgate rules explain`,
applied per request (seen in X-Memory-Status), and reloaded live by file watch or SIGHUP."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from gateway.identity import key_fingerprint
from gateway.rules import RuleSet, RuleSettings, load_rules

from .fake_upstream import FakeUpstream
from .harness import ROOT, Gateway, free_port

MESSAGES = [{"role": "user", "content": "hi"}]
KEY = "sk-rules-tests-5c1d"  # a caller without a key of its own has memory off whatever the rules say

RULES = """
[defaults]
top_k = 7

[[rule]]
name = "bots-forget"
match = { user = "bot-*" }
inject = false
extract = false

[[rule]]
name = "ci-batch"
match = { model = "*-batch", header = { "X-Env" = "ci" } }
inject = false
extract = false

[[rule]]
name = "embeddings-path"
match = { path = "/v1/other" }
top_k = 1
"""


def memgate(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMGATE_")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, env={**clean, **(env or {}), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)


def write_rules(directory: Path, text: str, name: str = "rules.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def status(gateway: Gateway, user: str = "alice", model: str = "gpt-4o", headers: dict[str, str] | None = None) -> str:
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": model, "messages": MESSAGES},
                          headers={"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user, **(headers or {})}, timeout=10)
    assert response.status_code == 200
    return response.headers["x-memory-status"]


def poll(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


# -- invalid rules fail start-up, naming file, rule and field ---------------------------------------


BAD_RULES = {
    "wrong-type": ('[[rule]]\nname = "greedy"\ntop_k = "many"\n', ["greedy", "top_k"]),
    "unknown-field": ('[[rule]]\nname = "typo"\nbudget_tokenz = 10\n', ["typo", "budget_tokenz"]),
    "bad-match": ('[[rule]]\nname = "matcher"\nmatch = { modle = "x" }\n', ["matcher", "modle"]),
    "no-name": ("[[rule]]\ninject = false\n", ["rule #1", "name"]),
    "bad-default": ("[defaults]\nbudget_ratio = 3.0\n", ["[defaults]", "budget_ratio"]),
    "negative": ('[[rule]]\nname = "neg"\nmin_score = -1\n', ["neg", "min_score"]),
    "toml-syntax": ("[[rule]\nname = \n", []),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_invalid_rules_fail_start_up_naming_file_rule_and_field(case: str, tmp_path: Path) -> None:
    text, expected = BAD_RULES[case]
    path = write_rules(tmp_path / "rules", text, f"{case}.toml")
    result = memgate("serve", "--port", str(free_port()), "--rules", str(tmp_path / "rules"), "--data-dir", str(tmp_path / "data"), timeout=30)
    assert result.returncode == 1
    assert str(path) in result.stderr
    for word in expected:
        assert word in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_rules_check_accepts_the_shipped_rules_and_examples() -> None:
    result = memgate("rules", "check", "--rules", str(ROOT / "rules"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 0 rules in 1 files")
    examples = memgate("rules", "check", "--rules", str(ROOT / "rules" / "examples"))
    assert examples.returncode == 0, examples.stderr
    assert "no-memory-for-batch" in examples.stdout and "small-models-small-budget" in examples.stdout


def test_rules_check_rejects_an_invalid_rule(tmp_path: Path) -> None:
    path = write_rules(tmp_path, '[[rule]]\nname = "greedy"\ntop_k = "many"\n')
    result = memgate("rules", "check", "--rules", str(tmp_path))
    assert result.returncode == 1
    assert str(path) in result.stderr and "'greedy'" in result.stderr and "top_k" in result.stderr


def explain(rules: Path, *args: str) -> dict:
    result = memgate("rules", "explain", "--rules", str(rules), *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_rules_explain_names_the_matching_rule_and_merged_settings(tmp_path: Path) -> None:
    write_rules(tmp_path, RULES)
    batch = explain(tmp_path, "--model", "nightly-batch", "--header", "X-Env=ci")
    assert batch["rule"] == "ci-batch"
    assert (batch["settings"]["inject"], batch["settings"]["extract"], batch["settings"]["top_k"]) == (False, False, 7)
    assert explain(tmp_path, "--model", "nightly-batch", "--header", "X-Env=prod")["rule"] == "defaults"
    assert explain(tmp_path, "--model", "nightly-batch")["rule"] == "defaults"
    assert explain(tmp_path, "--model", "gpt-4o", "--user", "bot-7")["rule"] == "bots-forget"
    assert explain(tmp_path, "--model", "gpt-4o", "--path", "/v1/other")["settings"]["top_k"] == 1


def test_rules_explain_on_the_shipped_rules_and_examples() -> None:
    shipped = explain(ROOT / "rules", "--model", "gpt-4o-mini")
    assert shipped == {**shipped, "rule": "defaults", "settings": json.loads(json.dumps(dataclasses.asdict(RuleSettings())))}
    examples = ROOT / "rules" / "examples"
    small = explain(examples, "--model", "gpt-4o-mini")
    assert small["rule"] == "small-models-small-budget" and small["settings"]["budget_tokens"] == 512
    assert explain(examples, "--model", "gpt-4o-batch", "--header", "X-Env=ci")["rule"] == "no-memory-for-batch"


def test_the_shipped_rules_file_sets_nothing_and_its_comments_are_the_built_in_defaults() -> None:
    # Nothing shipped may decide for a request: the operator's rules are the only ones in force.
    assert load_rules(ROOT / "rules") == RuleSet(RuleSettings(), (), (str(ROOT / "rules" / "default.toml"),))
    documented = {}
    for line in (ROOT / "rules" / "default.toml").read_text().splitlines():
        setting = re.fullmatch(r"# (\w+) = .*", line)
        if setting and setting.group(1) in RuleSettings.__dataclass_fields__:
            documented.update(tomllib.loads(line.removeprefix("# ")))
    built_in = dataclasses.asdict(RuleSettings())
    assert set(documented) == set(built_in)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in documented.items()} == built_in


def test_an_operators_rules_win_over_anything_shipped(start_gateway, tmp_path: Path) -> None:
    # The operator's tenant policy sorts after the shipped file, its defaults before it: both must hold.
    rules = tmp_path / "rules"
    rules.mkdir()
    for shipped in (ROOT / "rules").glob("*.toml"):
        (rules / shipped.name).write_text(shipped.read_text())
    write_rules(rules, '[[rule]]\nname = "acme-off"\nmatch = { tenant = "acme" }\ninject = false\nextract = false\n', "tenant-policy.toml")
    write_rules(rules, "[defaults]\ntop_k = 3\nbudget_tokens = 300\n", "acme-defaults.toml")
    acme = explain(rules, "--model", "gpt-4o-mini", "--tenant", "acme")
    assert (acme["rule"], acme["settings"]["inject"], acme["settings"]["extract"]) == ("acme-off", False, False)
    other = explain(rules, "--model", "gpt-4o-mini", "--tenant", "k_0123456789abcdef")
    assert (other["rule"], other["settings"]["top_k"], other["settings"]["budget_tokens"]) == ("defaults", 3, 300)
    config = tmp_path / "memgate.toml"
    config.write_text(f'[tenants]\n"{key_fingerprint(KEY)}" = "acme"\n')
    gw = start_gateway(rules=rules, config=config)
    for model in ("gpt-4o-mini", "o4-mini-high", "gpt-4o"):
        assert status(gw, model=model) == "off"


def test_rules_load_in_file_name_order_and_first_match_wins(tmp_path: Path) -> None:
    write_rules(tmp_path, '[[rule]]\nname = "late"\nmatch = { model = "gpt-*" }\ntop_k = 2\n', "20-late.toml")
    write_rules(tmp_path, '[[rule]]\nname = "early"\nmatch = { model = "gpt-4*" }\ntop_k = 1\n', "10-early.toml")
    write_rules(tmp_path, "[defaults]\nbudget_tokens = 99\n", "30-defaults.toml")
    first = explain(tmp_path, "--model", "gpt-4o")
    assert (first["rule"], first["settings"]["top_k"], first["settings"]["budget_tokens"]) == ("early", 1, 99)
    assert explain(tmp_path, "--model", "gpt-3.5")["rule"] == "late"


def test_rules_explain_rejects_a_header_without_a_value(tmp_path: Path) -> None:
    write_rules(tmp_path, RULES)
    result = memgate("rules", "explain", "--rules", str(tmp_path), "--model", "m", "--header", "X-Env")
    assert result.returncode == 1 and "NAME=VALUE" in result.stderr


# -- rules applied to live requests ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ruled(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("ruled")
    write_rules(root / "rules", RULES)
    gw = Gateway(upstream.url, root / "data", rules=root / "rules").start()
    yield gw
    gw.stop()


def test_a_rule_matching_the_user_turns_memory_off(ruled: Gateway) -> None:
    assert status(ruled, user="alice") == "ok"
    assert status(ruled, user="bot-42") == "off"


def test_a_rule_matching_model_and_header_turns_memory_off(ruled: Gateway) -> None:
    assert status(ruled, model="nightly-batch", headers={"X-Env": "ci"}) == "off"
    assert status(ruled, model="nightly-batch", headers={"X-Env": "dev"}) == "ok"


@pytest.mark.parametrize("mode, expected", [("off", "off"), ("read", "ok"), ("write", "ok"), ("read-write", "ok"), ("READ", "ok")])
def test_memory_mode_header_narrows_what_the_rule_allows(mode: str, expected: str, ruled: Gateway) -> None:
    assert status(ruled, headers={"X-Memory-Mode": mode}) == expected


def test_memory_mode_header_cannot_widen_a_rule_that_turns_memory_off(ruled: Gateway) -> None:
    assert status(ruled, user="bot-1", headers={"X-Memory-Mode": "read-write"}) == "off"


# -- live reload ----------------------------------------------------------------------------------------


def reloads(gateway: Gateway, outcome: str) -> float:
    return gateway.metric("memgate_rules_reloads_total", outcome=outcome)


def test_edited_rules_apply_without_a_restart_and_an_invalid_edit_keeps_them(start_gateway, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write_rules(rules, RULES)
    gw = start_gateway(rules=rules)
    assert status(gw, user="carol") == "ok"
    write_rules(rules, '[[rule]]\nname = "carol-off"\nmatch = { user = "carol" }\ninject = false\nextract = false\n', "00-carol.toml")
    assert poll(lambda: status(gw, user="carol") == "off")
    assert status(gw, user="dave") == "ok"

    invalid_before = reloads(gw, "invalid")
    write_rules(rules, '[[rule]]\nname = "carol-off"\nmatch = { user = "carol" }\ninject = "nope"\n', "00-carol.toml")
    assert poll(lambda: reloads(gw, "invalid") > invalid_before)
    assert status(gw, user="carol") == "off"  # the previous rules stay in force
    assert "00-carol.toml" in gw.log() and "keeping the previous rules" in gw.log()
    assert gw.proc is not None and gw.proc.poll() is None


def test_sighup_reloads_rules_the_file_watch_cannot_see(start_gateway, tmp_path: Path) -> None:
    head = '[[rule]]\nname = "erin"\nmatch = { user = "erin" }\n'
    path = write_rules(tmp_path / "rules", head + "inject = true \nextract = true \n")
    gw = start_gateway(rules=tmp_path / "rules")
    assert status(gw, user="erin") == "ok"
    # Same size and the old mtime: the poller sees no change, only SIGHUP picks this edit up.
    stat = path.stat()
    path.write_text(head + "inject = false\nextract = false\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    ok_before = reloads(gw, "ok")
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    assert poll(lambda: reloads(gw, "ok") > ok_before)
    assert status(gw, user="erin") == "off"
