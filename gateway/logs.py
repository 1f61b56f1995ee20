"""Structured JSON logs, one object per line, with secrets scrubbed on the way out."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Mapping

# Anything that looks like a bearer credential is masked, whichever code path logged it.
_SECRET = re.compile(r"(?i)(bearer\s+|sk-|api[_-]?key[\"'=:\s]+)[A-Za-z0-9._\-]{4,}")
# A URL's user-info (https://user:password@host/...): the whole of it, a user name can be a token too.
# The lookbehind starts a scheme only at a word's start: without it long words cost quadratic time.
_URL_CREDENTIALS = re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*://)[^/?#\s@]+@")
# `token=...`, `"password": "..."`: only with `=` or `:`, so prose such as "token compare failed" stays readable.
_NAMED_SECRET = re.compile(r"(?i)((?:token|password|passwd|secret)[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;]{4,}")
# Extra fields (and nested keys) whose value is a secret whatever it looks like: `admin_token`, `api_key`...
# Anchored at the end and searched, not `.*`-prefixed and fullmatched: linear in the name's length.
_SECRET_NAME = re.compile(r"(?i)(?:^|[_\-])(?:api[_\-]?key|token|password|passwd|secret|authorization|credentials?)\Z")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}  # uvicorn adds color_message


def scrub(text: str) -> str:
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _NAMED_SECRET.sub(lambda m: m.group(1) + "***", text)
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


def scrub_field(name: str, value: Any) -> Any:
    """An extra field's value with secrets masked; containers are walked, other objects become scrubbed text."""
    if _SECRET_NAME.search(name) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): scrub_field(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [scrub_field("", v) for v in value]
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = scrub_field(key, value)  # extra fields (an upstream URL, say) are scrubbed like msg
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class DropExpectedBreaks(logging.Filter):
    """uvicorn logs "Exception in ASGI application" with a traceback whenever a response body raises.
    The proxy raises on purpose to cut a response the upstream broke off, and logs that itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, "expected_break", False)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # uvicorn's own records (a request its parser refused, say) go out as JSON lines too.
    for name in ("memgate", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    server_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropExpectedBreaks) for f in server_errors.filters):
        server_errors.addFilter(DropExpectedBreaks())
