"""/readyz follows the broker: a real pool's workers report not ready while Redis is down, and ready again after."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.integration


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(port: int, status: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got, body = readyz(port)
        if got == status or time.monotonic() > deadline:
            assert got == status, body
            return body
        time.sleep(0.5)


def test_readiness_is_lost_with_the_broker_and_comes_back_with_it(make_pool):
    base = free_port_block(200)
    pool, server = make_pool({"METRICS_PORT_BASE": str(base)}, persistent=True)
    router, device = base, base + 101
    for port in (router, device):
        wait_for(port, 200)
    server.stop()
    for port in (router, device):
        body = wait_for(port, 503, timeout=30)
        assert body["checks"]["broker"].startswith("broker unreachable: ")
    server.start()
    for port in (router, device):
        assert wait_for(port, 200, timeout=60)["checks"]["broker"] == "ok"
