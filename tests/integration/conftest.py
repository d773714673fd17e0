"""Integration fixtures: one real redis-server and one real worker pool shared by the integration tests."""

from __future__ import annotations

import pytest

from workers.local_pool import LocalPool, RedisServer
from workers.model_files import write_generated
from workers.registry import REGISTRY


@pytest.fixture(scope="session")
def pool_models_dir(tiny_models_dir):
    """Every model of the zoo, tiny, generated once."""
    for entry in REGISTRY.values():
        write_generated(entry, tiny_models_dir)
    return tiny_models_dir


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
