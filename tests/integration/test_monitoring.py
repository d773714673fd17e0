"""The operator's view of a real pool: every series the shipped dashboard and alerts read is exported by the workers,
each worker answers /healthz and /readyz, and Debian's Prometheus scrapes the pool and loads the alert rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scripts.fixtures.sample_events import animal_event, person_event, vehicle_event
from tasks.local_pool import free_port
from tests.monitoring import ALERTS, alert_queries, used_metrics

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # nothing listening yet
        return 0, json.dumps({"error": str(exc)})


def ports(pool) -> dict[str, int]:
    base = int(pool.extra_env["METRICS_PORT_BASE"])
    return {"router": base, "cpu.0": base + 101}


def exported(port: int) -> set[str]:
    _, text = get(port, "/metrics")
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def wait_until_ready(port: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(port, "/readyz")
        if status == 200 or time.monotonic() > deadline:
            return {"status": status, **json.loads(body)}
        time.sleep(1)


def test_each_worker_answers_healthz_and_readyz(pool):
    for name, port in ports(pool).items():
        status, body = get(port, "/healthz")
        assert status == 200 and json.loads(body)["alive"] is True, name
        ready = wait_until_ready(port)
        assert ready["status"] == 200, (name, ready)
        expected = {"broker", "models"} if name.startswith("cpu") else {"broker"}
        assert set(ready["checks"]) == expected and ready["worker"].startswith(("cpu0@", "router@"))


def test_every_series_the_dashboard_and_the_alerts_read_is_exported(pool):
    for event in (person_event("mon-person", face=True), vehicle_event("mon-vehicle"), animal_event("mon-animal")):
        assert pool.client.enrich(event, timeout=300)["status"] == "complete"
    time.sleep(1.5)  # the device worker publishes its gauges at most once a second after tasks
    names = set().union(*(exported(port) for port in ports(pool).values()))
    missing = {where: sorted(needed - names) for where, needed in used_metrics().items() if needed - names}
    assert not missing, f"read by the dashboard or alerts but not exported: {missing}"


def test_the_router_reports_each_queue_depth(pool):
    _, text = get(ports(pool)["router"], "/metrics")
    depths = {s.labels["queue"]: s.value for family in text_string_to_metric_families(text)
              for s in family.samples if s.name == "model_zoo_queue_depth"}
    assert {"router", "assemble", "celery", "cpu.0"} <= set(depths)
    assert all(value >= 0 for value in depths.values())


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Debian's prometheus is not installed (make prometheus, or apt-get install prometheus)")
def test_a_real_prometheus_scrapes_the_pool_and_evaluates_the_alert_rules(pool):
    web = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "model-zoo-workers", "static_configs": [
            {"targets": [f"127.0.0.1:{port}"], "labels": {"role": "router" if name == "router" else "device"}}
            for name, port in ports(pool).items()]}],
    }
    with tempfile.TemporaryDirectory(prefix="mz-prometheus-") as work:
        path = Path(work) / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        server = subprocess.Popen(
            ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{web}"],
            stdout=subprocess.DEVNULL, stderr=(Path(work) / "log").open("wb"))
        try:
            def query(promql: str) -> list[dict]:
                status, body = get(web, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
                return json.loads(body)["data"]["result"] if status == 200 else []

            deadline = time.monotonic() + 90
            up = []
            while time.monotonic() < deadline:
                up = query('up{job="model-zoo-workers"} == 1')
                share = query("model_zoo_memory_share_bytes")
                if len(up) == 2 and share:
                    break
                time.sleep(1)
            assert len(up) == 2, (up, (Path(work) / "log").read_text()[-3000:])
            assert float(share[0]["value"][1]) > 0
            assert query("model_zoo_queue_depth"), "no queue depth scraped"
            while time.monotonic() < deadline:
                status, body = get(web, "/api/v1/rules")
                rules = [rule for group in json.loads(body)["data"]["groups"] for rule in group["rules"]] \
                    if status == 200 else []
                if rules and all(rule["health"] != "unknown" for rule in rules):  # each evaluated once
                    break
                time.sleep(1)
            assert {rule["name"] for rule in rules} == set(alert_queries())
            assert all(rule["health"] == "ok" for rule in rules), rules
            assert not [rule for rule in rules if rule["state"] == "firing" and rule["name"] == "ModelZooWorkerDown"]
        finally:
            server.terminate()
            server.wait(timeout=30)
