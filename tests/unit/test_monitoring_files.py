"""monitoring/: the alert rules and Prometheus' configuration pass Prometheus' own checker, and the dashboard has
the panels an operator needs."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.monitoring import ALERTS, PROMETHEUS_CONFIG, alert_queries, dashboard_queries, used_metrics

promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool is not installed (make prometheus, or apt-get install prometheus)")


@promtool
def test_the_alert_rules_pass_promtool():
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_queries())} rules found" in checked.stdout


@promtool
def test_the_prometheus_configuration_passes_promtool(tmp_path):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(ALERTS)]  # the container's path to the same file
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    checked = subprocess.run(["promtool", "check", "config", str(local)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alerts_cover_workers_queues_partial_events_and_slow_loads():
    assert set(alert_queries()) == {"ModelZooWorkerDown", "ModelZooQueueBackingUp", "ModelZooPartialRateHigh",
                                    "ModelZooModelLoadSlow"}


def test_the_dashboard_shows_what_an_operator_watches():
    panels = dashboard_queries()
    for title in ("Events per second, by result", "Event latency p50 / p95", "Partial and failed",
                  "Model loads and evictions per minute", "Memory used against each worker's share", "Queue depth",
                  "Micro-batch size"):
        assert title in panels
    used = used_metrics()
    assert "model_zoo_queue_depth" in used["panel 'Queue depth'"]
    assert {"model_zoo_memory_used_bytes", "model_zoo_memory_share_bytes"} <= \
        used["panel \"Memory used against each worker's share\""]
    scrape_only = {"panel 'Workers up'", "alert ModelZooWorkerDown"}  # Prometheus' own `up`
    assert all(names for key, names in used.items() if key not in scrape_only), used
