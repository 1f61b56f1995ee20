"""Identity: tenant from the API key's fingerprint (or the name config maps it to), user from the
header, else the body's `user`, else none (memory off). Observed from outside through rules that
match on tenant or user and turn memory off, which X-Memory-Status reports. A caller without a key
of its own (none, or a placeholder such as EMPTY) gets memory off unless the operator chose otherwise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from gateway.identity import NO_KEY, PLACEHOLDER_KEY

from .fake_upstream import FakeUpstream
from .harness import Gateway
from .memory_helpers import memory_block

KEY_A = "sk-tenant-a-1111111111"
KEY_B = "sk-tenant-b-2222222222"
KEY_C = "sk-tenant-c-3333333333"
MESSAGES = [{"role": "user", "content": "hi"}]


def fingerprint(key: str) -> str:
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def off_for(match: str) -> str:
    return f'[[rule]]\nname = "off"\nmatch = {{ {match} }}\ninject = false\nextract = false\n'


def send(gateway: Gateway, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES, **body}, headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def status(gateway: Gateway, key: str | None = KEY_C, user: str | None = "alice", body_user: str | None = None) -> str:
    """X-Memory-Status for a chat with `user` in the header and `body_user` in the body (None: absent), as `key` (None: no key)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if user is not None:
        headers["X-Memory-User-Id"] = user
    body = {} if body_user is None else {"user": body_user}
    return send(gateway, headers, **body).headers["x-memory-status"]


def rules_dir(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "rules.toml").write_text(text)
    return directory


def test_fingerprint_is_k_and_16_hex_of_sha256(bots_off: Gateway) -> None:
    # Ask the gateway which tenant it files a key's memories under; the rules below and operators'
    # [tenants] tables rely on that name being exactly this formula.
    gw = bots_off
    for key in (KEY_A, KEY_B):
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "I live in Porto."}]}
        send(gw, {"Authorization": f"Bearer {key}", "X-Memory-User-Id": "alice"}, **chat)
    with gw.admin() as admin:
        assert admin.post("/queue/flush", params={"timeout": 60}, timeout=70).json()["depth"] == 0
        tenants = admin.get("/tenants").json()["tenants"]
    expected = {"k_" + hashlib.sha256(key.encode()).hexdigest()[:16] for key in (KEY_A, KEY_B)}
    assert expected <= set(tenants), tenants


