"""Injection rules: `rules/*.toml`, loaded in name order; the first matching `[[rule]]` wins over `[defaults]`.

The shipped `rules/default.toml` sets nothing (its defaults are comments), so only the operator's rules decide.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

@dataclass(frozen=True)
class RuleSettings:
    """What a rule decides for a request. Every field may appear in `[defaults]` or a `[[rule]]`."""

    inject: bool = True
    extract: bool = True
    budget_tokens: int = 1024
    budget_ratio: float = 0.25
    core_budget_tokens: int = 256
    top_k: int = 12
    min_score: float = 0.0
    recall_timeout_ms: float = 50.0
    template: str = "default"
    extractor: str = ""  # "" = the gateway's configured default
    extract_roles: tuple[str, ...] = ("user",)
    include_flagged: bool = False  # inject memories that look like instructions (off: they are excluded)
    ttl_days: float = 0.0  # 0 = keep forever
    expire_unused_days: float = 0.0  # 0 = never expire memories that are never recalled
    max_memories: int = 0  # 0 = the gateway's max_memories_per_user
    placement: str = "system"  # "system": in the system prompt; "tail": right before the latest user turn (prompt caches stay warm)
    critical: tuple[str, ...] = ("health", "identity", "contact", "pinned")  # changes to these wait for the user's confirmation
    context_window: int = 0  # 0 = the built-in table (gateway/memory/context_windows.toml), else its default
    overflow: str = "fit"  # "fit": trim a conversation longer than the window; "off": forward it unchanged
    overflow_reserve_tokens: int = 1024  # kept for the answer when the request sets no max_tokens
    overflow_summary_tokens: int = 1024  # at most this much of a trimmed request stands in for its dropped turns
    summary_every_turns: int = 0  # rewrite the session's summary memory every this many user turns (0: no summaries)
    episodes_top_k: int = 6  # archival episodes (the user's own words) injected after the facts; 0: none


CRITICAL_CATEGORIES = ("health", "identity", "contact", "pinned")  # what a rule's `critical` may list


@dataclass(frozen=True)
class Match:
    model: str = "*"
    path: str = "*"
    tenant: str = "*"
    user: str = "*"
    header: Mapping[str, str] = field(default_factory=dict)

    def matches(self, request: RequestFacts) -> bool:
        if not fnmatch.fnmatchcase(request.model, self.model):
            return False
        if not fnmatch.fnmatchcase(request.path, self.path):
            return False
        if not fnmatch.fnmatchcase(request.tenant, self.tenant):
            return False
        if not fnmatch.fnmatchcase(request.user or "", self.user):
            return False
        return all(fnmatch.fnmatchcase(request.headers.get(k.lower(), ""), v) for k, v in self.header.items())


@dataclass(frozen=True)
class RequestFacts:
    """The parts of a request a rule can match on. Header names are lower-case."""

    model: str = ""
    path: str = "/v1/chat/completions"
    tenant: str = ""
    user: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    match: Match
    settings: RuleSettings


@dataclass(frozen=True)
class RuleSet:
    defaults: RuleSettings
    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()

    def select(self, request: RequestFacts) -> tuple[str, RuleSettings]:
        """The name of the first matching rule (or 'defaults') and its merged settings."""
        for rule in self.rules:
            if rule.match.matches(request):
                return rule.name, rule.settings
        return "defaults", self.defaults


class RulesError(ValueError):
    """A rules file is invalid; the message names the file, rule and field."""


_SETTING_FIELDS = {f.name: f for f in dataclasses.fields(RuleSettings)}
_MATCH_FIELDS = {f.name for f in dataclasses.fields(Match)}
_TYPE_NAMES = {"bool": bool, "int": int, "float": float, "str": str}


def _check_setting(where: str, key: str, value: Any) -> Any:
    f = _SETTING_FIELDS.get(key)
    if f is None:
        raise RulesError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(_SETTING_FIELDS))})")
    kind = f.type if isinstance(f.type, type) else _TYPE_NAMES.get(str(f.type))
    if key == "extract_roles":
        if not isinstance(value, list) or not all(v in ("user", "assistant", "system", "tool") for v in value):
            raise RulesError(f"{where}: field 'extract_roles' must be a list of 'user', 'assistant', 'system', 'tool'")
        return tuple(value)
    if key == "critical":
        if not isinstance(value, list) or not all(v in CRITICAL_CATEGORIES for v in value):
            raise RulesError(f"{where}: field 'critical' must be a list of {', '.join(repr(c) for c in CRITICAL_CATEGORIES)}")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is None or not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RulesError(f"{where}: field {key!r} must be {getattr(kind, '__name__', f.type)}, got {value!r}")
    if isinstance(value, float) and math.isnan(value):  # NaN passes every comparison below and matches no score
        raise RulesError(f"{where}: field {key!r} must be a number, got nan")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise RulesError(f"{where}: field {key!r} must not be negative")
    if key == "budget_ratio" and not 0 < value <= 1:
        raise RulesError(f"{where}: field 'budget_ratio' must be in (0, 1]")
    if key == "extractor" and value not in ("", "heuristic", "llm"):
        raise RulesError(f"{where}: field 'extractor' must be 'heuristic' or 'llm'")
    if key == "placement" and value not in ("system", "tail"):
        raise RulesError(f"{where}: field 'placement' must be 'system' or 'tail'")
    if key == "template" and value not in ("default", "compact"):
        raise RulesError(f"{where}: field 'template' must be 'default' or 'compact'")
    if key == "overflow" and value not in ("fit", "off"):
        raise RulesError(f"{where}: field 'overflow' must be 'fit' or 'off'")
    return value


def _settings(where: str, table: Mapping[str, Any], base: RuleSettings) -> RuleSettings:
    changes = {k: _check_setting(where, k, v) for k, v in table.items()}
    return dataclasses.replace(base, **changes)


def _match(where: str, value: Any) -> Match:
    if not isinstance(value, dict):
        raise RulesError(f"{where}: field 'match' must be a table")
    for key, item in value.items():
        if key not in _MATCH_FIELDS:
            raise RulesError(f"{where}: unknown match field {key!r} (known: {', '.join(sorted(_MATCH_FIELDS))})")
        if key == "header":
            if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
                raise RulesError(f"{where}: match field 'header' must map header names to strings")
        elif not isinstance(item, str):
            raise RulesError(f"{where}: match field {key!r} must be a string")
    return Match(**value)


def load_rules(directory: str | Path) -> RuleSet:
    """Load and validate every `*.toml` in `directory`, in name order. A missing directory means defaults."""
    root = Path(directory)
    files = sorted(root.glob("*.toml")) if root.is_dir() else []
    defaults = RuleSettings()
    parsed: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        try:
            parsed.append((path, tomllib.loads(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise RulesError(f"{path}: {exc}") from None
    # Defaults from every file apply first, so a rule in an early file still inherits them.
    for path, data in parsed:
        unknown = set(data) - {"defaults", "rule"}
        if unknown:
            raise RulesError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (use [defaults] and [[rule]])")
        if "defaults" in data:
            if not isinstance(data["defaults"], dict):
                raise RulesError(f"{path}: [defaults] must be a table")
            defaults = _settings(f"{path} [defaults]", data["defaults"], defaults)
    rules: list[Rule] = []
    seen: set[str] = set()
    for path, data in parsed:
        tables = data.get("rule", [])
        if not isinstance(tables, list):
            raise RulesError(f"{path}: 'rule' must be an array of tables ([[rule]])")
        for index, table in enumerate(tables):
            name = table.get("name") if isinstance(table, dict) else None
            where = f"{path} rule {name!r}" if isinstance(name, str) else f"{path} rule #{index + 1}"
            if not isinstance(name, str) or not name:
                raise RulesError(f"{where}: field 'name' is required and must be a string")
            if name in seen:
                raise RulesError(f"{where}: field 'name' repeats an earlier rule")
            seen.add(name)
            body = {k: v for k, v in table.items() if k not in ("name", "match")}
            rules.append(Rule(name, str(path), _match(where, table.get("match", {})), _settings(where, body, defaults)))
    return RuleSet(defaults, tuple(rules), tuple(str(p) for p in files))


def rules_fingerprint(directory: str | Path) -> tuple[tuple[str, float, int], ...]:
    """Cheap change detection: names, mtimes and sizes of the rules files."""
    root = Path(directory)
    if not root.is_dir():
        return ()
    out = []
    for path in sorted(root.glob("*.toml")):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(out)
