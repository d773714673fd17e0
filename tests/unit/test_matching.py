"""Matching engine: tagged unit vectors in a real Redis, an in-process index kept current from the changes alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.matching import (
    Gallery,
    GalleryError,
    GalleryIndex,
    pack_entry,
    unit_vector,
    unpack_entry,
)

FACE_V1 = "facenet.pt:0123456789ab"
FACE_V2 = "facenet.pt:ba9876543210"


def vector(seed: int, dim: int = 16) -> np.ndarray:
    return unit_vector(np.random.default_rng(seed).standard_normal(dim))


def near(base: np.ndarray, seed: int, noise: float = 0.05) -> np.ndarray:
    return unit_vector(base + noise * np.random.default_rng(seed).standard_normal(base.shape))


def command_calls(client, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def gallery(redis_client) -> Gallery:
    return Gallery(redis_client, "faces", retention_seconds=100.0)


@given(st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=20).filter(lambda s: s[0].isalnum()),
       st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=64))
def test_packed_entries_read_back_as_written(identity, numbers):
    identity_back, model_back, vector_back = unpack_entry(pack_entry(identity, FACE_V1, np.asarray(numbers)))
    assert (identity_back, model_back) == (identity, FACE_V1)
    assert vector_back.tolist() == np.asarray(numbers, dtype=np.float32).tolist()


def test_an_empty_gallery_answers_no_gallery(gallery):
    assert GalleryIndex(gallery).match(vector(1), FACE_V1, 0.5).outcome == "no_gallery"


def test_an_enrolled_vector_matches_and_a_stranger_does_not(gallery):
    dana = vector(1)
    gallery.put("m-0001", dana, FACE_V1)
    gallery.put("m-0002", vector(2), FACE_V1)
    index = GalleryIndex(gallery)
    found = index.match(near(dana, 7), FACE_V1, 0.8)
    assert (found.outcome, found.identity, found.compared) == ("match", "m-0001", 2)
    assert found.similarity > 0.9
    stranger = index.match(vector(3), FACE_V1, 0.8)
    assert stranger.outcome == "no_match" and stranger.similarity < 0.8


def test_vectors_of_another_embedder_are_never_compared(gallery):
    dana = vector(1)
    gallery.put("m-0001", dana, FACE_V1)
    index = GalleryIndex(gallery)
    answer = index.match(dana, FACE_V2, 0.5)  # the very same numbers, from another model
    assert answer.outcome == "re_enroll" and answer.similarity is None and answer.stale == 1
    gallery.put("m-0002", vector(2), FACE_V2)
    partly = index.match(dana, FACE_V2, 0.9)
    assert (partly.outcome, partly.compared, partly.stale) == ("no_match", 1, 1)


def test_a_member_with_several_photos_matches_on_the_closest(gallery):
    dana_front, dana_side = vector(1), vector(2)
    gallery.put("m-0001", dana_front, FACE_V1, slot="0")
    gallery.put("m-0001", dana_side, FACE_V1, slot="1")
    gallery.put("m-0002", vector(3), FACE_V1)
    found = GalleryIndex(gallery).match(near(dana_side, 5), FACE_V1, 0.8)
    assert (found.outcome, found.identity, found.entry) == ("match", "m-0001", "m-0001/1")


def test_a_refresh_reads_only_what_changed(gallery, redis_client):
    gallery.put_many([(f"person-{i:04d}", vector(i), FACE_V1, "0") for i in range(50)])
    index = GalleryIndex(gallery)
    assert index.refresh().read == 50
    mgets = command_calls(redis_client, "mget")
    assert index.refresh().read == 0
    assert command_calls(redis_client, "mget") == mgets  # nothing changed: no vector read
    gallery.put("person-0007", vector(1000), FACE_V1)
    gallery.put("person-0100", vector(100), FACE_V1)
    stats = index.refresh()
    assert (stats.read, stats.full) == (2, False)
    assert index.match(vector(1000), FACE_V1, 0.99, refresh=False).identity == "person-0007"


def test_two_processes_see_each_others_writes(gallery, redis_client):
    reader, writer = GalleryIndex(gallery), Gallery(redis_client, "faces", retention_seconds=100.0)
    assert reader.match(vector(1), FACE_V1, 0.9).outcome == "no_gallery"
    writer.put("m-0001", vector(1), FACE_V1)
    assert reader.match(vector(1), FACE_V1, 0.9).outcome == "match"
    writer.delete_identity("m-0001")
    assert reader.match(vector(1), FACE_V1, 0.9).outcome == "no_gallery"


def stored_vectors(client) -> list[np.ndarray]:
    """Every packed vector held by any string key."""
    found = []
    for key in client.keys("*"):
        if client.type(key) == b"string":
            try:
                found.append(unpack_entry(client.get(key))[2])
            except ValueError:
                pass
    return found


def holds(vectors: list[np.ndarray], target: np.ndarray) -> bool:
    return any(float(v @ target) > 0.999 for v in vectors if v.shape == target.shape)


def test_forgetting_an_identity_removes_every_vector_and_key(gallery, redis_client):
    gallery.put("m-0002", vector(9), FACE_V1)
    gallery.put("m-0003", vector(8), FACE_V1)
    gallery.delete_identity("m-0003")  # the gallery's structure (tombstones too) exists before the count
    before = set(redis_client.keys("*"))
    gallery.put("m-0001", vector(1), FACE_V1, slot="0")
    gallery.put("m-0001", vector(2), FACE_V1, slot="1")
    assert len(set(redis_client.keys("*")) - before) == 2  # one key per vector
    assert sorted(gallery.delete_identity("m-0001")) == ["m-0001/0", "m-0001/1"]
    assert set(redis_client.keys("*")) == before
    assert gallery.identities() == ["m-0002"]
    stored = stored_vectors(redis_client)
    assert not holds(stored, vector(1)) and not holds(stored, vector(2))
    assert holds(stored, vector(9))  # the search finds what is there


def test_an_index_too_far_behind_the_tombstones_reloads_everything(redis_client):
    gallery = Gallery(redis_client, "reid", tombstones=2)
    gallery.put_many([(f"person-{i:04d}", vector(i), FACE_V1, "0") for i in range(10)])
    index = GalleryIndex(gallery)
    index.refresh()
    gallery.delete([f"person-{i:04d}/0" for i in range(5)])
    stats = index.refresh()
    assert stats.full and len(index) == 5
    assert index.match(vector(2), FACE_V1, 0.99, refresh=False).outcome == "no_match"
    assert index.match(vector(7), FACE_V1, 0.99, refresh=False).identity == "person-0007"


def test_unknown_identities_expire_after_the_retention_and_kept_ones_never(gallery):
    gallery.put("person-0001", vector(1), FACE_V1, seen_at=1000.0, expires=True)
    gallery.put("person-0002", vector(2), FACE_V1, seen_at=1000.0, expires=True)
    gallery.put("m-0001", vector(3), FACE_V1)  # a household member: kept
    gallery.touch(["person-0002/0"], seen_at=1080.0)
    assert gallery.expire(now=1090.0) == []
    assert gallery.expire(now=1101.0) == ["person-0001"]
    gallery.keep("person-0002")  # named meanwhile
    assert gallery.expire(now=5000.0) == []
    assert gallery.identities() == ["m-0001", "person-0002"]


def test_a_touch_never_makes_a_kept_entry_expire(gallery):
    gallery.put("m-0001", vector(3), FACE_V1)
    gallery.touch(["m-0001/0"], seen_at=1.0)
    assert gallery.expire(now=1e9) == []


def test_no_gallery_key_has_a_ttl(gallery, redis_client):
    gallery.put("person-0001", vector(1), FACE_V1, expires=True)
    gallery.put("m-0001", vector(2), FACE_V1)
    gallery.delete_identity("m-0001")
    assert all(redis_client.ttl(key) == -1 for key in redis_client.keys("gallery:*"))


def test_refusals(gallery):
    with pytest.raises(GalleryError):
        gallery.put("bad identity", vector(1), FACE_V1)
    with pytest.raises(GalleryError):
        gallery.put("m-0001", [0.0, 0.0], FACE_V1)
    with pytest.raises(GalleryError):
        gallery.put("m-0001", [1.0, float("nan")], FACE_V1)
    with pytest.raises(GalleryError):
        gallery.put("m-0001", vector(1), "has space")
    with pytest.raises(ValueError, match="retention"):
        Gallery(gallery.client, "household-faces").put("m-0001", vector(1), FACE_V1, expires=True)
    gallery.put("m-0001", vector(1, dim=16), FACE_V1)
    with pytest.raises(GalleryError, match="16"):
        GalleryIndex(gallery).match(vector(1, dim=8), FACE_V1, 0.5)


def test_repr_shows_no_vector(gallery):
    gallery.put("m-0001", vector(1), FACE_V1)
    index = GalleryIndex(gallery)
    index.refresh()
    text = repr(index) + repr(gallery) + repr(index.match(vector(1), FACE_V1, 0.5))
    assert "0." not in text.replace("similarity=1.0", "")


operations = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.integers(0, 12), st.integers(0, 2),
              st.sampled_from([FACE_V1, FACE_V2]), st.integers(0, 10_000)),
    min_size=1, max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations, st.integers(0, 10_000), st.sampled_from([FACE_V1, FACE_V2]))
def test_an_index_refreshed_between_writes_answers_as_a_full_scan_of_redis(redis_client, ops, query_seed, model):
    redis_client.flushall()
    gallery = Gallery(redis_client, "prop", tombstones=5)
    index = GalleryIndex(gallery)
    for step, (op, who, slot, model_id, seed) in enumerate(ops):
        identity = f"id-{who}"
        if op == "put":
            gallery.put(identity, vector(seed, dim=8), model_id, slot=str(slot))
        else:
            gallery.delete([f"{identity}/{slot}"])
        if step % 3 == 0:
            index.refresh()
    query = vector(query_seed, dim=8)
    answer = index.match(query, model, 0.5)
    stored = {entry: value for entry, value in gallery.read(sorted(gallery.changes_since(None).put)) if value}
    same = {entry: vec for entry, (_, model_id, vec) in stored.items() if model_id == model}
    if not stored:
        assert answer.outcome == "no_gallery"
    elif not same:
        assert answer.outcome == "re_enroll"
    else:
        best = max(same, key=lambda entry: float(same[entry] @ query))
        assert answer.similarity == pytest.approx(float(same[best] @ query), abs=1e-4)
        assert answer.outcome == ("match" if float(same[best] @ query) >= 0.5 else "no_match")
        assert answer.compared == len(same)


def test_an_index_reloads_when_redis_lost_its_gallery(gallery, redis_client):
    gallery.put_many([(f"person-{i:04d}", vector(i), FACE_V1, "0") for i in range(20)])
    index = GalleryIndex(gallery)
    index.refresh()
    redis_client.flushall()  # a restart without persistence
    gallery.put_many([(f"other-{i:04d}", vector(100 + i), FACE_V1, "0") for i in range(30)])  # version passes ours
    stats = index.refresh()
    assert stats.full and len(index) == 30
    assert index.match(vector(3), FACE_V1, 0.99, refresh=False).outcome == "no_match"
