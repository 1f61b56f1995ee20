"""GenAI semantic-convention attributes read from what the proxy already holds: the upstream URL and
the JSON answer. Pure functions, no OpenTelemetry import."""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import urlsplit

# Past this size the answer is not parsed for its usage: parsing runs on the event loop (~0.2 ms at the bound).
MAX_PARSED_BYTES = 64 * 1024

# Host suffix -> gen_ai.provider.name (the semantic conventions' well-known values).
PROVIDERS = (
    ("openai.azure.com", "azure.ai.openai"),
    ("api.openai.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
)


def provider_name(upstream_url: str, configured: str = "") -> str:
    """gen_ai.provider.name of an upstream: the configured name, a well-known provider by host, else the host."""
    if configured:
        return configured
    host = (urlsplit(upstream_url).hostname or "").lower()
    for suffix, name in PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return host or "unknown"


def server_attributes(upstream_url: str) -> dict[str, Any]:
    """server.address and server.port of the upstream."""
    parts = urlsplit(upstream_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname or "", "server.port": port}


def response_attributes(body: bytes, content_encoding: str = "") -> dict[str, Any]:
    """gen_ai.response.model and gen_ai.usage.* from a JSON chat completion; empty for anything else
    (the id and finish reasons are left out: every attribute costs microseconds on the request path)."""
    if len(body) > MAX_PARSED_BYTES:
        return {}
    try:
        if content_encoding.strip().lower() in ("gzip", "deflate"):
            inflater = zlib.decompressobj(wbits=47)
            body = inflater.decompress(body, MAX_PARSED_BYTES)  # bounded: a small bomb stays small
            if inflater.unconsumed_tail:
                return {}
        data = json.loads(body)
    except (ValueError, zlib.error):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(data.get("model"), str):
        out["gen_ai.response.model"] = data["model"]
    usage = data.get("usage")
    if isinstance(usage, dict):
        for keys, attribute in ((("prompt_tokens", "input_tokens"), "gen_ai.usage.input_tokens"),
                                (("completion_tokens", "output_tokens"), "gen_ai.usage.output_tokens")):
            value = next((usage[k] for k in keys if k in usage), None)
            if isinstance(value, int) and not isinstance(value, bool):
                out[attribute] = value
    return out
