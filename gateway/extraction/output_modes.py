"""The ways to ask an OpenAI-compatible server for JSON, and where each puts it in the answer."""

from __future__ import annotations

import json
from typing import Any

from gateway.config import OUTPUT_MODES

# In the order `auto` tries them: the strictest first, the one every server can do last.
MODES = OUTPUT_MODES
# Words a 400/422 uses when it refuses a structured-output feature (OpenAI, vLLM, Ollama, LM Studio, llama.cpp).
REFUSAL_WORDS = ("response_format", "json_schema", "json_object", "tool", "function", "structured", "guided", "grammar", "schema")


def schema_instruction(name: str, schema: dict[str, Any]) -> str:
    """What the prompt says when the request itself cannot carry the schema."""
    return f"\n\nAnswer with one JSON object ({name}) and nothing else, matching this JSON schema:\n{json.dumps(schema)}"


def request_body(mode: str, model: str, name: str, schema: dict[str, Any], system: str, user: str) -> dict[str, Any]:
    """A chat completion request asking for `schema` the way `mode` does."""
    if mode in ("json_object", "prompt"):
        system += schema_instruction(name, schema)  # json_object also needs the word JSON in the prompt
    body: dict[str, Any] = {"model": model, "temperature": 0, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    if mode == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif mode == "tools":
        body["tools"] = [{"type": "function", "function": {"name": name, "description": "Record the answer.", "parameters": schema}}]
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
    return body


def answer_text(mode: str, payload: Any) -> tuple[str, bool, str]:
    """(the text holding the JSON, whether it came where `mode` asked for it, finish_reason) of a chat completion.

    Raises ValueError, KeyError, IndexError or TypeError when the payload is not a chat completion."""
    choice = payload["choices"][0]
    message = choice["message"]
    finish = str(choice.get("finish_reason") or "")
    if mode == "tools":
        for call in message.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, dict):  # some servers send the object, not its JSON text
                return json.dumps(arguments), True, finish
            if isinstance(arguments, str):
                return arguments, True, finish
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or ""), mode != "tools", finish


def is_refusal(status: int, body: str) -> bool:
    """A 400 or 422 that names a structured-output feature: the server cannot do this mode."""
    lowered = body.lower()
    return status in (400, 422) and any(word in lowered for word in REFUSAL_WORDS)
