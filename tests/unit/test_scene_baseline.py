"""The per-camera scene baseline against a real redis-server: warm-up, scoring, learning, bounds and expiry."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tasks.scene_baseline import NEIGHBOURS, SceneBaseline, anomaly_score
from workers.settings import SceneSettings

DIM = 64


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return vector / np.linalg.norm(vector)


def near(base: np.ndarray, noise: float, seed: int) -> list[float]:
    vector = base + noise * unit(seed)
    return (vector / np.linalg.norm(vector)).tolist()


def baseline(redis_client, **options) -> SceneBaseline:
    return SceneBaseline(redis_client, **({"size": 50, "ttl_seconds": 60, "min_frames": 5, "interval_seconds": 0,
                                           "threshold": 0.25} | options))


def test_no_score_until_the_camera_has_enough_frames(redis_client):
    scenes = baseline(redis_client)
    day = unit(1)
    answers = [scenes.score_and_learn(near(day, 0.1, seed), "front_door") for seed in range(10, 16)]
    assert [a["baseline_count"] for a in answers] == [0, 1, 2, 3, 4, 5]
    assert all(a["score"] is None and a["unusual"] is None for a in answers[:5])
    assert answers[5]["score"] is not None and answers[5]["unusual"] is False


def test_a_frame_like_the_cameras_earlier_frames_is_typical_and_an_unlike_one_unusual(redis_client):
    scenes = baseline(redis_client)
    day = unit(1)
    for seed in range(10, 20):
        scenes.score_and_learn(near(day, 0.2, seed), "front_door")
    typical = scenes.score_and_learn(near(day, 0.2, 50), "front_door")
    unusual = scenes.score_and_learn(unit(2).tolist(), "front_door")
    assert typical["unusual"] is False and typical["score"] < 0.1
    assert unusual["unusual"] is True and unusual["score"] > 0.5
    assert (typical["baseline_count"], unusual["baseline_count"]) == (10, 11)


def test_a_second_kind_of_scene_becomes_typical_once_seen_a_few_times(redis_client):
    """Nearest neighbours, not the mean: night frames are typical among earlier night frames."""
    scenes = baseline(redis_client)
    day, night = unit(1), unit(2)
    for seed in range(10, 30):
        scenes.score_and_learn(near(day, 0.2, seed), "front_door")
    for seed in range(30, 30 + NEIGHBOURS):
        scenes.score_and_learn(near(night, 0.2, seed), "front_door")
    assert scenes.score_and_learn(near(night, 0.2, 99), "front_door")["unusual"] is False


def test_cameras_keep_their_own_baselines(redis_client):
    scenes = baseline(redis_client)
    for seed in range(10, 20):
        scenes.score_and_learn(near(unit(1), 0.2, seed), "front_door")
    answer = scenes.score_and_learn(near(unit(1), 0.2, 50), "driveway")
    assert answer == {"score": None, "unusual": None, "baseline_count": 0}


def test_the_baseline_is_capped_newest_first_and_stored_compactly(redis_client):
    scenes = baseline(redis_client, size=4)
    vectors = [unit(seed) for seed in range(10, 17)]
    for vector in vectors:
        scenes.score_and_learn(vector.tolist(), "front_door")
    stored = scenes.frames("front_door", DIM)
    assert stored.shape == (4, DIM)
    np.testing.assert_allclose(stored, np.stack(vectors[::-1][:4]), atol=2e-3)
    assert redis_client.llen(scenes.key("front_door", DIM)) == 4
    assert all(len(raw) == DIM * 2 for raw in redis_client.lrange(scenes.key("front_door", DIM), 0, -1))


def test_the_baseline_expires_after_its_ttl(redis_client):
    scenes = baseline(redis_client, ttl_seconds=0.3)
    scenes.score_and_learn(unit(1).tolist(), "front_door")
    assert 0 < redis_client.pttl(scenes.key("front_door", DIM)) <= 300
    time.sleep(0.5)
    assert scenes.frames("front_door", DIM).shape == (0, DIM)


def test_a_burst_from_one_camera_adds_one_frame_per_interval(redis_client):
    scenes = baseline(redis_client, interval_seconds=0.4)
    for seed in range(5):
        scenes.score_and_learn(unit(seed).tolist(), "front_door")
    assert redis_client.llen(scenes.key("front_door", DIM)) == 1
    scenes.score_and_learn(unit(6).tolist(), "driveway")
    assert redis_client.llen(scenes.key("driveway", DIM)) == 1, "each camera learns on its own clock"
    time.sleep(0.5)
    answer = scenes.score_and_learn(unit(7).tolist(), "front_door")
    assert answer["baseline_count"] == 1
    assert redis_client.llen(scenes.key("front_door", DIM)) == 2


def test_another_embedding_width_starts_its_own_baseline(redis_client):
    scenes = baseline(redis_client, min_frames=1)
    scenes.score_and_learn(unit(1).tolist(), "front_door")
    assert scenes.score_and_learn([1.0, 0.0, 0.0], "front_door")["baseline_count"] == 0


def test_bad_embeddings_are_refused(redis_client):
    scenes = baseline(redis_client)
    for bad in ([], [0.0, 0.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError):
            scenes.score_and_learn(bad, "front_door")


def test_anomaly_score_is_one_minus_the_nearest_similarities_clamped():
    rows = np.eye(4)
    assert anomaly_score(np.array([1.0, 0, 0, 0]), rows, neighbours=1) == 0.0
    assert anomaly_score(np.array([1.0, 0, 0, 0]), rows, neighbours=2) == 0.5
    assert anomaly_score(np.array([-1.0, 0, 0, 0]), rows[:1], neighbours=1) == 1.0


def test_settings_configure_the_baseline(redis_client):
    settings = SceneSettings(baseline_size=7, baseline_ttl_seconds=9, baseline_min_frames=3,
                             baseline_interval_seconds=0, anomaly_threshold=0.4)
    scenes = SceneBaseline.configured(redis_client, settings)
    assert (scenes.size, scenes.ttl_seconds, scenes.min_frames, scenes.interval_seconds, scenes.threshold) == (
        7, 9.0, 3, 0.0, 0.4)


def test_a_decoding_client_is_refused(redis_server):
    import redis

    with pytest.raises(ValueError, match="decode_responses=False"):
        SceneBaseline(redis.Redis.from_url(redis_server.url, decode_responses=True))
