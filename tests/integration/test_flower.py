"""Flower in a real headless browser against the integration pool: basic auth, its workers API, the rendered page."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

CHECK_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "flower_check.py"
_spec = importlib.util.spec_from_file_location("flower_check", CHECK_SCRIPT)
flower_check = sys.modules.setdefault("flower_check", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(flower_check)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(flower_check.chromium_binary() is None,
                       reason="Chromium is not installed (apt-get install -y chromium)"),
]


def test_flower_shows_the_pools_workers_behind_basic_auth(pool, tmp_path):
    nodes = sorted(name for reply in pool.client.app.control.ping(timeout=2) for name in reply)
    assert len(nodes) >= 2, nodes
    out = tmp_path / "flower-workers.png"
    command = [sys.executable, str(CHECK_SCRIPT), "--redis-url", pool.redis_url, "--out", str(out), "--json",
               "--timeout", "90", *[f"--worker={node}" for node in nodes]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert (report["unauthenticated_status"], report["wrong_password_status"]) == (401, 401)
    assert report["authenticated_status"] == 200
    assert set(nodes) <= set(report["api_workers"]) and set(nodes) <= set(report["page_workers"])

    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with Image.open(out) as image:
        assert image.size == (1280, 900)
        extrema = image.convert("L").getextrema()
        assert extrema[1] - extrema[0] > 100, "the screenshot is a blank page"
