"""The backend's side through a real pool (real redis-server, real workers; no-op models): the completion feed
read with a consumer group across a backend restart, the light client over a password and TLS (sync and
asyncio), stored results against the published schema, inline frames carried once, and the client in a fresh
virtual environment holding only celery, redis and pydantic."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest

from scripts.bench import noop_environment
from scripts.fixtures.sample_events import animal_event, person_event, vehicle_event
from tasks.client import AsyncEnrichmentClient, EnrichmentClient
from tasks.contract import SCHEMA_VERSION, published_schema
from tasks.local_pool import LocalPool, RedisServer, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret/with:odd@chars"
CLIENT_REQUIREMENTS = ["celery[redis]==5.7.0", "redis==8.1.0", "pydantic==2.14.4"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), for a TLS port on the test's redis-server."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class BackendPool:
    def __init__(self, server: RedisServer, pool: LocalPool, tls_port: int, cert: Path):
        self.server, self.pool, self.tls_port, self.cert = server, pool, tls_port, cert

    @property
    def plain_url(self) -> str:  # no password in it: the client adds it
        return f"redis://127.0.0.1:{self.server.port}/0"

    @property
    def tls_url(self) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/0"

    def client(self) -> EnrichmentClient:
        return EnrichmentClient(self.plain_url, password=PASSWORD)


@pytest.fixture(scope="module")
def backend_pool(tmp_path_factory):
    work = tmp_path_factory.mktemp("backend")
    cert, key = self_signed(work)
    tls_port = free_port()
    server = RedisServer(password=PASSWORD, extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]).start()
    env = {"METRICS_PORT_BASE": "0", "MEMORY_SHARE_MB": "16384"} | noop_environment(work)
    pool = LocalPool(server.url, work, work / "logs", env=env)
    try:
        pool.start()
        yield BackendPool(server, pool, tls_port, cert)
    finally:
        pool.stop()
        print(f"\n--- pool log tail ---\n{pool.log_tail(30)}")
        server.cleanup()


def test_a_backend_away_while_100_events_complete_reads_all_100_once(backend_pool):
    backend = backend_pool.client()
    backend.feed("offline-backend", "backend-1", start="$")  # the group exists before the backend goes away
    backend.close()

    sender = backend_pool.client()
    events = [person_event(f"feed-{n}") if n % 3 else vehicle_event(f"feed-{n}") for n in range(90)]
    events += [{"event_id": f"feed-bad-{n}", "detection_type": "person"} for n in range(10)]  # rejected
    pending = [sender.submit(event) for event in events]
    answers = [sender.wait(p, timeout=180) for p in pending]
    sender.close()
    assert sum(a["status"] == "complete" for a in answers) == 90
    assert sum(a["status"] == "rejected" for a in answers) == 10

    crashed = backend_pool.client()  # reads 30, handles none of them, and dies
    first = crashed.feed("offline-backend", "backend-1").read(count=30, block_ms=1000)
    assert len(first) == 30
    crashed.close()

    restarted = backend_pool.client()
    feed = restarted.feed("offline-backend", "backend-1")
    seen: list[str] = []
    backlog = feed.read(count=40, block_ms=500)
    assert [c.entry_id for c in backlog] == [c.entry_id for c in first], "what it read and never handled comes first"
    batch = backlog
    while batch:
        for completion in batch:
            stored = feed.result(completion)
            assert stored is not None and stored["status"] == completion.status
            assert completion.schema_version == stored["schema_version"] == SCHEMA_VERSION
            seen.append(completion.submitted_event_id or completion.event_id)
        feed.ack(batch)
        batch = feed.read(count=40, block_ms=500)
    assert sorted(seen) == sorted(e["event_id"] for e in events), "every result and rejection, each once"
    assert feed.read(count=100, block_ms=200) == [] and feed.pending() == 0, "nothing again after acknowledging"
    assert restarted.feed("offline-backend", "backend-2").read(block_ms=200) == [], "a group sees each entry once"
    restarted.close()


def test_stored_results_validate_and_inline_frames_are_carried_once_and_cleaned_up(backend_pool):
    client = backend_pool.client()
    validator = jsonschema.Draft202012Validator(published_schema())
    not_an_image = dict(vehicle_event("shape-5"), image=base64.b64encode(b"not an image at all").decode())
    answers = {}
    for event in (person_event("shape-1", face=True, suspicious=80, frames=3), vehicle_event("shape-2"),
                  animal_event("shape-3"), {"event_id": "shape-4", "bbox": [1, 2]}, not_an_image):
        answer = client.enrich(event, timeout=120)
        validator.validate(answer)
        assert answer["schema_version"] == SCHEMA_VERSION
        assert client.stored(answer["event_id"]) == answer
        answers[event["event_id"]] = answer
    assert [answers[f"shape-{n}"]["status"] for n in range(1, 6)] == ["complete"] * 3 + ["rejected"] * 2
    assert list(answers["shape-5"]["errors"]) == ["image"], "an uploaded frame is named as the backend sent it"
    time.sleep(0.5)
    assert client.redis.keys("frame-upload:*") == [], "the pool deletes the uploads, enriched or rejected"
    assert client.redis.keys("frame:*") == []
    client.close()


def test_the_client_over_tls_with_a_password_sync_and_asyncio(backend_pool):
    tls = {"ssl_ca_certs": str(backend_pool.cert)}
    sync_client = EnrichmentClient(backend_pool.tls_url, password=PASSWORD, ssl=tls)
    feed = sync_client.feed("tls-backend", "tls-1", start="$")
    assert sync_client.enrich(person_event("tls-1"), timeout=120)["status"] == "complete"

    async def from_asyncio() -> tuple[dict, list[str]]:
        client = AsyncEnrichmentClient(backend_pool.tls_url, password=PASSWORD, ssl=tls)
        try:
            answer = await client.enrich(vehicle_event("tls-2"), timeout=120)
            rejected = await client.wait(await client.submit({"event_id": "tls-3"}), timeout=120)
            async_feed = await client.feed("tls-backend", "tls-2")
            found = []
            while batch := await async_feed.read(count=10, block_ms=500):
                found += [c.submitted_event_id or c.event_id for c in batch]
                await async_feed.ack(batch)
            assert rejected["status"] == "rejected" and rejected["submitted_event_id"] == "tls-3"
            return answer, found
        finally:
            await client.close()

    answer, found_by_asyncio = asyncio.run(from_asyncio())
    assert answer["status"] == "complete" and set(answer["enrichment"]) == {"vehicle", "depth", "scene_context"}
    assert sorted(found_by_asyncio) == ["tls-1", "tls-2", "tls-3"]
    assert feed.read(block_ms=200) == [], "the group's entries were read and acknowledged by the asyncio consumer"
    sync_client.close()

    wrong = EnrichmentClient(backend_pool.tls_url, password="not-it", ssl=tls)
    with pytest.raises(Exception, match="(?i)auth|password|WRONGPASS"):
        wrong.stored("tls-1")
    wrong.close()


FRESH_VENV_SCRIPT = textwrap.dedent("""
    import json, sys
    from tasks.client import EnrichmentClient
    client = EnrichmentClient(sys.argv[1], password=sys.argv[2])
    feed = client.feed("fresh-venv", "fresh-1", start="$")
    event = json.loads(sys.stdin.read())
    answer = client.enrich(event, timeout=120)
    completions = feed.read(block_ms=5000)
    feed.ack(completions)
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "PIL", "numpy", "pydantic_settings"})
    print(json.dumps({"status": answer["status"], "schema_version": answer["schema_version"],
                      "feed": [c.event_id for c in completions], "heavy": heavy}))
""")


def test_the_client_runs_in_a_fresh_venv_with_only_celery_redis_and_pydantic(backend_pool, tmp_path):
    venv = tmp_path / "backend-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *CLIENT_REQUIREMENTS], capture_output=True, text=True, timeout=600)
    if install.returncode != 0:
        pytest.skip(f"could not install the client's requirements: {install.stderr[-500:]}")
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0, "fresh: no torch"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"PYTHONPATH": str(REPO)}
    run = subprocess.run([str(python), "-c", FRESH_VENV_SCRIPT, backend_pool.plain_url, PASSWORD],
                         input=json.dumps(person_event("fresh-1")), capture_output=True, text=True, timeout=300,
                         env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"status": "complete", "schema_version": SCHEMA_VERSION, "feed": ["fresh-1"], "heavy": []}
