"""Context windows: a rule's `context_window`, else the built-in table (context_windows.toml), else a default."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Callable

log = logging.getLogger("memgate.memory")

DEFAULT_CONTEXT_WINDOW = 8_192  # for models the table does not know: small, so an unknown model is trimmed early, not failed
TABLE_FILE = "context_windows.toml"
MAX_LOGGED_UNKNOWN = 256  # distinct unknown models named in the log; past this they are only counted


@dataclass(frozen=True)
class Window:
    """A context window and where it came from: 'rule', 'table' (with the prefix that matched) or 'default'."""

    tokens: int
    source: str
    prefix: str = ""

    def describe(self) -> dict[str, object]:
        return {"tokens": self.tokens, "source": self.source, **({"prefix": self.prefix} if self.prefix else {})}


def parse_table(text: str) -> dict[str, int]:
    """Prefix -> window from the TOML text; a prefix listed twice, a non-positive window or an upper-case prefix is an error."""
    table: dict[str, int] = {}
    for vendor, entries in tomllib.loads(text).items():
        if not isinstance(entries, dict):
            raise ValueError(f"{TABLE_FILE}: [{vendor}] must be a table")
        for prefix, tokens in entries.items():
            if prefix in table:
                raise ValueError(f"{TABLE_FILE}: prefix {prefix!r} is listed twice")
            if prefix != prefix.lower() or not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
                raise ValueError(f"{TABLE_FILE}: [{vendor}] {prefix!r} must be lower-case with a positive integer window")
            table[prefix] = tokens
    return table


@lru_cache(maxsize=1)
def table() -> dict[str, int]:
    return parse_table(resources.files("gateway.memory").joinpath(TABLE_FILE).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _prefixes() -> tuple[str, ...]:
    return tuple(sorted(table(), key=len, reverse=True))


def normalized(model: str) -> str:
    """The name the table is keyed by: lower case, without an "org/" or routing prefix."""
    return model.strip().lower().rsplit("/", 1)[-1]


@lru_cache(maxsize=4096)
def from_table(model: str) -> Window:
    name = normalized(model)
    for prefix in _prefixes():
        if name.startswith(prefix):
            return Window(table()[prefix], "table", prefix)
    return Window(DEFAULT_CONTEXT_WINDOW, "default")


class Windows:
    """Resolves windows for requests; an unknown model is counted every time and logged once (the first MAX_LOGGED_UNKNOWN)."""

    def __init__(self, on_unknown: Callable[[], None] = lambda: None) -> None:
        self.on_unknown = on_unknown
        self._logged: set[str] = set()

    def resolve(self, model: str, rule_window: int) -> Window:
        if rule_window > 0:
            return Window(rule_window, "rule")
        window = from_table(model)
        if window.source == "default":
            self.on_unknown()
            if model not in self._logged and len(self._logged) < MAX_LOGGED_UNKNOWN:
                self._logged.add(model)
                log.warning("unknown model: using the default context window; set context_window in a rule",
                            extra={"model": model[:200], "context_window": DEFAULT_CONTEXT_WINDOW})
        return window


def resolve(model: str, rule_window: int) -> Window:
    """The window without bookkeeping (for `memgate rules explain` and the pure functions)."""
    return Window(rule_window, "rule") if rule_window > 0 else from_table(model)
