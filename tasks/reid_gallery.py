"""Re-identification gallery in Redis: match a person embedding to a known identity, or register a new one."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from workers.settings import ReidSettings

DEFAULTS = ReidSettings.model_construct()  # the documented defaults, without reading the environment
# The stored template is a running mean over at most this many sightings, so it follows slow changes
# (a coat taken off) instead of being frozen by a long history.
TEMPLATE_MEMORY = 20


class ReidGalleryError(RuntimeError):
    """The gallery could not answer (lock not acquired in time)."""


def normalised(embedding: Any) -> np.ndarray:
    """The embedding as a unit float32 vector; empty, non-finite or zero vectors are refused."""
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.size == 0 or not np.all(np.isfinite(vector)):
        raise ValueError("embedding must be a non-empty list of finite numbers")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("embedding is all zeros")
    return vector / norm


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class ReidGallery:
    """Identities as Redis hashes (float32 template, counts, times) with a camera set and a zset index.

    Keys: {prefix}:index (zset identity -> last seen), {prefix}:identity:<id> (hash),
    {prefix}:identity:<id>:cameras (set), {prefix}:next (id counter), {prefix}:lock (match-or-create lock).
    Every sighting refreshes the identity's TTL; index entries whose hash has expired are pruned on the next scan.
    """

    def __init__(
        self,
        client: redis.Redis,
        threshold: float = DEFAULTS.threshold,
        ttl_seconds: float = DEFAULTS.ttl_seconds,
        prefix: str = "reid",
        lock_timeout: float = 10.0,
        lock_wait: float = 10.0,
    ):
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("ReidGallery needs a client with decode_responses=False (templates are raw float32 bytes)")
        self.client = client
        self.threshold = float(threshold)
        self.ttl_seconds = float(ttl_seconds)
        self.prefix = prefix
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait

    @classmethod
    def configured(cls, client: redis.Redis, settings: ReidSettings) -> ReidGallery:
        """The gallery with REID_THRESHOLD and REID_TTL_SECONDS from the pool's settings."""
        return cls(client, threshold=settings.threshold, ttl_seconds=settings.ttl_seconds)

    # -- keys -------------------------------------------------------------------------------------------

    @property
    def _index(self) -> str:
        return f"{self.prefix}:index"

    def _hash(self, identity: str) -> str:
        return f"{self.prefix}:identity:{identity}"

    def _cameras(self, identity: str) -> str:
        return f"{self.prefix}:identity:{identity}:cameras"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_seconds * 1000))

    # -- public -----------------------------------------------------------------------------------------

    def match_or_add(self, embedding: list[float], camera_id: str, timestamp: float) -> dict:
        """The reid_match for this sighting: the best identity at or above the threshold, else a new one.

        Match and create run under one Redis lock, so simultaneous sightings of one person never make two
        identities and every sighting is counted.
        """
        vector = normalised(embedding)
        lock = self.client.lock(f"{self.prefix}:lock", timeout=self.lock_timeout, blocking_timeout=self.lock_wait)
        if not lock.acquire():
            raise ReidGalleryError(f"re-id gallery lock not acquired within {self.lock_wait} s")
        try:
            identity, similarity, template = self._best_match(vector)
            if identity is None:
                return self._create(vector, camera_id, timestamp)
            return self._record_sighting(identity, similarity, template, vector, camera_id, timestamp)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # held past lock_timeout and expired; the work above is already written

    def name(self, identity: str, name: str | None) -> None:
        """Give an identity a human name (None or "" clears it); refreshes its TTL. KeyError if unknown."""
        key = self._hash(identity)
        if not self.client.exists(key):
            raise KeyError(identity)
        pipe = self.client.pipeline()
        if name:
            pipe.hset(key, "name", name)
        else:
            pipe.hdel(key, "name")
        pipe.pexpire(key, self._ttl_ms)
        pipe.pexpire(self._cameras(identity), self._ttl_ms)
        pipe.execute()

    def get(self, identity: str) -> dict | None:
        """An identity's record (no template), or None when unknown or expired."""
        pipe = self.client.pipeline()
        pipe.hgetall(self._hash(identity))
        pipe.smembers(self._cameras(identity))
        fields, cameras = pipe.execute()
        if not fields:
            return None
        return self._record(identity, fields, cameras)

    def identities(self) -> list[str]:
        """Live identities, most recently seen first (expired ones are pruned from the index)."""
        members = [_text(m) for m in self.client.zrevrange(self._index, 0, -1)]
        pipe = self.client.pipeline()
        for identity in members:
            pipe.exists(self._hash(identity))
        alive = pipe.execute()
        dead = [m for m, ok in zip(members, alive) if not ok]
        if dead:
            self.client.zrem(self._index, *dead)
        return [m for m, ok in zip(members, alive) if ok]

    # -- under the lock ---------------------------------------------------------------------------------

    def _best_match(self, vector: np.ndarray) -> tuple[str | None, float, np.ndarray | None]:
        """The most similar live identity of the same embedding size, if it clears the threshold."""
        members = [_text(m) for m in self.client.zrange(self._index, 0, -1)]
        pipe = self.client.pipeline()
        for identity in members:
            pipe.hget(self._hash(identity), "embedding")
        stored = pipe.execute()
        expired = [m for m, raw in zip(members, stored) if raw is None]
        if expired:
            self.client.zrem(self._index, *expired)
        candidates = [(m, np.frombuffer(raw, dtype="<f4")) for m, raw in zip(members, stored) if raw is not None]
        candidates = [(m, t) for m, t in candidates if t.shape == vector.shape]
        if not candidates:
            return None, 0.0, None
        similarities = np.stack([t for _, t in candidates]) @ vector
        best = int(np.argmax(similarities))
        similarity = float(similarities[best])
        if similarity < self.threshold:
            return None, similarity, None
        return candidates[best][0], similarity, candidates[best][1]

    def _create(self, vector: np.ndarray, camera_id: str, timestamp: float) -> dict:
        identity = f"person-{self.client.incr(f'{self.prefix}:next'):04d}"
        key, cameras = self._hash(identity), self._cameras(identity)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={
            "embedding": vector.astype("<f4").tobytes(),
            "sighting_count": 1,
            "first_seen": repr(float(timestamp)),
            "last_seen": repr(float(timestamp)),
        })
        pipe.sadd(cameras, camera_id)
        pipe.pexpire(key, self._ttl_ms)
        pipe.pexpire(cameras, self._ttl_ms)
        pipe.zadd(self._index, {identity: float(timestamp)})
        pipe.hgetall(key)
        pipe.smembers(cameras)
        *_, fields, members = pipe.execute()
        return {**self._record(identity, fields, members), "similarity": 1.0, "new": True}

    def _record_sighting(
        self, identity: str, similarity: float, template: np.ndarray, vector: np.ndarray, camera_id: str, timestamp: float
    ) -> dict:
        key, cameras = self._hash(identity), self._cameras(identity)
        count_raw, first_raw, last_raw = self.client.hmget(key, "sighting_count", "first_seen", "last_seen")
        weight = min(int(count_raw or 1), TEMPLATE_MEMORY)
        updated = normalised(template * weight + vector)
        first_seen = min(float(first_raw or timestamp), float(timestamp))
        last_seen = max(float(last_raw or timestamp), float(timestamp))
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(key, "sighting_count", 1)
        pipe.hset(key, mapping={
            "embedding": updated.astype("<f4").tobytes(),
            "first_seen": repr(first_seen),
            "last_seen": repr(last_seen),
        })
        pipe.sadd(cameras, camera_id)
        pipe.pexpire(key, self._ttl_ms)
        pipe.pexpire(cameras, self._ttl_ms)
        pipe.zadd(self._index, {identity: last_seen})
        pipe.hgetall(key)
        pipe.smembers(cameras)
        *_, fields, members = pipe.execute()
        return {**self._record(identity, fields, members), "similarity": round(similarity, 4), "new": False}

    @staticmethod
    def _record(identity: str, fields: dict, cameras: set) -> dict:
        fields = {_text(k): v for k, v in fields.items()}
        return {
            "identity": identity,
            "name": _text(fields.get("name")),
            "sighting_count": int(fields.get("sighting_count", 0)),
            "cameras": sorted(_text(c) for c in cameras),
            "first_seen": float(fields["first_seen"]) if "first_seen" in fields else None,
            "last_seen": float(fields["last_seen"]) if "last_seen" in fields else None,
        }
