"""Writes grafana/dashboards/*.json from the panel lists below: `python grafana/build_dashboards.py`.

The JSON is what Grafana provisions; this file is where panels are edited, so the queries stay
readable and consistent (tests/test_dashboards.py checks the JSON is up to date with it and runs
every query against a real Prometheus scraping a real gateway).

Queries sum over instances (replicas) and use `$__rate_interval`, which Grafana sets from the
scrape interval; histogram percentiles come from the `_bucket` series.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioned with this uid
HERE = Path(__file__).resolve().parent
RATE = "[$__rate_interval]"


@dataclass
class Panel:
    title: str
    description: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    extra: dict = field(default_factory=dict)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def rate(metric: str, by: str = "", selector: str = "") -> str:
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({metric}{selector}{RATE}))"


def quantiles(metric: str, by: str = "", selector: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[tuple[str, str]]:
    """p50/p95/p99 of a histogram, optionally per label (`by`)."""
    group = "le" + (f", {by}" if by else "")
    label = f"{{{{{by}}}}} " if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}{RATE})))", f"{label}p{round(q * 100)}") for q in qs]


def mean(metric: str) -> str:
    return f"sum(rate({metric}_sum{RATE})) / sum(rate({metric}_count{RATE}))"


# A missing 5xx series means none yet, not "no data": `or vector(0)` keeps the ratio defined.
FIVE_XX = rate("memgate_requests_total", selector='{status=~"5.."}')
# Served in process: a hit, or a user the store is known to hold nothing for ("empty").
HOT_HITS = rate("memgate_hot_tier_lookups_total", selector='{result=~"hit|empty"}')
HOT_LOOKUPS = rate("memgate_hot_tier_lookups_total", selector='{result=~"hit|miss|empty"}')  # a reload is an extra event on a hit

OVERVIEW = [
    Row("Traffic", [
        Panel("Requests by route", "Requests answered per second, by route.", [(rate("memgate_requests_total", "route"), "{{route}}")], "reqps", width=8),
        Panel("Responses by status code", "Responses per second by HTTP status (upstream statuses pass through).",
              [(rate("memgate_requests_total", "status"), "{{status}}")], "reqps", width=8),
        Panel("5xx share", "Share of responses with a 5xx status.",
              [(f"({FIVE_XX} or vector(0)) / {rate('memgate_requests_total')}", "5xx")],
              "percentunit", width=4, kind="stat"),
        Panel("In flight", "Requests being served now, all replicas.", [("sum(memgate_requests_in_flight)", "in flight")], width=4, kind="stat"),
        Panel("Requests by replica", "Requests answered per second by each replica (instance): an uneven split or a silent replica shows here.",
              [(rate("memgate_requests_total", "instance"), "{{instance}}")], "reqps", width=12),
        Panel("Memory status by replica", "Chat requests per second by X-Memory-Status, per replica (instance): one replica degraded or timing out shows here.",
              [(rate("memgate_memory_status_total", "instance, status"), "{{instance}} {{status}}")], "reqps", width=12),
    ]),
    Row("Latency", [
        Panel("End-to-end latency", "Request time seen by the gateway, arrival to last byte, by route.",
              quantiles("memgate_request_duration_seconds", "route"), "s"),
        Panel("Gateway-added latency", "Request time minus upstream time: what memgate itself adds (recall, injection, proxying).",
              quantiles("memgate_overhead_seconds", "route"), "s"),
        Panel("Upstream latency", "Time from sending upstream to the last upstream byte, by route.",
              quantiles("memgate_upstream_duration_seconds", "route"), "s"),
        Panel("Stream time to first byte", "Arrival of a streamed chat request to its first byte back to the client.",
              quantiles("memgate_stream_first_byte_seconds"), "s"),
        Panel("Gateway-added p99 (memory APIs, 5m)", "The number to watch: memgate's own p99 on the APIs it gives memory to (chat, Responses, Messages).",
              [('histogram_quantile(0.99, sum by (le) (rate(memgate_overhead_seconds_bucket{route=~"chat|responses|messages"}[5m])))', "p99")],
              "s", kind="stat", width=6, extra={"thresholds": [(None, "green"), (0.01, "yellow"), (0.025, "red")]}),
    ]),
    Row("Process", [
        Panel("Memory", "Resident (and virtual) memory of each replica; resident is bounded by --hot-users and --store-cache-mb.",
              [('max by (instance) (process_resident_memory_bytes{job="memgate"})', "{{instance}} resident"),
               ('max by (instance) (process_virtual_memory_bytes{job="memgate"})', "{{instance}} virtual")], "bytes", width=6),
        Panel("CPU", "CPU cores each replica uses.",
              [('sum by (instance) (rate(process_cpu_seconds_total{job="memgate"}[$__rate_interval]))', "{{instance}}")], "short", width=6),
        Panel("Open files", "File descriptors each replica holds (sockets, LanceDB fragments, SQLite) against its limit.",
              [('max by (instance) (process_open_fds{job="memgate"})', "{{instance}} open"),
               ('max by (instance) (process_max_fds{job="memgate"})', "{{instance}} limit")], "short", width=6),
        Panel("Restarts (1h)", "Process restarts per replica in the last hour (a crash loop shows here).",
              [('max by (instance) (changes(process_start_time_seconds{job="memgate"}[1h]))', "{{instance}}")], "short", width=6, kind="stat"),
    ]),
    Row("Upstream and rules", [
        Panel("Upstream errors by reason", "Upstream failures per second: timeouts, unreachable, and failures mid-stream.",
              [(rate("memgate_upstream_errors_total", "reason"), "{{reason}}")], "reqps"),
        Panel("Rules reloads", "Rules directory reloads by outcome (invalid: the old rules stay in force).",
              [("sum by (outcome) (increase(memgate_rules_reloads_total[$__rate_interval]))", "{{outcome}}")], "short", width=6),
    ]),
]

MEMORY = [
    Row("Recall and injection", [
        Panel("Recall latency", "Time to recall memories for one request (embedding, hot tier or LanceDB, ranking).",
              quantiles("memgate_recall_duration_seconds"), "s", width=8),
        Panel("Recall timeouts", "Recalls past recall_timeout_ms per second; those requests went upstream without memories.",
              [(rate("memgate_recall_timeouts_total"), "timeouts")], "reqps", width=8),
        Panel("Memory status", "Chat requests per second by X-Memory-Status (ok, off, timeout, degraded); keyless: off because the caller sent no key or a placeholder.",
              [(rate("memgate_memory_status_total", "status"), "{{status}}"),
               (rate("memgate_keyless_memory_off_total", "reason"), "keyless {{reason}}")], "reqps", width=8),
        Panel("Memories injected per request", "Mean and p95 count of memories injected into a request.",
              [(mean("memgate_memories_injected"), "mean")] + quantiles("memgate_memories_injected", qs=(0.95,)), width=8),
        Panel("Tokens injected per request", "Mean and p95 tokens of memory injected into a request.",
              [(mean("memgate_injected_tokens"), "mean")] + quantiles("memgate_injected_tokens", qs=(0.95,)), width=8),
        Panel("Hot tier hit rate", "Share of recalls served from the in-process hot tier (no LanceDB query).",
              [(f"{HOT_HITS} / {HOT_LOOKUPS}", "hit rate")],
              "percentunit", width=8),
        Panel("Start-up prefetch", "Users each replica loaded into the hot tier at its last start before /readyz said ready, and the seconds it took.",
              [("max by (instance) (memgate_prefetch_users)", "{{instance}} users"), ("max by (instance) (memgate_prefetch_seconds)", "{{instance}} seconds")],
              "short", width=8),
    ]),
    Row("Extraction", [
        Panel("Extraction jobs by outcome", "Jobs per second: enqueued, done, retry (will run again), dead (gave up), dropped (queue full).",
              [(rate("memgate_extraction_jobs_total", "outcome"), "{{outcome}}")], "ops", width=8),
        Panel("Queue depth", "Extraction jobs waiting or running, all replicas, and each replica's own queue (instance).",
              [("sum(memgate_extraction_queue_depth)", "all"), ("sum by (instance) (memgate_extraction_queue_depth)", "{{instance}}")], width=8),
        Panel("Oldest queued job", "Age of the oldest pending job: how far extraction lags behind traffic.",
              [("max(memgate_extraction_queue_oldest_age_seconds)", "oldest")], "s", width=8),
        Panel("Extraction duration", "Time to extract and reconcile one batch.", quantiles("memgate_extraction_duration_seconds"), "s", width=8),
        Panel("Memories written by action", "Memory changes per second: add, refresh, supersede, update, delete, expire, evict, confirm (a critical change asked about or answered).",
              [(rate("memgate_memories_written_total", "action"), "{{action}}")], "ops", width=8),
        Panel("Dead letters", "Jobs that failed every retry (inspect with GET /admin/v1/queue).",
              [("sum(memgate_extraction_dead_letters)", "dead letters")], width=8, kind="stat",
              extra={"thresholds": [(None, "green"), (1, "red")]}),
        Panel("Captures skipped", "Exchanges not extracted from, by reason (failed upstream call, unreadable or truncated reply, nothing to extract, queue error).",
              [(rate("memgate_capture_skipped_total", "reason"), "{{reason}}")], "ops", width=8),
        Panel("Memories flagged", "New memories flagged as instruction-like (kept out of prompts by default).",
              [(rate("memgate_memories_flagged_total"), "flagged")], "ops", width=8),
        Panel("Messages cut, dead letters purged", "Older messages of long exchanges left out of their job (--max-job-messages, --max-job-bytes), "
              "and dead letters deleted past --dead-letter-retention or --queue-max, per second.",
              [(rate("memgate_extraction_job_messages_cut_total"), "messages cut"), (rate("memgate_extraction_dead_letters_purged_total"), "dead letters purged")],
              "ops", width=8),
        Panel("LLM extractor problems", "llm extractor answers that failed or needed repair, by reason (refused or ignored output mode, "
              "repaired or truncated JSON, upstream errors); the newest are in GET /admin/v1/queue.",
              [(rate("memgate_extraction_llm_problems_total", "reason"), "{{reason}}")], "ops", width=16),
        Panel("Memories stored by tier", "New memories per second by tier: core (pinned, preferences), recall (extracted facts), archival (the user's own turns).",
              [(rate("memgate_memories_stored_total", "tier"), "{{tier}}")], "ops", width=8),
    ]),
    Row("Context windows", [
        Panel("Overflowing conversations", "Requests longer than their context window per second, by outcome (trimmed: made to fit; "
              "unfittable: system and latest turn alone overflow, sent as is; over: overflow off, sent as is), and messages left out per second.",
              [(rate("memgate_overflow_total", "outcome"), "{{outcome}}"), (rate("memgate_overflow_dropped_messages_total"), "messages dropped")], "ops"),
        Panel("Unknown models", "Chat requests whose model the context-window table does not know, sized with the 8,192-token default: "
              "give such models a rule with context_window.", [(rate("memgate_context_window_unknown_model_total"), "unknown model")], "reqps"),
    ]),
    Row("Hygiene", [
        Panel("Hygiene removed", "Memories removed by the hygiene job per hour, by reason (ttl, unused, cap).",
              [("sum by (reason) (increase(memgate_hygiene_removed_total[1h]))", "{{reason}}")], width=24),
    ]),
]


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    thresholds = panel.extra.get("thresholds", [(None, "green")])
    defaults = {
        "unit": panel.unit,
        "color": {"mode": "palette-classic" if panel.kind == "timeseries" else "thresholds"},
        "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in thresholds]},
    }
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": True}
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value",
                   "graphMode": "area", "textMode": "auto", "justifyMode": "auto", "orientation": "auto"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True, "editorMode": "code"}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def dashboard(uid: str, title: str, description: str, rows: list[Row]) -> dict:
    panels: list[dict] = []
    y = 0
    for row in rows:
        panels.append({"id": len(panels) + 1, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
        y += 8
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["memgate"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
                                  "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": []},
        "links": [{"title": "memgate", "type": "dashboards", "tags": ["memgate"], "asDropdown": False}],
        "panels": panels,
    }


def dashboards() -> dict[str, dict]:
    """File name -> dashboard JSON."""
    return {
        "memgate-overview.json": dashboard("memgate-overview", "memgate overview",
                                           "Traffic, status codes, latency (end to end and gateway-added), upstream errors.", OVERVIEW),
        "memgate-memory.json": dashboard("memgate-memory", "memgate memory",
                                         "Recall, injection, extraction queue, memory writes and hygiene.", MEMORY),
    }


def render(board: dict) -> str:
    return json.dumps(board, indent=2) + "\n"


def main() -> int:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    for name, board in dashboards().items():
        (out / name).write_text(render(board))
        print(f"wrote {out / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
