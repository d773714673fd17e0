"""The re-identification gallery against a real redis-server: match, new identity, naming, expiry, concurrency."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tasks.reid_gallery import ReidGallery
from workers.settings import Settings

DIM = 512


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return (vector / np.linalg.norm(vector)).tolist()


def near(base: list[float], noise: float, seed: int) -> list[float]:
    """A vector close to base (cosine about 1 - noise**2 / 2 for small noise)."""
    vector = np.asarray(base) + noise * np.asarray(unit(seed))
    return (vector / np.linalg.norm(vector)).tolist()


def test_first_sighting_creates_a_new_identity(redis_client):
    gallery = ReidGallery(redis_client, threshold=0.75, ttl_seconds=60)
    match = gallery.match_or_add(unit(1), "front_door", 1000.0)
    assert match["new"] is True
    assert match["sighting_count"] == 1
    assert match["cameras"] == ["front_door"]
    assert match["first_seen"] == match["last_seen"] == 1000.0
    assert match["name"] is None
    assert gallery.identities() == [match["identity"]]


def test_same_person_on_another_camera_matches_and_counts(redis_client):
    gallery = ReidGallery(redis_client, threshold=0.75, ttl_seconds=60)
    person = unit(1)
    first = gallery.match_or_add(person, "front_door", 1000.0)
    again = gallery.match_or_add(near(person, 0.3, 2), "driveway", 1060.0)
    assert again["new"] is False
    assert again["identity"] == first["identity"]
    assert 0.75 <= again["similarity"] < 1.0
    assert again["sighting_count"] == 2
    assert again["cameras"] == ["driveway", "front_door"]
    assert (again["first_seen"], again["last_seen"]) == (1000.0, 1060.0)


def test_a_different_person_gets_a_new_identity(redis_client):
    gallery = ReidGallery(redis_client, threshold=0.75, ttl_seconds=60)
    first = gallery.match_or_add(unit(1), "front_door", 1000.0)
    other = gallery.match_or_add(unit(99), "front_door", 1001.0)
    assert other["new"] is True and other["identity"] != first["identity"]
    assert sorted(gallery.identities()) == sorted([first["identity"], other["identity"]])


def test_threshold_decides_between_match_and_new(redis_client):
    person = unit(1)
    strict = ReidGallery(redis_client, threshold=0.99, ttl_seconds=60, prefix="strict")
    strict.match_or_add(person, "cam", 1.0)
    assert strict.match_or_add(near(person, 0.3, 2), "cam", 2.0)["new"] is True
    loose = ReidGallery(redis_client, threshold=0.5, ttl_seconds=60, prefix="loose")
    loose.match_or_add(person, "cam", 1.0)
    assert loose.match_or_add(near(person, 0.3, 2), "cam", 2.0)["new"] is False


def test_out_of_order_sighting_keeps_first_and_last_seen(redis_client):
    gallery = ReidGallery(redis_client, ttl_seconds=60)
    person = unit(3)
    gallery.match_or_add(person, "a", 2000.0)
    late = gallery.match_or_add(person, "a", 1500.0)
    assert (late["first_seen"], late["last_seen"]) == (1500.0, 2000.0)


def test_naming_an_identity_shows_in_later_matches(redis_client):
    gallery = ReidGallery(redis_client, ttl_seconds=60)
    person = unit(4)
    identity = gallery.match_or_add(person, "front_door", 1.0)["identity"]
    gallery.name(identity, "Dana")
    assert gallery.get(identity)["name"] == "Dana"
    assert gallery.match_or_add(person, "front_door", 2.0)["name"] == "Dana"
    gallery.name(identity, None)
    assert gallery.get(identity)["name"] is None


def test_naming_or_getting_an_unknown_identity(redis_client):
    gallery = ReidGallery(redis_client, ttl_seconds=60)
    with pytest.raises(KeyError):
        gallery.name("person-9999", "Nobody")
    assert gallery.get("person-9999") is None


def test_unused_identities_expire_and_leave_the_index(redis_client):
    gallery = ReidGallery(redis_client, ttl_seconds=0.5)
    person = unit(5)
    first = gallery.match_or_add(person, "cam", 1.0)
    time.sleep(0.8)
    assert gallery.get(first["identity"]) is None
    again = gallery.match_or_add(person, "cam", 2.0)
    assert again["new"] is True and again["identity"] != first["identity"]
    assert redis_client.zrange("reid:index", 0, -1) == [again["identity"].encode()]


def test_each_sighting_refreshes_the_ttl(redis_client):
    gallery = ReidGallery(redis_client, ttl_seconds=1.0)
    person = unit(6)
    identity = gallery.match_or_add(person, "cam", 1.0)["identity"]
    for step in range(3):
        time.sleep(0.5)
        assert gallery.match_or_add(person, "cam", 2.0 + step)["identity"] == identity
    assert gallery.get(identity)["sighting_count"] == 4


def test_ttl_and_threshold_come_from_the_settings(redis_client, monkeypatch):
    monkeypatch.setenv("REID_THRESHOLD", "0.9")
    monkeypatch.setenv("REID_TTL_SECONDS", "120")
    gallery = ReidGallery.configured(redis_client, Settings().reid)
    assert (gallery.threshold, gallery.ttl_seconds) == (0.9, 120.0)
    identity = gallery.match_or_add(unit(7), "cam", 1.0)["identity"]
    assert 100_000 < redis_client.pttl(f"reid:identity:{identity}") <= 120_000


def test_stored_template_stays_unit_length_float32(redis_client):
    gallery = ReidGallery(redis_client, ttl_seconds=60)
    person = unit(8)
    identity = gallery.match_or_add(person, "cam", 1.0)["identity"]
    gallery.match_or_add(near(person, 0.3, 9), "cam", 2.0)
    raw = redis_client.hget(f"reid:identity:{identity}", "embedding")
    template = np.frombuffer(raw, dtype="<f4")
    assert template.shape == (DIM,)
    assert abs(float(np.linalg.norm(template)) - 1.0) < 1e-5


@pytest.mark.parametrize("bad", [[], [0.0] * DIM, [float("nan")] * DIM])
def test_unusable_embeddings_are_refused(redis_client, bad):
    with pytest.raises(ValueError):
        ReidGallery(redis_client, ttl_seconds=60).match_or_add(bad, "cam", 1.0)


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_sightings_of_one_person_make_one_identity(redis_client, redis_server, round_):
    workers = 12
    person = unit(10 + round_)
    barrier = threading.Barrier(workers)
    results: list[dict] = []
    errors: list[BaseException] = []

    def sight(i: int) -> None:
        client = redis_server.client()  # one connection pool per "worker process"
        try:
            gallery = ReidGallery(client, ttl_seconds=60)
            barrier.wait()
            results.append(gallery.match_or_add(person, f"cam-{i % 3}", 1000.0 + i))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=sight, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    gallery = ReidGallery(redis_client, ttl_seconds=60)
    assert len(gallery.identities()) == 1
    identity = gallery.identities()[0]
    assert {r["identity"] for r in results} == {identity}
    assert sum(r["new"] for r in results) == 1
    assert sorted(r["sighting_count"] for r in results) == list(range(1, workers + 1))
    record = gallery.get(identity)
    assert record["sighting_count"] == workers
    assert record["cameras"] == ["cam-0", "cam-1", "cam-2"]
    assert (record["first_seen"], record["last_seen"]) == (1000.0, 1000.0 + workers - 1)


def test_decoding_clients_are_refused(redis_server):
    import redis

    with pytest.raises(ValueError):
        ReidGallery(redis.Redis.from_url(redis_server.url, decode_responses=True))


def test_a_held_lock_gives_a_clear_error_not_a_duplicate(redis_client):
    from tasks.reid_gallery import ReidGalleryError

    gallery = ReidGallery(redis_client, ttl_seconds=60, lock_wait=0.2)
    held = redis_client.lock("reid:lock", timeout=5)
    assert held.acquire()
    try:
        with pytest.raises(ReidGalleryError, match="lock not acquired"):
            gallery.match_or_add(unit(11), "cam", 1.0)
    finally:
        held.release()
    assert gallery.identities() == []
