"""Shared helpers for the extraction tests: talk to the gateway as a client and as an admin."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from .harness import Gateway

KEY = "sk-test-extraction"
TENANT = "default"  # the extraction tests run with tenant_mode=none


def client(gw: Gateway, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0, timeout=30)


def say(gw: Gateway, user: str, text: str, *, stream: bool = False, model: str = "m", headers: dict[str, str] | None = None,
        history: list[dict[str, str]] | None = None) -> str:
    """One chat turn through the openai SDK; returns the assistant's text."""
    messages = [*(history or []), {"role": "user", "content": text}]
    extra = {"X-Memory-User-Id": user, **(headers or {})}
    if stream:
        chunks = client(gw).chat.completions.create(model=model, messages=messages, stream=True, extra_headers=extra)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = client(gw).chat.completions.create(model=model, messages=messages, extra_headers=extra)
    return reply.choices[0].message.content or ""


def flush(gw: Gateway, timeout: float = 60) -> dict[str, Any]:
    with gw.admin() as admin:
        response = admin.post("/queue/flush", params={"timeout": timeout}, timeout=timeout + 10)
    assert response.status_code == 200, response.text
    return response.json()


def queue_state(gw: Gateway) -> dict[str, Any]:
    with gw.admin() as admin:
        return admin.get("/queue").json()


def memories(gw: Gateway, user: str, tenant: str = TENANT, tier: str | None = None) -> list[dict[str, Any]]:
    """Every active memory of a user (core and recall, or of `tier`) through the admin API, following cursors ([] for an unknown user)."""
    out: list[dict[str, Any]] = []
    cursor = None
    with gw.admin() as admin:
        while True:
            params: dict[str, Any] = {"limit": 200}
            if tier:
                params["tier"] = tier
            if cursor:
                params["cursor"] = cursor
            response = admin.get(f"/tenants/{tenant}/users/{user}/memories", params=params)
            if response.status_code == 404 and response.json()["error"]["code"] == "user_not_found":
                return out
            assert response.status_code == 200, response.text
            body = response.json()
            out += body["memories"]
            cursor = body.get("next_cursor")
            if not cursor:
                return out


def texts(gw: Gateway, user: str) -> list[str]:
    return sorted(m["text"] for m in memories(gw, user))


def history(gw: Gateway, user: str, memory_id: str, tenant: str = TENANT) -> list[dict[str, Any]]:
    with gw.admin() as admin:
        response = admin.get(f"/tenants/{tenant}/users/{user}/memories/{memory_id}/history")
    assert response.status_code == 200, response.text
    return response.json()["history"]


def system_text(body: dict[str, Any]) -> str:
    """The system message(s) the upstream received."""
    return "\n".join(str(m.get("content")) for m in body["messages"] if m.get("role") in ("system", "developer"))


def raw_stream(gw: Gateway, user: str, text: str, mode: str) -> bytes:
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]}
    headers = {"Authorization": f"Bearer {KEY}", "X-Memory-User-Id": user, "X-Memory-Mode": mode}
    with httpx.stream("POST", gw.v1 + "/chat/completions", json=payload, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())