@pytest.fixture(scope="module")
def key_a_off(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose rules turn memory off for KEY_A's tenant, named by its fingerprint."""
    root = tmp_path_factory.mktemp("key-a-off")
    gw = Gateway(upstream.url, root / "data", rules=rules_dir(root, off_for(f'tenant = "{fingerprint(KEY_A)}"'))).start()
    yield gw
    gw.stop()


def test_tenant_is_the_fingerprint_of_the_bearer_key(key_a_off: Gateway) -> None:
    assert status(key_a_off, KEY_A) == "off"
    assert status(key_a_off, KEY_B) == "ok"


def test_tenant_fingerprint_also_comes_from_an_azure_style_api_key_header(key_a_off: Gateway) -> None:
    assert send(key_a_off, {"api-key": KEY_A, "X-Memory-User-Id": "alice"}).headers["x-memory-status"] == "off"


def test_config_maps_a_key_fingerprint_to_a_tenant_name(start_gateway, tmp_path: Path) -> None:
    # Two keys (an old one and its rotation) mapped to one stable tenant name.
    config = tmp_path / "memgate.toml"
    config.write_text(f'[tenants]\n"{fingerprint(KEY_A)}" = "acme"\n"{fingerprint("sk-acme-rotated")}" = "acme"\n')
    gw = start_gateway(rules=rules_dir(tmp_path, off_for('tenant = "acme"')), config=config)
    assert status(gw, KEY_A) == "off"
    assert status(gw, "sk-acme-rotated") == "off"
    assert status(gw, KEY_B) == "ok"


def test_tenant_mode_none_puts_everyone_in_the_default_tenant(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway(rules=rules_dir(tmp_path, off_for('tenant = "default"')), tenant_mode="none")
    assert status(gw, KEY_A) == "off"
    assert status(gw, KEY_B) == "off"


@pytest.fixture(scope="module")
def bots_off(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("identity")
    gw = Gateway(upstream.url, root / "data", rules=rules_dir(root, off_for('user = "bot-*"'))).start()
    yield gw
    gw.stop()


def test_user_comes_from_the_header(bots_off: Gateway) -> None:
    assert status(bots_off, user="alice") == "ok"
    assert status(bots_off, user="bot-1") == "off"


def test_user_falls_back_to_the_body_user_field(bots_off: Gateway) -> None:
    assert status(bots_off, user=None, body_user="alice") == "ok"
    assert status(bots_off, user=None, body_user="bot-2") == "off"


def test_header_user_wins_over_the_body_user(bots_off: Gateway) -> None:
    assert status(bots_off, user="alice", body_user="bot-3") == "ok"
    assert status(bots_off, user="bot-3", body_user="alice") == "off"


def test_no_user_at_all_means_memory_off(bots_off: Gateway) -> None:
    assert status(bots_off, user=None) == "off"
    assert status(bots_off, user=None, body_user="") == "off"


def test_a_body_user_outside_the_id_alphabet_is_served_not_rejected(upstream: FakeUpstream, bots_off: Gateway) -> None:
    # `user` is the app's own field, sent to OpenAI long before memgate: it must never cause a 400.
    response = send(bots_off, {"Authorization": f"Bearer {KEY_C}", "X-Memory-Agent-Id": "planner", "X-Memory-Session-Id": "s-1"}, user="Jane Doe <jane@example.com>")
    assert response.headers["x-memory-status"] == "ok"
    forwarded = upstream.chat_requests()[-1]
    assert json.loads(forwarded.body)["user"] == "Jane Doe <jane@example.com>"
    assert not [h for h in forwarded.headers if h.startswith("x-memory-")]


@pytest.mark.parametrize("user", ["alice", "a", "user@example.com", "tenant:user+tag", "A.b_c-9", "u" * 128])
def test_valid_user_ids_are_accepted(user: str, bots_off: Gateway) -> None:
    assert status(bots_off, user=user) == "ok"


# -- callers without a key of their own --------------------------------------------------------------


# What a caller sends -> why it names no caller. Each placeholder is logged once, under its own fingerprint.
KEYLESS_HEADERS: list[tuple[dict[str, str], str]] = [
    ({}, NO_KEY),
    ({"Authorization": "Bearer"}, NO_KEY),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, NO_KEY),
    ({"Authorization": "Bearer EMPTY"}, PLACEHOLDER_KEY),  # vLLM's docs
    ({"Authorization": "Bearer ollama"}, PLACEHOLDER_KEY),  # Ollama's docs
    ({"Authorization": "Bearer LM-Studio"}, PLACEHOLDER_KEY),  # any case
    ({"Authorization": "Bearer sk-no-key-required"}, PLACEHOLDER_KEY),  # llama.cpp's server
    ({"api-key": "none"}, PLACEHOLDER_KEY),  # Azure-style header
]


def chat_as(gateway: Gateway, headers: dict[str, str], user: str, content: str) -> httpx.Response:
    return send(gateway, {**headers, "X-Memory-User-Id": user}, messages=[{"role": "user", "content": content}])


def flushed_tenants(gateway: Gateway) -> list[str]:
    with gateway.admin() as admin:
        assert admin.post("/queue/flush").status_code == 200
        return admin.get("/tenants").json()["tenants"]


def test_callers_without_a_key_of_their_own_get_memory_off_counted_and_logged_once(start_gateway, upstream: FakeUpstream) -> None:
    # The attack: with a keyless upstream, caller A tells memgate a secret as alice, caller B asks as alice.
    gw = start_gateway()
    for question in ("My bank PIN is 4321.", "What is my bank PIN?"):
        for headers, _ in KEYLESS_HEADERS:
            assert chat_as(gw, headers, "alice", question).headers["x-memory-status"] == "off"
            assert memory_block(upstream.last_chat()) == ""
    assert flushed_tenants(gw) == []  # nothing was learned, under any tenant
    for reason in (NO_KEY, PLACEHOLDER_KEY):
        assert gw.metric("memgate_keyless_memory_off_total", reason=reason) == 2 * sum(1 for _, r in KEYLESS_HEADERS if r == reason)
    assert gw.metric("memgate_memory_status_total", status="off") == 2 * len(KEYLESS_HEADERS)
    # One clear warning per key (no key at all is one key), naming the fingerprint to map; not one per request.
    lines = [json.loads(line) for line in gw.log().splitlines() if "--tenant-mode none" in line]
    assert sorted(line["reason"] for line in lines) == [NO_KEY] + [PLACEHOLDER_KEY] * 5
    assert all(line["level"] == "warning" and line["fingerprint"] in line["msg"] for line in lines)
    assert fingerprint("") in [line["fingerprint"] for line in lines]
    # A caller with a key of its own keeps its memory.
    assert chat_as(gw, {"Authorization": f"Bearer {KEY_A}"}, "alice", "My boat is called Heron.").headers["x-memory-status"] == "ok"
    assert flushed_tenants(gw) == [fingerprint(KEY_A)]


def test_the_operator_can_serve_keyless_callers_with_tenant_mode_none_or_a_mapping(start_gateway, upstream: FakeUpstream, tmp_path: Path) -> None:
    everyone = start_gateway(tenant_mode="none")
    assert status(everyone, key=None) == "ok" and status(everyone, key="EMPTY") == "ok"
    # A mapped fingerprint is the operator's choice: no key and "EMPTY" share the tenant "lab" on purpose.
    config = tmp_path / "memgate.toml"
    config.write_text(f'[tenants]\n"{fingerprint("")}" = "lab"\n"{fingerprint("EMPTY")}" = "lab"\n')
    mapped = start_gateway(config=config)
    assert chat_as(mapped, {}, "alice", "My boat is called Heron.").headers["x-memory-status"] == "ok"
    assert flushed_tenants(mapped) == ["lab"]
    assert chat_as(mapped, {"Authorization": "Bearer EMPTY"}, "alice", "What is my boat called?").headers["x-memory-status"] == "ok"
    assert "Heron" in memory_block(upstream.last_chat())
    assert status(mapped, key="ollama") == "off"  # an unmapped placeholder stays off
    assert mapped.metric("memgate_keyless_memory_off_total") == 1
