"""Test-wide settings: nothing reaches for the network, tiny models are generated once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

TINY_CACHE = Path(os.environ.get("TINY_MODELS_DIR", Path(__file__).resolve().parent.parent / "var" / "tiny-models"))


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """Directory holding tiny generated models (MODELS_DIR layout: one entry per model name)."""
    TINY_CACHE.mkdir(parents=True, exist_ok=True)
    return TINY_CACHE


@pytest.fixture(scope="session")
def tiny_model(tiny_models_dir):
    """tiny_model(name) -> path of that model's tiny weights, generated on first use."""
    from scripts.fixtures.weights import write_generated
    from workers.registry import REGISTRY

    def make(name: str) -> Path:
        return write_generated(REGISTRY[name], tiny_models_dir)

    return make


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server for the whole test session (flush between tests yourself if needed)."""
    from tasks.local_pool import RedisServer

    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_client(redis_server):
    """A client to a freshly flushed database of the session's redis-server."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def pool_models_dir(tiny_models_dir):
    """Every model of the zoo, tiny, generated once."""
    from scripts.fixtures.weights import write_generated
    from workers.registry import REGISTRY

    for entry in REGISTRY.values():
        write_generated(entry, tiny_models_dir)
    return tiny_models_dir
