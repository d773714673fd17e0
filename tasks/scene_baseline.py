"""Per-camera scene baseline in Redis: how unusual an event's CLIP frame embedding is for its camera."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from tasks.reid_gallery import normalised
from workers.settings import SceneSettings

DEFAULTS = SceneSettings.model_construct()  # the documented defaults, without reading the environment
# The anomaly score compares the frame with its few nearest baseline frames, not with their mean: a camera
# sees a few kinds of scene (day, night, rain, a parked car), and a night frame is typical when earlier
# night frames are alike, however unlike the daytime ones it is.
NEIGHBOURS = 3
STORED_DTYPE = "<f2"  # float16 halves what a read carries; cosines stay within about 1e-3
SCORE_DIGITS = 4


def anomaly_score(vector: np.ndarray, baseline: np.ndarray, neighbours: int = NEIGHBOURS) -> float:
    """1 - the mean cosine similarity of a unit vector with its nearest baseline rows (unit rows), in [0, 1]."""
    similarities = np.sort(baseline @ vector)[::-1][:neighbours]
    return float(min(max(1.0 - float(similarities.mean()), 0.0), 1.0))


class SceneBaseline:
    """The last frames of each camera as a capped Redis list of float16 unit vectors, one list per embedding width.

    Keys: {prefix}:<camera_id>:<dim> (list, newest first, trimmed to `size`, expiring `ttl_seconds` after the
    last frame joined) and {prefix}:<camera_id>:<dim>:learned (set for `interval_seconds` after a frame joins,
    so a burst of events from one camera adds one frame, not the whole burst).
    """

    def __init__(
        self,
        client: redis.Redis,
        size: int = DEFAULTS.baseline_size,
        ttl_seconds: float = DEFAULTS.baseline_ttl_seconds,
        min_frames: int = DEFAULTS.baseline_min_frames,
        interval_seconds: float = DEFAULTS.baseline_interval_seconds,
        threshold: float = DEFAULTS.anomaly_threshold,
        prefix: str = "scene:baseline",
    ):
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("SceneBaseline needs a client with decode_responses=False (embeddings are raw bytes)")
        self.client = client
        self.size = int(size)
        self.ttl_seconds = float(ttl_seconds)
        self.min_frames = int(min_frames)
        self.interval_seconds = float(interval_seconds)
        self.threshold = float(threshold)
        self.prefix = prefix

    @classmethod
    def configured(cls, client: redis.Redis, settings: SceneSettings) -> SceneBaseline:
        """The baseline with the SCENE_BASELINE_* and SCENE_ANOMALY_THRESHOLD settings."""
        return cls(client, size=settings.baseline_size, ttl_seconds=settings.baseline_ttl_seconds,
                   min_frames=settings.baseline_min_frames, interval_seconds=settings.baseline_interval_seconds,
                   threshold=settings.anomaly_threshold)

    def key(self, camera_id: str, dim: int) -> str:
        return f"{self.prefix}:{camera_id}:{dim}"

    def frames(self, camera_id: str, dim: int) -> np.ndarray:
        """The camera's baseline as unit float32 rows (count x dim), newest first."""
        rows = [np.frombuffer(raw, dtype=STORED_DTYPE) for raw in self.client.lrange(self.key(camera_id, dim), 0, -1)]
        rows = [row for row in rows if row.size == dim]
        return np.stack(rows).astype(np.float32) if rows else np.empty((0, dim), dtype=np.float32)

    def score_and_learn(self, embedding: Any, camera_id: str) -> dict:
        """The frame's anomaly against the camera's baseline, then the frame joins the baseline.

        Returns {"score": 0..1, "unusual": score > threshold, "baseline_count": frames compared with}; while
        the baseline holds fewer than min_frames, score and unusual are None (nothing to compare with yet).
        """
        vector = normalised(embedding)
        dim = int(vector.size)
        baseline = self.frames(camera_id, dim)
        count = len(baseline)
        anomaly: dict[str, Any] = {"score": None, "unusual": None, "baseline_count": count}
        if count >= self.min_frames:
            score = anomaly_score(vector, baseline)
            anomaly.update(score=round(score, SCORE_DIGITS), unusual=score > self.threshold)
        self.learn(vector, camera_id)
        return anomaly

    def learn(self, vector: np.ndarray, camera_id: str) -> bool:
        """Add a unit vector to the camera's baseline unless one joined within interval_seconds; True if added."""
        key = self.key(camera_id, int(vector.size))
        if self.interval_seconds > 0:
            interval_ms = max(1, int(self.interval_seconds * 1000))
            if not self.client.set(f"{key}:learned", b"1", nx=True, px=interval_ms):
                return False
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(key, vector.astype(STORED_DTYPE).tobytes())
        pipe.ltrim(key, 0, self.size - 1)
        pipe.pexpire(key, max(1, int(self.ttl_seconds * 1000)))
        pipe.execute()
        return True
