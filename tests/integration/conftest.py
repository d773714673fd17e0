"""Integration fixtures: one real redis-server and one real worker pool shared by the integration tests."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.local_pool import LocalPool, RedisServer, free_port


def free_port_block(size: int) -> int:
    """A base port whose base and base+101 (router and cpu.0 metrics) are both free right now."""
    for _ in range(50):
        base = free_port()
        if base + size < 65535 and all(_port_free(base + offset) for offset in (0, 101)):
            return base
    raise RuntimeError("no free port block for metrics")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def started_pool(models_dir: Path, logs: Path, env: dict[str, str] | None = None,
                 url_of: Callable[[RedisServer], str] | None = None) -> Iterator[LocalPool]:
    """A redis-server of its own and a pool on it (metrics on a free port block), stopped and removed afterwards.
    `url_of` names the pool's Redis URL when it is not the server's own (an ACL user); `pool.metrics_base` is set."""
    server = RedisServer().start()
    base = free_port_block(200)
    running = LocalPool(url_of(server) if url_of else server.url, models_dir, logs,
                        env={"METRICS_PORT_BASE": str(base), **(env or {})})
    running.server, running.metrics_base = server, base
    try:
        running.start()
        yield running
    finally:
        gc.collect()  # AsyncResults caught in reference cycles unsubscribe now, while this pool's Redis still answers
        running.stop()
        server.cleanup()


# Cameras the scene-context tests use: one with a place (Berlin), and a short picture baseline.
SCENE_CONTEXT_ENV = {
    "CAMERA_PLACES": '{"night_porch": {"timezone": "Europe/Berlin", "latitude": 52.52, "longitude": 13.40}}',
    "CAMERA_QUALITY_MIN_FRAMES": "3",
}


@pytest.fixture(scope="session")
def pool(pool_models_dir, tmp_path_factory):
    server = RedisServer().start()
    running = LocalPool(server.url, pool_models_dir, tmp_path_factory.mktemp("pool-logs"),
                        env={"METRICS_PORT_BASE": str(free_port_block(200)), **SCENE_CONTEXT_ENV})
    try:
        running.start()
        yield running
    finally:
        running.stop()
        server.cleanup()
        print(f"\n--- pool log tail ---\n{running.log_tail(40)}")
