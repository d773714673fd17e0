"""Person re-identification on the matching engine: today's ReidGallery answers, without reading every identity.

A sighting is matched against the process's index of the `reid` gallery (refreshed from its changes: one round trip
when nothing changed), so no lock is taken to match. Only a sighting that matches nobody takes the short create
lock, refreshes and looks again inside it ("has another worker created this person meanwhile?"), and then creates:
simultaneous first sightings of one person still make one identity. A matched identity's template is the running
mean of its last TEMPLATE_MEMORY sightings, as before; two simultaneous sightings of one identity each count, and
the later template write wins.

Keys: the engine's gallery `gallery:{reid}:*` (vectors tagged with the re-ID model's id; unnamed identities expire
REID_TTL_SECONDS after their last sighting through Gallery.expire), and beside it, as before, the identity's record
`{prefix}:identity:<id>` (hash: counts, times, name) and `{prefix}:identity:<id>:cameras` (set), which carry the
same TTL unless the identity is named, plus `{prefix}:next` (the id counter) and `{prefix}:create-lock`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import redis

from tasks.matching import Gallery, GalleryIndex, entry_id, shared_index, unit_vector
from workers.settings import ReidSettings

DEFAULTS = ReidSettings.model_construct()
TEMPLATE_MEMORY = 20
DEFAULT_MODEL_ID = "osnet_x0_25"  # until the re-ID family tags its vectors with its weights' id

SIGHTING_SCRIPT = """
-- KEYS: identity hash, cameras set; ARGV: timestamp, camera, ttl ms
local count = redis.call('HINCRBY', KEYS[1], 'sighting_count', 1)
local first = redis.call('HGET', KEYS[1], 'first_seen')
if not first or tonumber(ARGV[1]) < tonumber(first) then redis.call('HSET', KEYS[1], 'first_seen', ARGV[1]) end
local last = redis.call('HGET', KEYS[1], 'last_seen')
if not last or tonumber(ARGV[1]) > tonumber(last) then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
redis.call('SADD', KEYS[2], ARGV[2])
if redis.call('HGET', KEYS[1], 'kept') == '1' then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
"""


class ReidMatchingError(RuntimeError):
    """The gallery could not answer (the create lock was not acquired in time)."""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class IndexedReidGallery:
    """match_or_add / name / get / identities as ReidGallery offers them, over the engine's `reid` gallery."""

    def __init__(self, client: redis.Redis, threshold: float = DEFAULTS.threshold,
                 ttl_seconds: float = DEFAULTS.ttl_seconds, prefix: str = "reid", model_id: str = DEFAULT_MODEL_ID,
                 lock_timeout: float = 10.0, lock_wait: float = 10.0, index: GalleryIndex | None = None):
        self.client = client
        self.threshold = float(threshold)
        self.ttl_seconds = float(ttl_seconds)
        self.prefix = prefix
        self.model_id = model_id
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.gallery = Gallery(client, "reid" if prefix == "reid" else f"reid-{prefix}", retention_seconds=ttl_seconds)
        self.index = index if index is not None else shared_index(self.gallery)
        self._sighting = client.register_script(SIGHTING_SCRIPT)

    @classmethod
    def configured(cls, client: redis.Redis, settings: ReidSettings, model_id: str = DEFAULT_MODEL_ID
                   ) -> IndexedReidGallery:
        return cls(client, threshold=settings.threshold, ttl_seconds=settings.ttl_seconds, model_id=model_id)

    def _hash(self, identity: str) -> str:
        return f"{self.prefix}:identity:{identity}"

    def _cameras(self, identity: str) -> str:
        return f"{self.prefix}:identity:{identity}:cameras"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_seconds * 1000))

    # -- public -----------------------------------------------------------------------------------------
    def match_or_add(self, embedding: Any, camera_id: str, timestamp: float) -> dict:
        """The reid_match for this sighting: the best identity at or above the threshold, else a new one."""
        vector = unit_vector(embedding)
        found = self.index.match(vector, self.model_id, self.threshold)
        if found.outcome == "match":
            return self._sight(found.identity, found.similarity, vector, camera_id, timestamp)
        lock = self.client.lock(f"{self.prefix}:create-lock", timeout=self.lock_timeout,
                                blocking_timeout=self.lock_wait)
        if not lock.acquire():
            raise ReidMatchingError(f"re-id create lock not acquired within {self.lock_wait} s")
        try:
            found = self.index.match(vector, self.model_id, self.threshold)  # a second look inside the lock
            if found.outcome == "match":
                return self._sight(found.identity, found.similarity, vector, camera_id, timestamp)
            identity = f"person-{self.client.incr(f'{self.prefix}:next'):04d}"
            return self._sight(identity, 1.0, vector, camera_id, timestamp, new=True)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # held past lock_timeout and expired; the work above is already written

    def name(self, identity: str, name: str | None) -> None:
        """Name an identity (it is then kept: never expires) or clear its name (it expires again). KeyError if
        unknown."""
        if not self.exists(identity):
            raise KeyError(identity)
        if name:
            self.client.hset(self._hash(identity), "name", name)
            self.keep(identity)
        else:
            self.client.hdel(self._hash(identity), "name")
            self.release(identity)

    def exists(self, identity: str) -> bool:
        """Whether the identity holds a template (seen, and not expired)."""
        return bool(self.gallery.entries_of(identity))

    def keep(self, identity: str) -> None:
        """Never expire this identity (the household named it): its template, record and camera set."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._hash(identity), "kept", 1)
        pipe.persist(self._hash(identity))
        pipe.persist(self._cameras(identity))
        pipe.execute()
        self.gallery.keep(identity)

    def release(self, identity: str) -> None:
        """Let a kept identity expire again, TTL counted from now."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self._hash(identity), "kept", 0)
        pipe.pexpire(self._hash(identity), self._ttl_ms)
        pipe.pexpire(self._cameras(identity), self._ttl_ms)
        pipe.execute()
        self.gallery.release(identity)

    def get(self, identity: str) -> dict | None:
        """An identity's record (no template), or None when unknown or expired."""
        pipe = self.client.pipeline()
        pipe.hgetall(self._hash(identity))
        pipe.smembers(self._cameras(identity))
        fields, cameras = pipe.execute()
        return self._record(identity, fields, cameras) if fields else None

    def identities(self) -> list[str]:
        """Identities holding a template, sorted."""
        return self.gallery.identities()

    def expire(self, now: float | None = None) -> list[str]:
        """Forget unnamed identities unseen for the TTL (templates, records, camera sets); returns them."""
        gone = self.gallery.expire(now)
        if gone:
            self.client.delete(*[key for identity in gone for key in (self._hash(identity), self._cameras(identity))])
        return gone

    # -- internals --------------------------------------------------------------------------------------
    def _sight(self, identity: str, similarity: float, vector: np.ndarray, camera_id: str, timestamp: float,
               new: bool = False) -> dict:
        fields, cameras = self._sighting(keys=[self._hash(identity), self._cameras(identity)],
                                         args=[repr(float(timestamp)), camera_id, self._ttl_ms])
        stored = dict(zip(fields[::2], fields[1::2]))
        record = self._record(identity, stored, set(cameras))
        template = None if new else self.index.vector_of(entry_id(identity))
        if template is not None:
            weight = min(max(record["sighting_count"] - 1, 1), TEMPLATE_MEMORY)
            vector = unit_vector(template * weight + vector)
        kept = stored.get(b"kept") == b"1"
        self.gallery.put(identity, vector, self.model_id, seen_at=timestamp, expires=not kept)
        return {**record, "similarity": round(float(similarity), 4), "new": new}

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
