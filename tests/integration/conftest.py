"""Integration fixtures: one real redis-server and one real worker pool shared by the integration tests."""

from __future__ import annotations

import pytest

from workers.local_pool import LocalPool, RedisServer


@pytest.fixture(scope="session")
def pool(pool_models_dir, tmp_path_factory):
    server = RedisServer().start()
    running = LocalPool(server.url, pool_models_dir, tmp_path_factory.mktemp("pool-logs"))
    try:
        running.start()
        yield running
    finally:
        running.stop()
        server.cleanup()
        print(f"\n--- pool log tail ---\n{running.log_tail(40)}")
