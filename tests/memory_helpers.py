"""Shared helpers for the recall, injection and admin tests: add memories over HTTP, read what the upstream got."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from gateway.identity import key_fingerprint

from .harness import Gateway

START = "<memgate-memories"
END = "</memgate-memories>"


def tenant_of(api_key: str) -> str:
    return key_fingerprint(api_key)


def add_memory(gw: Gateway, api_key: str, user: str, text: str, **fields: Any) -> dict[str, Any]:
    with gw.admin() as admin:
        response = admin.post(f"/tenants/{tenant_of(api_key)}/users/{user}/memories", json={"text": text, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def chat(gw: Gateway, api_key: str, user: str | None, messages: list[dict[str, Any]], model: str = "gpt-4o", headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    sent = {"Authorization": f"Bearer {api_key}", **({"X-Memory-User-Id": user} if user else {}), **(headers or {})}
    return httpx.post(gw.v1 + "/chat/completions", json={"model": model, "messages": messages, **body}, headers=sent, timeout=30)


def system_text(payload: dict[str, Any]) -> str:
    """Text of the first system/developer message the upstream received ('' if none)."""
    for message in payload["messages"]:
        if message.get("role") in ("system", "developer"):
            content = message["content"]
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


def memory_block(payload: dict[str, Any]) -> str:
    """The injected block (delimiters included), or '' when nothing was injected."""
    text = system_text(payload)
    start = text.find(START)
    return text[start : text.index(END, start) + len(END)] if start >= 0 else ""


def injected_texts(payload: dict[str, Any]) -> list[str]:
    """The memory texts of the block, decoded from their quoted form, in block order."""
    return [json.loads(q) for q in re.findall(r'^.*?("(?:[^"\\]|\\.)*")\s*$', memory_block(payload), flags=re.M)]
