"""Identity: tenant from the API key's fingerprint (or the name config maps it to), user from the
header, else the body's `user`, else none (memory off). Observed from outside through rules that
match on tenant or user and turn memory off, which X-Memory-Status reports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .fake_upstream import FakeUpstream
from .harness import Gateway

KEY_A = "sk-tenant-a-1111111111"
KEY_B = "sk-tenant-b-2222222222"
MESSAGES = [{"role": "user", "content": "hi"}]


def fingerprint(key: str) -> str:
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def off_for(match: str) -> str:
    return f'[[rule]]\nname = "off"\nmatch = {{ {match} }}\ninject = false\nextract = false\n'


def send(gateway: Gateway, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    response = httpx.post(gateway.v1 + "/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES, **body}, headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def status(gateway: Gateway, key: str | None = None, user: str | None = "alice", body_user: str | None = None) -> str:
    """X-Memory-Status for a chat with `user` in the header and `body_user` in the body (None: absent)."""
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


def test_fingerprint_is_k_and_16_hex_of_sha256() -> None:
    # Pin the formula the rules below rely on (and that operators put in [tenants]).
    assert fingerprint("sk-test") == "k_" + hashlib.sha256(b"sk-test").hexdigest()[:16]
    assert len(fingerprint(KEY_A)) == 18


def test_tenant_is_the_fingerprint_of_the_bearer_key(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway(rules=rules_dir(tmp_path, off_for(f'tenant = "{fingerprint(KEY_A)}"')))
    assert status(gw, KEY_A) == "off"
    assert status(gw, KEY_B) == "ok"


def test_tenant_fingerprint_also_comes_from_an_azure_style_api_key_header(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway(rules=rules_dir(tmp_path, off_for(f'tenant = "{fingerprint(KEY_A)}"')))
    assert send(gw, {"api-key": KEY_A, "X-Memory-User-Id": "alice"}).headers["x-memory-status"] == "off"


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
    response = send(bots_off, {"X-Memory-Agent-Id": "planner", "X-Memory-Session-Id": "s-1"}, user="Jane Doe <jane@example.com>")
    assert response.headers["x-memory-status"] == "ok"
    forwarded = upstream.chat_requests()[-1]
    assert json.loads(forwarded.body)["user"] == "Jane Doe <jane@example.com>"
    assert not [h for h in forwarded.headers if h.startswith("x-memory-")]


@pytest.mark.parametrize("user", ["alice", "a", "user@example.com", "tenant:user+tag", "A.b_c-9", "u" * 128])
def test_valid_user_ids_are_accepted(user: str, bots_off: Gateway) -> None:
    assert status(bots_off, user=user) == "ok"
