"""Generate README.md's reference tables from the code: settings (gateway.config.OPTIONS), metrics
(gateway.metrics.Metrics) and rule fields (gateway.rules.RuleSettings, Match).

    python scripts/gen_config_table.py            # print the three tables
    python scripts/gen_config_table.py --write    # rewrite them in README.md between their markers
    python scripts/gen_config_table.py --check    # exit 1 if README.md is out of date (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.metrics import MetricWrapperBase  # noqa: E402

from gateway.config import OPTIONS  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.rules import Match, RuleSettings  # noqa: E402

README = ROOT / "README.md"

# What each rule field means. A field missing here fails generation (and so tests/test_docs.py):
# a new field cannot ship undocumented.
RULE_FIELDS = {
    "inject": "recall memories and inject them into the system message",
    "extract": "learn new memories from completed exchanges (asynchronously, via the durable queue)",
    "budget_tokens": "hard cap on the injected memory block, in tokens",
    "budget_ratio": "and at most this share of the context window left after the prompt, in (0, 1]",
    "core_budget_tokens": "part of the budget reserved for the always-on core profile",
    "top_k": "relevant memories considered after ranking",
    "min_score": "drop recalled memories whose final score (0 to 1: relevance x confidence x recency/use, see [Ranking](#ranking)) is below this",
    "recall_timeout_ms": "past this the request goes upstream without memories (counted in metrics)",
    "template": "memory block format: `default` (dated, quoted facts with a preamble; the `compact` frame instead when a budget leaves no room for one line after the preamble) or `compact`",
    "extractor": "`heuristic` or `llm` for requests matched here; empty means the gateway's `--extractor`",
    "extract_roles": "whose messages may become memories: any of `user`, `assistant`, `system`, `tool`",
    "include_flagged": "also inject memories that look like instructions (excluded by default)",
    "ttl_days": "forget memories older than this many days (0: never)",
    "expire_unused_days": "forget memories never recalled within this many days (0: never)",
    "max_memories": "per-user cap for users matched here (0: `--max-memories-per-user`)",
    "placement": "where the memory block goes: `system` (end of the system prompt / `instructions` / `system`) or `tail` (right before the latest user turn, so the prompt's prefix stays byte-identical and provider prompt caches stay warm; see Placement)",
    "critical": "what a new statement may not silently change: any of `health` (allergies, conditions, medication), `identity` (names, birthday, pronouns), `contact` (email, phone, address), `pinned` (pinned memories); such a change waits for the user to confirm it (see [Ranking](#ranking))",
    "context_window": "the model's context window in tokens (0: the built-in table, else 8192; see Long conversations)",
    "overflow": "`fit`: a conversation longer than the window is trimmed to fit; `off`: forwarded unchanged",
    "overflow_reserve_tokens": "tokens kept free for the answer when the request sets no `max_tokens`/`max_completion_tokens`",
    "overflow_summary_tokens": "at most this many tokens of excerpts stand in for the turns a trimmed request leaves out",
    "summary_every_turns": "rewrite the session's summary memory (kind `summary`) every this many user turns, off the request path (0: no summaries)",
    "episodes_top_k": "archival episodes (the user's own dated words) injected after the core profile and the facts, within the same budget (0: none)",
}
MATCH_FIELDS = {
    "model": "glob on the request's `model`",
    "path": "glob on the request path (`/v1/chat/completions`, `/v1/responses`, `/v1/messages`)",
    "tenant": "glob on the tenant (`k_` + 16 hex of sha256(API key), or its `[tenants]` name)",
    "user": "glob on the user id (header `X-Memory-User-Id`, else the body's `user`, `safety_identifier` or Messages' `metadata.user_id`)",
    "header": "table of header name to glob on its value; every entry must match",
}

SECTIONS = ("config", "metrics", "rules")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("<", "\\<")


def config_table() -> str:
    rows = ["| flag | env | default | meaning |", "| --- | --- | --- | --- |"]
    for o in OPTIONS:
        flag = f"`{o.flag}`" + (f" (`{o.alias}`)" if o.alias else "")
        default = "(secret, empty)" if o.secret else f"`{o.default!r}`" if o.default != "" else "(empty)"
        rows.append(f"| {flag} | `{o.env}` | {default} | {_cell(o.help)} |")
    rows.append("| `--config` | `MEMGATE_CONFIG` | `./memgate.toml` if present | settings file; its keys are the option names above, plus a `[tenants]` table |")
    return "\n".join(rows)


def exposed_metrics() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(name as scraped, type, labels, help) for every metric memgate defines."""
    out = []
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            out.append((name, metric._type, tuple(metric._labelnames), metric._documentation))
    return out


def metrics_table() -> str:
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for name, kind, labels, doc in exposed_metrics():
        rows.append(f"| `{name}` | {kind} | {', '.join(f'`{l}`' for l in labels) or '-'} | {_cell(doc)} |")
    return "\n".join(rows)


def rules_table() -> str:
    missing = [f.name for f in dataclasses.fields(RuleSettings) if f.name not in RULE_FIELDS]
    missing += [f.name for f in dataclasses.fields(Match) if f.name not in MATCH_FIELDS]
    if missing:
        raise SystemExit(f"gen_config_table: describe these rule fields in RULE_FIELDS/MATCH_FIELDS: {', '.join(missing)}")
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    defaults = RuleSettings()
    for f in dataclasses.fields(RuleSettings):
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        rows.append(f"| `{f.name}` | {_cell(kind)} | `{getattr(defaults, f.name)!r}` | {_cell(RULE_FIELDS[f.name])} |")
    rows += ["", "`match` keys (all optional, all must fit; `*` when absent):", "", "| match key | meaning |", "| --- | --- |"]
    rows += [f"| `{f.name}` | {_cell(MATCH_FIELDS[f.name])} |" for f in dataclasses.fields(Match)]
    return "\n".join(rows)


def generated() -> dict[str, str]:
    return {"config": config_table(), "metrics": metrics_table(), "rules": rules_table()}


def markers(section: str) -> tuple[str, str]:
    return f"<!-- generated:{section} (scripts/gen_config_table.py --write) -->", f"<!-- end generated:{section} -->"


def rewrite(text: str) -> str:
    for section, table in generated().items():
        start, end = markers(section)
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"gen_config_table: README.md lacks the {section} markers: {start} ... {end}")
        text = pattern.sub(lambda _: f"{start}\n{table}\n{end}", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md's tables are stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        for section, table in generated().items():
            print(f"{markers(section)[0]}\n{table}\n{markers(section)[1]}\n")
        return 0
    current = README.read_text(encoding="utf-8")
    fresh = rewrite(current)
    if args.check:
        if fresh != current:
            print("README.md reference tables are stale: run python scripts/gen_config_table.py --write", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
