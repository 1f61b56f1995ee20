"""The fields of a memory as callers send them, one validator each, shared by the admin API and import
so that a value one path refuses the other refuses too. Every validator raises FieldError (a
ValueError naming the field): the admin API answers it as a 400, import reports it for its line."""

from __future__ import annotations

import time
from typing import Any

from gateway.errors import GatewayError
from gateway.identity import validate_id
from gateway.memory.records import STORED_KINDS, TIERS

MAX_TEXT_CHARS = 4000
MAX_COUNT = 2**63 - 1  # use_count is an int64 column
EARLIEST_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z: no memory is older than memgate's users
FUTURE_SLACK = 5 * 366 * 86_400.0  # seconds past now a time may lie (other clocks, planned events); beyond it cannot render
MAX_FREE_TEXT = 256  # characters of an informational string such as source_request_id


class FieldError(ValueError):
    """A field's value is refused: `param` names the field, `code` is the OpenAI-style error code."""

    def __init__(self, param: str, message: str, code: str = "invalid_field") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def field_of(body: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
    """`body[name]` if it has one of the types `kind` (None when absent and not `required`)."""
    value = body.get(name)
    if value is None:
        if required:
            raise FieldError(name, f"missing required field '{name}'", code="missing_field")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # JSON true is not a number
        names = " or ".join(k.__name__ for k in kinds)
        raise FieldError(name, f"field '{name}' must be {names}")
    return value


def unicode_text(value: str, name: str) -> str:
    """`value` if it is valid Unicode: JSON can carry lone surrogates (\\ud800), which no store or model can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(name, f"field '{name}' contains invalid Unicode (a lone surrogate)") from None
    return value


def memory_text(body: dict[str, Any], required: bool) -> str | None:
    text = field_of(body, "text", str, required)
    if text is not None and not (0 < len(text.strip()) and len(text) <= MAX_TEXT_CHARS):
        raise FieldError("text", f"field 'text' must be 1-{MAX_TEXT_CHARS} characters, not blank")
    return None if text is None else unicode_text(text, "text")


def memory_kind(value: Any) -> str | None:
    if value is not None and value not in STORED_KINDS:
        raise FieldError("kind", f"field 'kind' must be one of {', '.join(STORED_KINDS)}")
    return value


def memory_tier(value: Any) -> str | None:
    if value is not None and value not in TIERS:
        raise FieldError("tier", f"field 'tier' must be one of {', '.join(TIERS)}")
    return value


def confidence_of(body: dict[str, Any]) -> float | None:
    value = field_of(body, "confidence", (int, float))
    # A plain range check: NaN fails it, and a 400-digit integer is compared without becoming a float.
    if value is not None and not 0 <= value <= 1:
        raise FieldError("confidence", "field 'confidence' must be between 0 and 1")
    return None if value is None else float(value)


def timestamp_of(body: dict[str, Any], name: str, now: float | None = None) -> float | None:
    """A Unix time in seconds from 2000-01-01 to a few years from now, or None when absent."""
    value = field_of(body, name, (int, float))
    latest = (time.time() if now is None else now) + FUTURE_SLACK
    if value is not None and not EARLIEST_TIME <= value <= latest:  # NaN and 1e300 fail too
        raise FieldError(name, f"field '{name}' must be a Unix time in seconds from 2000-01-01 to {time.gmtime(latest).tm_year}")
    return None if value is None else float(value)


def count_of(body: dict[str, Any], name: str) -> int | None:
    """A non-negative integer that fits int64, or None when absent."""
    value = field_of(body, name, int)
    if value is not None and not 0 <= value <= MAX_COUNT:
        raise FieldError(name, f"field '{name}' must be an integer from 0 to 2^63-1")
    return value


def id_of(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    """An id (user, tenant, agent, memory...) in memgate's id alphabet, or None when absent."""
    value = field_of(body, name, str, required)
    if value is None:
        return None
    try:
        return validate_id(value, name)
    except GatewayError as exc:
        raise FieldError(name, exc.message, code="invalid_memory_id") from None


def free_text_of(body: dict[str, Any], name: str) -> str | None:
    """An informational string (up to MAX_FREE_TEXT characters of valid Unicode), or None when absent."""
    value = field_of(body, name, str)
    if value is not None and len(value) > MAX_FREE_TEXT:
        raise FieldError(name, f"field '{name}' must be at most {MAX_FREE_TEXT} characters")
    return None if value is None else unicode_text(value, name)
