"""Who is asking: tenant, user, agent and session of a request, validated."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

from gateway.errors import BadRequest

# Ids travel into store filters, file names of exports and log lines: keep them to a safe alphabet.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}")
MAX_ID_LENGTH = 128
DEFAULT_TENANT = "default"

# Keys that local servers' docs (vLLM, Ollama, LM Studio, llama.cpp...) and tutorials tell everyone to
# send: anyone can send them, so they name no caller. Compared trimmed and case-insensitively.
PLACEHOLDER_KEYS = frozenset({
    "empty", "ollama", "lm-studio", "lmstudio", "sk-no-key-required", "no-key", "nokey", "no_key", "not-needed",
    "none", "null", "nil", "undefined", "dummy", "fake", "test", "placeholder", "changeme", "anything",
    "key", "apikey", "api-key", "api_key", "token", "secret", "password", "your-api-key", "your_api_key",
    "x", "xxx", "sk-xxx", "sk-xxxx", "sk-1234", "sk-dummy", "sk-fake", "sk-test", "1234",
})
NO_KEY = "no_key"
PLACEHOLDER_KEY = "placeholder_key"


@dataclass(frozen=True)
class Identity:
    tenant: str
    user: str | None
    agent: str | None = None
    session: str | None = None
    # NO_KEY or PLACEHOLDER_KEY: the caller has no tenant of its own, so memory is off. None: a real or mapped key.
    keyless: str | None = None

    @property
    def has_user(self) -> bool:
        return self.user is not None


def validate_id(value: str, what: str) -> str:
    """Return `value` if it is a usable id, else raise a 400 naming `what`."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise BadRequest(
            f"invalid {what}: 1-{MAX_ID_LENGTH} characters of letters, digits and . _ : @ + -, starting with a letter or digit",
            param=what,
            code="invalid_memory_id",
        )
    return value


def key_fingerprint(token: str) -> str:
    return "k_" + hashlib.sha256(token.encode()).hexdigest()[:16]


def bearer_token(headers: Mapping[str, str]) -> str:
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Azure-style clients send `api-key`, Anthropic's `x-api-key`: the same key has the same fingerprint however sent.
    return (headers.get("api-key") or headers.get("x-api-key") or "").strip()


def key_problem(token: str) -> str | None:
    """NO_KEY or PLACEHOLDER_KEY when `token` cannot tell one caller from another, else None."""
    if not token:
        return NO_KEY
    return PLACEHOLDER_KEY if token.lower() in PLACEHOLDER_KEYS else None


def tenant_for(headers: Mapping[str, str], tenant_mode: str, tenants: Mapping[str, str]) -> tuple[str, str | None]:
    """The caller's tenant, and why it is not really one (see `key_problem`) unless the operator chose it."""
    if tenant_mode == "none":
        return DEFAULT_TENANT, None
    token = bearer_token(headers)
    fingerprint = key_fingerprint(token)  # no key: the fingerprint of "", which [tenants] can map too
    if fingerprint in tenants:
        return tenants[fingerprint], None
    return fingerprint, key_problem(token)


def _body_user(value: Any) -> str | None:
    # `user` is the app's own end-user field, sent to OpenAI long before memgate: never reject it.
    # An id outside our alphabet (spaces, very long) is mapped to a stable digest instead.
    if not isinstance(value, str) or not value:
        return None
    if ID_PATTERN.fullmatch(value):
        return value
    return "u_" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def identify(headers: Mapping[str, str], body: Mapping[str, Any], tenant_mode: str, tenants: Mapping[str, str]) -> Identity:
    """Derive the identity of a chat request from its headers and JSON body."""
    user = headers.get("x-memory-user-id")
    if user is not None:
        validate_id(user, "X-Memory-User-Id")
    else:
        # `safety_identifier` is OpenAI's successor to `user`: the same end-user id under a new name.
        user = _body_user(body.get("user")) or _body_user(body.get("safety_identifier"))
    agent = headers.get("x-memory-agent-id")
    session = headers.get("x-memory-session-id")
    if agent is not None:
        validate_id(agent, "X-Memory-Agent-Id")
    if session is not None:
        validate_id(session, "X-Memory-Session-Id")
    tenant, keyless = tenant_for(headers, tenant_mode, tenants)
    return Identity(tenant, user, agent, session, keyless)
