"""identity.py: key fingerprints, id validation and who a request is."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BadRequest
from gateway.identity import (DEFAULT_TENANT, NO_KEY, PLACEHOLDER_KEY, PLACEHOLDER_KEYS, Identity, bearer_token, identify,
                              key_fingerprint, key_problem, tenant_for, validate_id)


def test_the_fingerprint_is_k_and_16_hex_of_the_keys_sha256() -> None:
    assert key_fingerprint("sk-test") == "k_" + hashlib.sha256(b"sk-test").hexdigest()[:16]


@given(st.text(min_size=1))
def test_every_fingerprint_has_the_same_shape(key: str) -> None:
    assert re.fullmatch(r"k_[0-9a-f]{16}", key_fingerprint(key))


def test_different_keys_have_different_fingerprints() -> None:
    assert key_fingerprint("sk-a") != key_fingerprint("sk-b")


@pytest.mark.parametrize("value", ["u", "user-1", "a.b_c:d@e+f-g", "0", "x" * 128, "UPPER.lower"])
def test_valid_ids_are_returned_unchanged(value: str) -> None:
    assert validate_id(value, "X-Memory-User-Id") == value


@pytest.mark.parametrize("value", ["", "x" * 129, "-leading", ".dot", "has space", "slash/es", "ü", "new\nline", "tab\t"])
def test_invalid_ids_are_a_400_naming_the_field(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_id(value, "X-Memory-User-Id")
    assert info.value.status == 400 and info.value.param == "X-Memory-User-Id" and "X-Memory-User-Id" in info.value.message


def test_a_non_string_id_is_a_400() -> None:
    with pytest.raises(BadRequest):
        validate_id(5, "user")  # type: ignore[arg-type]


def test_the_bearer_token_comes_from_authorization() -> None:
    assert bearer_token({"authorization": "Bearer  sk-1 "}) == "sk-1"
    assert bearer_token({"authorization": "bearer sk-1"}) == "sk-1"


def test_the_bearer_token_falls_back_to_api_key() -> None:
    assert bearer_token({"authorization": "Basic abc", "api-key": " az-1 "}) == "az-1"


def test_no_token_is_empty() -> None:
    assert bearer_token({}) == "" and bearer_token({"authorization": "Bearer   "}) == ""


def test_the_tenant_is_the_key_fingerprint_in_key_mode() -> None:
    assert tenant_for({"authorization": "Bearer sk-1"}, "key", {}) == (key_fingerprint("sk-1"), None)


def test_a_named_fingerprint_maps_to_its_tenant_name() -> None:
    assert tenant_for({"authorization": "Bearer sk-1"}, "key", {key_fingerprint("sk-1"): "acme"}) == ("acme", None)


def test_a_request_without_a_key_has_the_empty_keys_fingerprint_and_says_why() -> None:
    assert tenant_for({}, "key", {}) == (key_fingerprint(""), "no_key")


def test_a_placeholder_key_is_named_as_the_reason() -> None:
    assert tenant_for({"authorization": "Bearer EMPTY"}, "key", {})[1] == "placeholder_key"


def test_tenant_mode_none_is_one_default_tenant() -> None:
    assert tenant_for({"authorization": "Bearer sk-1"}, "none", {}) == (DEFAULT_TENANT, None)


def test_identify_reads_user_agent_and_session_headers() -> None:
    headers = {"x-memory-user-id": "u1", "x-memory-agent-id": "coder", "x-memory-session-id": "s1"}
    assert identify(headers, {}, "none", {}) == Identity("default", "u1", "coder", "s1")


def test_the_header_user_wins_over_the_body_user() -> None:
    assert identify({"x-memory-user-id": "u1"}, {"user": "u2"}, "none", {}).user == "u1"


def test_a_body_user_is_used_when_there_is_no_header() -> None:
    assert identify({}, {"user": "u2"}, "none", {}).user == "u2"


def test_a_body_user_outside_the_alphabet_becomes_a_stable_digest() -> None:
    user = identify({}, {"user": "jane doe@example.com"}, "none", {}).user
    assert user == "u_" + hashlib.sha256(b"jane doe@example.com").hexdigest()[:32]
    assert validate_id(user, "user") == user


@pytest.mark.parametrize("body", [{}, {"user": ""}, {"user": 5}, {"user": None}])
def test_no_usable_user_means_no_user(body: dict) -> None:
    identity = identify({}, body, "none", {})
    assert identity.user is None and not identity.has_user


@pytest.mark.parametrize("header", ["x-memory-user-id", "x-memory-agent-id", "x-memory-session-id"])
def test_an_invalid_identity_header_is_a_400(header: str) -> None:
    with pytest.raises(BadRequest):
        identify({header: "not valid"}, {}, "none", {})


ROOT = Path(__file__).resolve().parents[2]
KEY_A = "sk-tenant-a-1111111111"


@pytest.mark.parametrize("token, expected", [
    ("", NO_KEY), ("EMPTY", PLACEHOLDER_KEY), ("empty", PLACEHOLDER_KEY), ("Ollama", PLACEHOLDER_KEY), ("sk-no-key-required", PLACEHOLDER_KEY),
    ("NULL", PLACEHOLDER_KEY), ("sk-proj-8f3a9c1d2e", None), ("ollama-prod-7d1e93", None), (KEY_A, None),
])
def test_a_key_that_names_no_caller_is_recognised(token: str, expected: str | None) -> None:
    assert key_problem(token) == expected
    assert all(key == key.lower().strip() for key in PLACEHOLDER_KEYS)  # the list is compared lower-cased and trimmed


def test_the_readme_lists_exactly_the_placeholder_keys() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme.split("Placeholder keys (compared trimmed, ignoring case):", 1)[1].split("\n\n", 1)[0]
    assert {key.lower() for key in re.findall(r"`([^`]+)`", listed)} == PLACEHOLDER_KEYS
