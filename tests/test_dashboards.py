"""The Grafana dashboards and alert rules work against the metrics a live gateway exports.

A real Prometheus (Debian's package) scrapes a real gateway every second while real clients send
traffic; then every panel query of every dashboard is evaluated through Prometheus's HTTP API and
must return series. Grafana's `$__rate_interval` (at least four scrape intervals) is replaced by
RATE_WINDOW, which spans every sample the test produced at a 1 s scrape interval.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from typing import Iterator

import httpx
import openai
import pytest

from gateway.metrics import Metrics

from .harness import ROOT, Gateway
from .prometheus import Prometheus, binary

GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RATE_WINDOW = "30s"
USER = {"X-Memory-User-Id": "ops-dashboard-user"}
ALERTS = re.findall(r"^\s*- alert: (\w+)", (GRAFANA / "alerts.yml").read_text(), re.M)


def load_builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def panels(board: dict) -> Iterator[dict]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def targets() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every query of every dashboard."""
    out = []
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                out.append((path.name, panel["title"], target["expr"]))
    return out


def concrete(expr: str) -> str:
    """The query as Grafana would send it, with its template variables filled in."""
    expr = expr.replace("$__rate_interval", RATE_WINDOW).replace("$__interval", "1s").replace("$__range", "5m")
    assert "$" not in expr, f"unknown template variable in {expr!r}"
    return expr


