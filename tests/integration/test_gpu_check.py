"""A worker started for a GPU it cannot use stops with a clear message (a real `python -m workers device` process);
CPU_FALLBACK=1 runs it on the CPU on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.local_pool import REPO, stop_process_group

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a GPU: the worker would use it"),
]


def worker(redis_server, tmp_path: Path, **env: str) -> subprocess.Popen:
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "workers", "device", "--index", "0"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env=os.environ | {"REDIS_URL": redis_server.url, "METRICS_PORT_BASE": "0", "MODELS_DIR": str(tmp_path),
                          "HEARTBEAT_SECONDS": "1", "JOURNAL_DIR": str(tmp_path / "journal"),
                          "POOL_SIGNING_KEY": "gpu-check-test-key"} | env,
        start_new_session=True)


def test_a_gpu_worker_without_a_usable_gpu_stops_and_says_why(redis_server, tmp_path):
    process = worker(redis_server, tmp_path)
    try:
        code = process.wait(timeout=120)
    finally:
        stop_process_group(process)
    output = (tmp_path / "worker.log").read_text()
    assert code == 3, output[-3000:]
    assert "started for queue gpu.0, but torch" in output and "sees no usable GPU" in output
    assert "set CPU_FALLBACK=1 to run it on the CPU on purpose" in output


def test_cpu_fallback_runs_the_gpu_queue_on_the_cpu(redis_server, tmp_path):
    from workers.state import WORKER_STATE_PREFIX

    process = worker(redis_server, tmp_path, CPU_FALLBACK="1")
    client = redis_server.client()
    try:
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline and process.poll() is None:
            keys = client.keys(WORKER_STATE_PREFIX + "gpu0@*")
            if keys:
                state = client.get(keys[0])
                break
            time.sleep(0.5)
        output = (tmp_path / "worker.log").read_text()
        assert state is not None, output[-3000:]
        assert b'"queue": "gpu.0"' in state and b'"device": "cpu"' in state
        assert "running on the CPU (CPU_FALLBACK=1)" in output
    finally:
        stop_process_group(process)
