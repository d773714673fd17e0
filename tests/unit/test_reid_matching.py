"""Re-ID on the matching engine: today's gallery behaviour (match, new, names, expiry, one identity under a race)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tasks.matching import GalleryIndex
from tasks.reid_matching import IndexedReidGallery, ReidMatchingError

DIM = 512


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return (vector / np.linalg.norm(vector)).tolist()


def near(base: list[float], noise: float, seed: int) -> list[float]:
    vector = np.asarray(base) + noise * np.asarray(unit(seed))
    return (vector / np.linalg.norm(vector)).tolist()


def fresh(client, **options) -> IndexedReidGallery:
    """A gallery with its own index (the process-wide one would outlive each test's flushed Redis)."""
    gallery = IndexedReidGallery(client, **options)
    gallery.index = GalleryIndex(gallery.gallery)
    return gallery


def test_first_sighting_creates_a_new_identity(redis_client):
    match = fresh(redis_client, ttl_seconds=60).match_or_add(unit(1), "front_door", 1000.0)
    assert match == {"identity": "person-0001", "name": None, "sighting_count": 1, "cameras": ["front_door"],
                     "first_seen": 1000.0, "last_seen": 1000.0, "similarity": 1.0, "new": True}


def test_same_person_on_another_camera_matches_and_counts(redis_client):
    gallery = fresh(redis_client, threshold=0.75, ttl_seconds=60)
    gallery.match_or_add(unit(1), "front_door", 1000.0)
    match = gallery.match_or_add(near(unit(1), 0.3, 2), "driveway", 1010.0)
    assert (match["identity"], match["new"], match["sighting_count"]) == ("person-0001", False, 2)
    assert match["cameras"] == ["driveway", "front_door"] and match["similarity"] > 0.9


def test_a_different_person_gets_a_new_identity_and_out_of_order_times_hold(redis_client):
    gallery = fresh(redis_client, ttl_seconds=60)
    gallery.match_or_add(unit(1), "cam", 1000.0)
    assert gallery.match_or_add(unit(2), "cam", 1001.0)["identity"] == "person-0002"
    late = gallery.match_or_add(unit(1), "cam", 900.0)
    assert (late["first_seen"], late["last_seen"]) == (900.0, 1000.0)


def test_a_known_person_matches_while_another_worker_holds_the_create_lock(redis_client):
    gallery = fresh(redis_client, ttl_seconds=60, lock_wait=0.2)
    gallery.match_or_add(unit(1), "cam", 1.0)
    held = redis_client.lock("reid:create-lock", timeout=5)
    assert held.acquire()
    try:
        assert gallery.match_or_add(unit(1), "cam", 2.0)["identity"] == "person-0001"  # matching takes no lock
        with pytest.raises(ReidMatchingError, match="lock not acquired"):
            gallery.match_or_add(unit(5), "cam", 3.0)  # a stranger must wait to be created
    finally:
        held.release()
    assert gallery.identities() == ["person-0001"]


def test_named_identities_keep_their_name_and_never_expire(redis_client):
    gallery = fresh(redis_client, ttl_seconds=60)
    gallery.match_or_add(unit(1), "cam", 1000.0)
    gallery.match_or_add(unit(2), "cam", 1000.0)
    gallery.name("person-0001", "Dana")
    assert gallery.match_or_add(unit(1), "cam", 1010.0)["name"] == "Dana"
    assert redis_client.ttl("reid:identity:person-0001") == -1
    assert gallery.expire(now=1e9) == ["person-0002"]
    assert gallery.identities() == ["person-0001"]
    assert not redis_client.exists("reid:identity:person-0002", "reid:identity:person-0002:cameras")
    gallery.name("person-0001", None)
    assert gallery.expire(now=2e9) == ["person-0001"]
    with pytest.raises(KeyError):
        gallery.name("person-0001", "Dana")


def test_the_template_is_a_unit_running_mean(redis_client):
    gallery = fresh(redis_client, threshold=0.5, ttl_seconds=60)
    gallery.match_or_add(unit(1), "cam", 1.0)
    gallery.match_or_add(near(unit(1), 0.5, 3), "cam", 2.0)
    gallery.index.refresh()
    template = gallery.index.vector_of("person-0001/0")
    assert template.dtype == np.float32 and float(np.linalg.norm(template)) == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < float(template @ np.asarray(unit(1), dtype=np.float32)) < 0.9999


def test_concurrent_first_sightings_of_one_person_make_one_identity(redis_client, redis_server):
    workers = 12
    person = unit(10)
    barrier = threading.Barrier(workers)
    results: list[dict] = []
    errors: list[BaseException] = []

    def sight(i: int) -> None:
        client = redis_server.client()  # one connection and one index per "worker process"
        try:
            gallery = fresh(client, ttl_seconds=60)
            barrier.wait()
            results.append(gallery.match_or_add(person, f"cam-{i % 3}", 1000.0 + i))
        except Exception as exc:  # noqa: BLE001  (surfaced by the assertion below)
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=sight, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    gallery = fresh(redis_client, ttl_seconds=60)
    assert gallery.identities() == ["person-0001"]
    assert sum(r["new"] for r in results) == 1
    assert sorted(r["sighting_count"] for r in results) == list(range(1, workers + 1))
    record = gallery.get("person-0001")
    assert record["sighting_count"] == workers and record["cameras"] == ["cam-0", "cam-1", "cam-2"]
    assert (record["first_seen"], record["last_seen"]) == (1000.0, 1000.0 + workers - 1)