def promtool(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([binary("promtool"), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


# -- files, without a running gateway ------------------------------------------------------------


def test_shipped_prometheus_config_and_alert_rules_pass_promtool() -> None:
    assert "SUCCESS" in promtool("check", "config", "grafana/prometheus.yml").stdout
    assert f"SUCCESS: {len(ALERTS)} rules found" in promtool("check", "rules", "grafana/alerts.yml").stdout


def test_every_alert_fires_on_its_unit_test_series() -> None:
    promtool("test", "rules", "tests/alerts_test.yml")


def test_dashboard_json_is_what_build_dashboards_writes() -> None:
    builder = load_builder()
    built = builder.dashboards()
    assert sorted(built) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == builder.render(built[path.name]), f"{path.name} is stale: run python grafana/build_dashboards.py"


def test_dashboards_use_the_provisioned_datasource_and_a_valid_layout() -> None:
    provisioned = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)", provisioned, re.M).group(1)
    dashboard_dir = re.search(r"^\s*path:\s*(\S+)", (GRAFANA / "provisioning" / "dashboards" / "memgate.yml").read_text(), re.M).group(1)
    assert f"./dashboards:{dashboard_dir}" in (GRAFANA / "docker-compose.yml").read_text()
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["schemaVersion"] >= 39 and board["uid"] not in uids
        uids.add(board["uid"])
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(board):
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, f"{path.name}: {panel['title']} off the grid"
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid and target["expr"].strip()


def test_every_exported_metric_has_a_panel() -> None:
    queries = " ".join(expr for _, _, expr in targets())
    families = {metric.name for metric in Metrics().registry.collect()}
    missing = [name for name in sorted(families) if not re.search(rf"\b{name}(_total|_bucket|_sum|_count)?\b", queries)]
    assert not missing, f"metrics without a dashboard panel: {missing}"


# -- a live gateway scraped by a live Prometheus -------------------------------------------------------


def send_traffic(gw: Gateway) -> None:
    """JSON, streaming, passthrough, upstream errors; with and without a memory user."""
    client = openai.OpenAI(base_url=gw.v1, api_key="sk-ops-dashboard", max_retries=0)
    messages = [{"role": "user", "content": "I prefer Terraform for infrastructure. What should I use for DNS?"}]
    reply = client.chat.completions.create(model="fake-model", messages=messages, extra_headers=USER)
    assert reply.choices[0].message.content.startswith("echo:")
    chunks = client.chat.completions.create(model="fake-model", messages=messages, stream=True, extra_headers=USER)
    assert "Terraform" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    client.chat.completions.create(model="fake-model", messages=messages)  # no user: memory off
    assert client.models.list().data[0].id == "fake-model"  # passthrough
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-error-500", messages=messages)
    hangup = httpx.post(gw.v1 + "/chat/completions", json={"model": "fake-hangup", "messages": messages}, timeout=30)
    assert hangup.status_code == 502 and hangup.json()["error"]["type"]


@pytest.fixture(scope="module")
def prometheus(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping the module's gateway after two rounds of traffic, a scrape apart.

    Two rounds make every counter series move between scrapes, so rates are non-zero, not only present.
    """
    workdir = tmp_path_factory.mktemp("prometheus")
    prom = Prometheus(workdir, [f"127.0.0.1:{gateway.port}"], rule_files=[GRAFANA / "alerts.yml"])
    promtool("check", "config", str(prom.config_path))
    prom.start()
    try:
        prom.wait_for_scrapes(1)
        send_traffic(gateway)
        prom.wait_for_scrapes(1)
        send_traffic(gateway)
        prom.wait_for_scrapes(2)
        yield prom
    finally:
        prom.stop()


# Metrics of events send_traffic does not cause (timeouts, dead letters, reloads...): their panels
# show only the zero series the gateway pre-initialises. Every other panel must show the traffic.
QUIET_METRICS = {
    "memgate_recall_timeouts_total", "memgate_keyless_memory_off_total", "memgate_extraction_queue_depth",
    "memgate_extraction_queue_oldest_age_seconds", "memgate_extraction_dead_letters", "memgate_capture_skipped_total",
    "memgate_memories_flagged_total", "memgate_extraction_job_messages_cut_total", "memgate_extraction_dead_letters_purged_total",
    "memgate_hygiene_removed_total", "memgate_requests_in_flight", "process_start_time_seconds", "memgate_rules_reloads_total",
    "memgate_extraction_llm_problems_total",  # the module's gateway runs the heuristic extractor
    "memgate_overflow_total", "memgate_overflow_dropped_messages_total",
    "memgate_prefetch_users", "memgate_prefetch_seconds",  # the module's gateway starts with no users to prefetch
}


def test_every_dashboard_query_returns_series_from_a_live_gateway(prometheus: Prometheus) -> None:
    failures = []
    for board, title, expr in targets():
        try:
            series = prometheus.query(concrete(expr))
        except AssertionError as exc:
            failures.append(f"{board} / {title}: {exc}")
            continue
        values = [float(s["value"][1]) for s in series]
        if not series:
            failures.append(f"{board} / {title}: no series for {expr}")
        elif not set(re.findall(r"\w+", expr)) & QUIET_METRICS and not any(v != 0 and not math.isnan(v) for v in values):
            failures.append(f"{board} / {title}: only zero series (pre-initialised, untouched by the traffic) for {expr}")
    assert not failures, "\n".join(failures)


def value(prometheus: Prometheus, expr: str, **labels: str) -> float:
    for series in prometheus.query(concrete(expr)):
        if all(series["metric"].get(k) == v for k, v in labels.items()):
            return float(series["value"][1])
    raise AssertionError(f"no series {labels} in {expr}")


def test_overview_panels_show_the_traffic_that_was_sent(prometheus: Prometheus) -> None:
    by_route = 'sum by (route) (rate(memgate_requests_total[$__rate_interval]))'
    assert value(prometheus, by_route, route="chat") > 0 and value(prometheus, by_route, route="passthrough") > 0
    by_status = 'sum by (status) (rate(memgate_requests_total[$__rate_interval]))'
    assert value(prometheus, by_status, status="500") > 0 and value(prometheus, by_status, status="502") > 0
    errors = 'sum by (reason) (rate(memgate_upstream_errors_total[$__rate_interval]))'
    assert value(prometheus, errors, reason="unreachable") > 0 and value(prometheus, errors, reason="timeout") == 0
    added_p99 = 'histogram_quantile(0.99, sum by (le, route) (rate(memgate_overhead_seconds_bucket[$__rate_interval])))'
    assert 0 < value(prometheus, added_p99, route="chat") < 1
    ttfb = 'histogram_quantile(0.5, sum by (le) (rate(memgate_stream_first_byte_seconds_bucket[$__rate_interval])))'
    assert 0 < value(prometheus, ttfb) < 5


def test_alert_rules_load_and_evaluate_cleanly_on_live_metrics(prometheus: Prometheus) -> None:
    # Prometheus evaluates the rules every second; it has been scraping for several already.
    rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(ALERTS)
    for rule in rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), f"{rule['name']}: {rule['health']} {rule.get('lastError')}"
    # A healthy gateway under light traffic raises nothing (MemgateDown included: it is up).
    assert prometheus.api("alerts")["alerts"] == []


def test_memory_status_panel_separates_memory_users_from_anonymous_requests(prometheus: Prometheus) -> None:
    statuses = 'sum by (status) (rate(memgate_memory_status_total[$__rate_interval]))'
    assert value(prometheus, statuses, status="ok") > 0  # the requests with X-Memory-User-Id
    assert value(prometheus, statuses, status="off") > 0  # the one without
    assert value(prometheus, statuses, status="timeout") == 0
