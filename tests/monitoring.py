"""The metric names the shipped dashboard and alert rules read (monitoring/), for the tests that hold them to what
the workers export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "model-zoo.json"
ALERTS = MONITORING / "alerts.yml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"

ZOO_METRIC = re.compile(r"\bmodel_zoo_[a-z0-9_]+\b")


def dashboard_queries() -> dict[str, list[str]]:
    """Each panel's title and its PromQL expressions."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in dashboard["panels"]}


def alert_queries() -> dict[str, str]:
    """Each alert's name and its expression."""
    rules = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def zoo_metrics(expressions: list[str]) -> set[str]:
    """The pool's own series an expression reads (as exported: a histogram's _bucket, _sum or _count)."""
    return {name for expr in expressions for name in ZOO_METRIC.findall(expr)}


def used_metrics() -> dict[str, set[str]]:
    """Per panel and per alert, the pool's series it needs."""
    used = {f"panel {title!r}": zoo_metrics(exprs) for title, exprs in dashboard_queries().items()}
    used |= {f"alert {name}": zoo_metrics([expr]) for name, expr in alert_queries().items()}
    return used
