"""docs/operations.md cannot drift: every exported metric and every shipped alert is documented."""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import Metrics

from .harness import ROOT

DOC = (ROOT / "docs" / "operations.md").read_text()


def table_rows() -> dict[str, list[str]]:
    """First cell (without backticks) -> the row's cells, for every markdown table row."""
    rows = {}
    for line in DOC.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_exported_metric_is_in_the_reference_with_its_type_and_labels() -> None:
    rows = table_rows()
    metrics = [m for m in vars(Metrics()).values() if isinstance(m, MetricWrapperBase)]
    assert len(metrics) > 20
    for metric in metrics:
        name = metric._name + ("_total" if metric._type == "counter" else "")
        assert name in rows, f"{name} is missing from the metrics reference"
        _, kind, labels, meaning = rows[name]
        assert kind == metric._type, f"{name}: documented as {kind}, exported as {metric._type}"
        documented = [] if labels == "-" else labels.split(", ")
        assert documented == list(metric._labelnames), f"{name}: documented labels {labels}"
        assert meaning


def test_every_shipped_alert_is_documented() -> None:
    alerts = re.findall(r"^\s*- alert: (\w+)", (ROOT / "grafana" / "alerts.yml").read_text(), re.M)
    rows = table_rows()
    assert alerts and all(alert in rows for alert in alerts), [a for a in alerts if a not in rows]
