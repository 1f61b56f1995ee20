"""Structured JSON logs, one object per line, with secrets scrubbed on the way out."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# Anything that looks like a bearer credential is masked, whichever code path logged it.
_SECRET = re.compile(r"(?i)(bearer\s+|sk-|api[_-]?key[\"'=:\s]+)[A-Za-z0-9._\-]{4,}")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}  # uvicorn adds color_message


def scrub(text: str) -> str:
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


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
                entry[key] = value
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
