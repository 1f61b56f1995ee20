"""Self-hosted servers' structured-output quirks, for the fake upstream's `so-*` models.

- `so-quirks`: honours every mode, but shapes its answer as the exchange asks: a user turn saying
  "Answer fenced." gets markdown-fenced JSON, "Answer in prose." JSON inside prose, "Answer cut."
  JSON cut off mid-list (finish_reason "length"); otherwise bare JSON.
- `so-ignores-format`: ignores response_format and tools; answers JSON only when the prompt asks for it.
- `so-400-json-schema`: answers 400 to `response_format: json_schema`, honours the rest.
- `so-tools-only`: answers 400 to any response_format; answers tool calls.
- `so-garbage`: prose without any JSON, whatever it is asked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .fake_upstream import completion, extract_memories, judge_memories, last_user_text

SCHEMA_NAMES = ("memgate_extraction", "memgate_reconcile")
PROMPT_MARKER = "matching this JSON schema"


def requested(req: dict[str, Any]) -> tuple[str | None, str]:
    """(which structured call this is, if any; the mode it was asked in)."""
    fmt = req.get("response_format") or {}
    text = json.dumps(req)
    name = next((n for n in SCHEMA_NAMES if n in text), None)
    if fmt.get("type") == "json_schema":
        return name, "json_schema"
    if fmt.get("type") == "json_object":
        return name, "json_object"
    if req.get("tools"):
        return name, "tools"
    return name, "prompt"


def error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": "response_format", "code": None}}


def respond(model: str, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The fake's (status, body) for a chat completion to an `so-*` model."""
    name, mode = requested(req)
    if name is None:  # the client's own chat: echo, as the fake upstream does
        return 200, completion(model, "echo: " + last_user_text(req.get("messages", [])))
    answer = json.dumps({"memories": extract_memories(req)} if name == "memgate_extraction" else judge_memories(req))
    system = str(req["messages"][0]["content"])
    if model == "so-garbage":
        return 200, completion(model, "The user seems to have shared a few things about themselves.")
    if model == "so-ignores-format" and PROMPT_MARKER not in system:
        return 200, completion(model, "Noted: the user told me some things about themselves.")
    if model == "so-400-json-schema" and mode == "json_schema":
        return error(400, "response_format type 'json_schema' is not supported by this server")
    if model == "so-tools-only" and mode in ("json_schema", "json_object"):
        return error(400, f"response_format {mode} is not supported for this model")
    if model == "so-tools-only" and mode == "tools":
        body = completion(model, "", tools=True)
        body["choices"][0]["message"]["tool_calls"][0]["function"] = {"name": name, "arguments": answer}
        return 200, body
    transcript = str(req["messages"][-1]["content"])
    if model == "so-quirks" and re.search(r"Answer fenced\.", transcript):
        return 200, completion(model, f"```json\n{answer}\n```")
    if model == "so-quirks" and re.search(r"Answer in prose\.", transcript):
        return 200, completion(model, f"Sure! Here is what I found:\n{answer}\nLet me know if you need anything else.")
    if model == "so-quirks" and re.search(r"Answer cut\.", transcript):
        body = completion(model, answer[: answer.rindex('"text"') + 12])  # inside the last memory's text
        body["choices"][0]["finish_reason"] = "length"
        return 200, body
    return 200, completion(model, answer)
