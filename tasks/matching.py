"""One matching engine for person re-ID, faces and vehicles: tagged unit vectors in Redis, searched in process.

A `Gallery` is the Redis side of one named set of vectors; every vector belongs to an identity and carries the id of
the model that made it. A `GalleryIndex` holds a process's copy as float32 matrices (one per model id) and keeps it
current by reading only what changed: every write bumps the gallery's version counter and records the entry's
version, so a refresh is one round trip when nothing changed and reads only the changed vectors when something did.
A query is one matrix-vector product over the vectors of its own model id (cosine similarity of unit vectors).

Keys, all under the gallery's hash tag so a Redis Cluster keeps a gallery in one slot (`gallery:{faces}:...`):
  version   INCR'd by every put and delete
  live      zset entry -> version of its last put           (what a refresh reads past its version)
  deleted   zset entry -> version of its delete (tombstones; the newest TOMBSTONES kept)
  floor     the newest tombstone version dropped: an index older than it reloads everything
  epoch     a token set by the gallery's first write: an index that saw another (Redis flushed or restored from
            an older snapshot) reloads everything, as does one whose version is ahead of the gallery's
  entries   zset of entry ids, all score 0, so one identity's entries are a lexical range ("<identity>/<slot>")
  seen      zset entry -> last sighting, only for entries that expire after the gallery's retention
  e:<entry> the packed entry: identity, model id, float32 vector
No key has a TTL: unknown identities expire through `seen` (Gallery.expire), so a gallery never loses a vector
without its version saying so.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import redis

Outcome = Literal["match", "no_match", "no_gallery", "re_enroll"]

ENTRY_MAGIC = b"GV1"
IDENTITY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
SLOT_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MODEL_ID_PATTERN = re.compile(r"[!-~]{1,200}")  # printable ASCII, no spaces
TOMBSTONES = 100_000  # deletes remembered for lagging indexes; one that falls further behind reloads
READ_CHUNK = 2_000  # entries per MGET
PUT_CHUNK = 500  # entries per put script call
SIMILARITY_DIGITS = 4
INITIAL_ROWS = 1_024

PUT_SCRIPT = """
-- KEYS: version live deleted entries seen epoch; ARGV: entry-key prefix, epoch token, then (entry, packed, seen
-- or '') per entry
redis.call('SET', KEYS[6], ARGV[2], 'NX')
local last = 0
for i = 3, #ARGV, 3 do
  local entry = ARGV[i]
  last = redis.call('INCR', KEYS[1])
  redis.call('SET', ARGV[1] .. entry, ARGV[i + 1])
  redis.call('ZADD', KEYS[2], last, entry)
  redis.call('ZREM', KEYS[3], entry)
  redis.call('ZADD', KEYS[4], 0, entry)
  if ARGV[i + 2] ~= '' then
    redis.call('ZADD', KEYS[5], ARGV[i + 2], entry)
  else
    redis.call('ZREM', KEYS[5], entry)
  end
end
return last
"""

DELETE_SCRIPT = """
-- KEYS: version live deleted entries seen floor; ARGV: entry-key prefix, tombstones kept, entries...
local removed = {}
for i = 3, #ARGV do
  local entry = ARGV[i]
  if redis.call('ZREM', KEYS[4], entry) == 1 then
    local v = redis.call('INCR', KEYS[1])
    redis.call('DEL', ARGV[1] .. entry)
    redis.call('ZREM', KEYS[2], entry)
    redis.call('ZREM', KEYS[5], entry)
    redis.call('ZADD', KEYS[3], v, entry)
    removed[#removed + 1] = entry
  end
end
local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[2])
if extra > 0 then
  local dropped = redis.call('ZRANGE', KEYS[3], extra - 1, extra - 1, 'WITHSCORES')
  redis.call('SET', KEYS[6], dropped[2])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, extra - 1)
end
return removed
"""


class GalleryError(ValueError):
    """A value the gallery refuses: a malformed identity, slot or model id, or an unusable vector."""


def unit_vector(vector: Any) -> np.ndarray:
    """The vector as a unit-length float32 array; empty, non-finite or all-zero vectors are refused."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise GalleryError("a vector must be a non-empty list of finite numbers")
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        raise GalleryError("a vector must not be all zeros")
    return array / norm


def check_identity(identity: str) -> str:
    if not isinstance(identity, str) or not IDENTITY_PATTERN.fullmatch(identity):
        raise GalleryError("an identity is 1-128 letters, digits and _.:@+- starting with a letter or digit")
    return identity


def check_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
        raise GalleryError("a model id is 1-200 printable ASCII characters without spaces")
    return model_id


def entry_id(identity: str, slot: str = "0") -> str:
    """'<identity>/<slot>': an identity holds one entry per slot (several enrolment photos, one re-ID template)."""
    if not SLOT_PATTERN.fullmatch(slot):
        raise GalleryError("a slot is 1-64 letters, digits and _.:-")
    return f"{check_identity(identity)}/{slot}"


def identity_of(entry: str) -> str:
    return entry.rsplit("/", 1)[0]


def pack_entry(identity: str, model_id: str, vector: np.ndarray) -> bytes:
    """Magic, a 2-byte header length, the JSON [identity, model id], then the vector as little-endian float32."""
    header = json.dumps([identity, model_id], separators=(",", ":")).encode()
    return ENTRY_MAGIC + len(header).to_bytes(2, "little") + header + np.asarray(vector, dtype="<f4").tobytes()


def unpack_entry(raw: bytes) -> tuple[str, str, np.ndarray]:
    """(identity, model id, float32 vector) of a packed entry; ValueError for anything else."""
    if not raw.startswith(ENTRY_MAGIC) or len(raw) < len(ENTRY_MAGIC) + 2:
        raise ValueError("not a packed gallery entry")
    start = len(ENTRY_MAGIC) + 2
    length = int.from_bytes(raw[len(ENTRY_MAGIC):start], "little")
    identity, model_id = json.loads(raw[start:start + length])
    body = raw[start + length:]
    if len(body) % 4:
        raise ValueError("packed gallery entry has a torn vector")
    return identity, model_id, np.frombuffer(body, dtype="<f4").astype(np.float32)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Match:
    """A query's answer: the outcome, and for a comparison the best identity and its cosine similarity.

    `stale` counts identities that hold vectors of other models only: they cannot be compared until re-enrolled.
    """

    outcome: Outcome
    identity: str | None = None
    similarity: float | None = None
    entry: str | None = None
    compared: int = 0
    stale: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "identity": self.identity, "similarity": self.similarity,
                "compared": self.compared, "stale": self.stale}


@dataclass(frozen=True)
class Changes:
    """What a refresh saw: the gallery's version, its tombstone floor, and the entries put or deleted since."""

    version: int
    floor: int
    epoch: str | None
    put: list[str]
    deleted: list[str]
    full: bool = False


@dataclass
class SyncStats:
    """One refresh: entries read and dropped, whether everything was reloaded, and its wall time."""

    read: int = 0
    dropped: int = 0
    full: bool = False
    ms: float = 0.0


class Gallery:
    """The Redis side of one named gallery: writes (put, delete, touch, expire) and the reads an index needs."""

    def __init__(self, client: redis.Redis, name: str, retention_seconds: float | None = None,
                 tombstones: int = TOMBSTONES):
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("a Gallery needs a client with decode_responses=False (vectors are raw float32 bytes)")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
            raise ValueError("a gallery name is 1-64 lower-case letters, digits, _ and -")
        self.client = client
        self.name = name
        self.retention_seconds = retention_seconds
        self.tombstones = tombstones
        base = f"gallery:{{{name}}}"
        parts = ("version", "live", "deleted", "entries", "seen", "floor", "epoch")
        self.keys = {part: f"{base}:{part}" for part in parts}
        self.entry_prefix = f"{base}:e:"
        self._put = client.register_script(PUT_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)

    def __repr__(self) -> str:
        return f"Gallery({self.name!r})"

    def entry_key(self, entry: str) -> str:
        return self.entry_prefix + entry

    # -- writes -------------------------------------------------------------------------------------------
    def put(self, identity: str, vector: Any, model_id: str, slot: str = "0", seen_at: float | None = None,
            expires: bool = False) -> str:
        """Store (or replace) one vector of an identity; with `expires` it is forgotten `retention_seconds` after
        its last sighting (seen_at, default now). Returns the entry id."""
        return self.put_many([(identity, vector, model_id, slot)], seen_at=seen_at, expires=expires)[0]

    def put_many(self, items: Iterable[tuple[str, Any, str, str]], seen_at: float | None = None,
                 expires: bool = False) -> list[str]:
        """put() for many (identity, vector, model id, slot) at once, a few hundred per script call."""
        if expires and self.retention_seconds is None:
            raise ValueError(f"gallery {self.name!r} has no retention; only kept entries can be stored")
        seen = repr(float(time.time() if seen_at is None else seen_at)) if expires else ""
        written: list[str] = []
        batch: list[str | bytes] = []
        for identity, vector, model_id, slot in items:
            entry = entry_id(identity, slot)
            batch += [entry, pack_entry(identity, check_model_id(model_id), unit_vector(vector)), seen]
            written.append(entry)
            if len(batch) >= 3 * PUT_CHUNK:
                self._run_put(batch)
                batch = []
        if batch:
            self._run_put(batch)
        return written

    def _run_put(self, batch: list[str | bytes]) -> None:
        keys = [self.keys[k] for k in ("version", "live", "deleted", "entries", "seen", "epoch")]
        self._put(keys=keys, args=[self.entry_prefix, uuid.uuid4().hex, *batch])

    def delete(self, entries: Iterable[str]) -> list[str]:
        """Remove entries (unknown ones are ignored); returns those removed."""
        entries = list(entries)
        if not entries:
            return []
        keys = [self.keys[k] for k in ("version", "live", "deleted", "entries", "seen", "floor")]
        removed = self._delete(keys=keys, args=[self.entry_prefix, self.tombstones, *entries])
        return [_text(e) for e in removed]

    def delete_identity(self, identity: str) -> list[str]:
        """Remove every vector of an identity; returns the entries removed."""
        return self.delete(self.entries_of(identity))

    def touch(self, entries: Iterable[str], seen_at: float | None = None) -> None:
        """Push back the expiry of entries that expire (a sighting); kept entries are left as they are."""
        when = float(time.time() if seen_at is None else seen_at)
        mapping = {entry: when for entry in entries}
        if mapping:
            self.client.zadd(self.keys["seen"], mapping, xx=True, gt=True)

    def keep(self, identity: str) -> None:
        """Never expire this identity's entries (it was named, or enrolled)."""
        entries = self.entries_of(identity)
        if entries:
            self.client.zrem(self.keys["seen"], *entries)

    def release(self, identity: str, seen_at: float | None = None) -> None:
        """Let a kept identity's entries expire again, counting from seen_at (default now)."""
        if self.retention_seconds is None:
            raise ValueError(f"gallery {self.name!r} has no retention; its entries are always kept")
        when = float(time.time() if seen_at is None else seen_at)
        entries = self.entries_of(identity)
        if entries:
            self.client.zadd(self.keys["seen"], dict.fromkeys(entries, when))

    def expire(self, now: float | None = None, limit: int = 10_000) -> list[str]:
        """Delete expiring entries not seen within the retention; returns the identities left with no entry."""
        if self.retention_seconds is None:
            return []
        cutoff = float(time.time() if now is None else now) - self.retention_seconds
        stale = [_text(e) for e in self.client.zrangebyscore(self.keys["seen"], "-inf", cutoff, start=0, num=limit)]
        removed = self.delete(stale)
        identities = sorted({identity_of(e) for e in removed})
        return [identity for identity in identities if not self.entries_of(identity)]

    # -- reads --------------------------------------------------------------------------------------------
    def entries_of(self, identity: str) -> list[str]:
        """The entry ids of one identity."""
        prefix = f"{check_identity(identity)}/"
        found = self.client.zrangebylex(self.keys["entries"], f"[{prefix}", f"({prefix[:-1]}0")  # '0' follows '/'
        return [_text(e) for e in found]

    def identities(self) -> list[str]:
        """Every identity with at least one entry, sorted."""
        return sorted({identity_of(_text(e)) for e in self.client.zrange(self.keys["entries"], 0, -1)})

    def count(self) -> int:
        return int(self.client.zcard(self.keys["entries"]))

    def changes_since(self, version: int | None) -> Changes:
        """One consistent snapshot (MULTI) of what changed after `version`; everything when version is None."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys["version"])
        pipe.get(self.keys["floor"])
        pipe.get(self.keys["epoch"])
        if version is None:
            pipe.zrange(self.keys["live"], 0, -1)
        else:
            pipe.zrangebyscore(self.keys["live"], f"({version}", "+inf")
            pipe.zrangebyscore(self.keys["deleted"], f"({version}", "+inf")
        current, floor, epoch, put, *deleted = pipe.execute()
        return Changes(version=int(current or 0), floor=int(float(floor or 0)),
                       epoch=_text(epoch) if epoch is not None else None, put=[_text(e) for e in put],
                       deleted=[_text(e) for e in (deleted[0] if deleted else [])], full=version is None)

    def read(self, entries: list[str]) -> Iterator[tuple[str, tuple[str, str, np.ndarray] | None]]:
        """(entry, (identity, model id, vector)) for each entry, None where it is gone, READ_CHUNK per MGET."""
        for start in range(0, len(entries), READ_CHUNK):
            chunk = entries[start:start + READ_CHUNK]
            for entry, raw in zip(chunk, self.client.mget([self.entry_key(e) for e in chunk])):
                yield entry, (unpack_entry(raw) if raw is not None else None)


@dataclass
class VectorBlock:
    """The vectors of one model id as rows of a float32 matrix; deleted rows are recycled."""

    dim: int
    matrix: np.ndarray = field(init=False, repr=False)
    alive: np.ndarray = field(init=False, repr=False)
    entries: list[str | None] = field(default_factory=list, repr=False)
    rows: dict[str, int] = field(default_factory=dict, repr=False)
    free: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((INITIAL_ROWS, self.dim), dtype=np.float32)
        self.alive = np.zeros(INITIAL_ROWS, dtype=bool)

    def __len__(self) -> int:
        return len(self.rows)

    def put(self, entry: str, vector: np.ndarray) -> None:
        row = self.rows.get(entry)
        if row is None:
            row = self.free.pop() if self.free else self._append(entry)
            self.rows[entry] = row
            self.entries[row] = entry
        self.matrix[row] = vector
        self.alive[row] = True

    def _append(self, entry: str) -> int:
        row = len(self.entries)
        if row == len(self.matrix):
            grown = np.zeros((2 * len(self.matrix), self.dim), dtype=np.float32)
            grown[:row] = self.matrix
            alive = np.zeros(2 * len(self.matrix), dtype=bool)
            alive[:row] = self.alive
            self.matrix, self.alive = grown, alive
        self.entries.append(entry)
        return row

    def drop(self, entry: str) -> bool:
        row = self.rows.pop(entry, None)
        if row is None:
            return False
        self.alive[row] = False
        self.matrix[row] = 0.0
        self.entries[row] = None
        self.free.append(row)
        return True

    def best(self, query: np.ndarray) -> tuple[str, float]:
        """The entry most similar to a unit query, and the similarity."""
        used = len(self.entries)
        # einsum's own single-threaded loop, not BLAS: a threaded sgemv on a busy host waits for its second thread
        # (measured 8 ms for 2,000 rows with another process on the other core, against 0.2 ms here).
        similarities = np.einsum("ij,j->i", self.matrix[:used], query)
        if self.free:
            similarities = np.where(self.alive[:used], similarities, -np.inf)
        row = int(np.argmax(similarities))
        return self.entries[row], float(similarities[row])  # type: ignore[return-value]


class GalleryIndex:
    """A process's in-memory copy of a gallery, refreshed from its changes; answers match queries."""

    def __init__(self, gallery: Gallery):
        self.gallery = gallery
        self.version: int | None = None  # None: never loaded
        self.epoch: str | None = None
        self.blocks: dict[str, VectorBlock] = {}
        self.where: dict[str, str] = {}  # entry -> model id
        self.models_of: dict[str, Counter[str]] = {}  # identity -> entries per model id
        self.identities_with: Counter[str] = Counter()  # model id -> identities holding at least one entry of it
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"GalleryIndex({self.gallery.name!r}, version={self.version}, entries={len(self.where)})"

    def __len__(self) -> int:
        return len(self.where)

    # -- keeping current ------------------------------------------------------------------------------------
    def refresh(self) -> SyncStats:
        """Read what changed since the last refresh (one round trip when nothing did); all when too far behind."""
        started = time.perf_counter()
        with self.lock:
            changes = self.gallery.changes_since(self.version)
            if not changes.full and self._lost_track(changes):
                changes = self.gallery.changes_since(None)
            stats = self._apply(changes)
        stats.ms = (time.perf_counter() - started) * 1000.0
        return stats

    def _lost_track(self, changes: Changes) -> bool:
        """Changes since our version cannot be trusted to bring us current: reload everything."""
        behind_tombstones = changes.floor > (self.version or 0)
        another_gallery = changes.epoch != self.epoch or changes.version < (self.version or 0)
        return behind_tombstones or another_gallery

    def _apply(self, changes: Changes) -> SyncStats:
        stats = SyncStats(full=changes.full)
        if changes.full:
            self.blocks, self.where, self.models_of, self.identities_with = {}, {}, {}, Counter()
        for entry in changes.deleted:
            stats.dropped += self._drop(entry)
        for entry, value in self.gallery.read(changes.put):
            if value is None:  # deleted after the snapshot: its tombstone arrives with the next refresh
                stats.dropped += self._drop(entry)
                continue
            identity, model_id, vector = value
            self._put(entry, identity, model_id, vector)
            stats.read += 1
        self.version = changes.version
        self.epoch = changes.epoch
        return stats

    def _put(self, entry: str, identity: str, model_id: str, vector: np.ndarray) -> None:
        if self.where.get(entry) not in (None, model_id):
            self._drop(entry)
        block = self.blocks.get(model_id)
        if block is None:
            block = self.blocks[model_id] = VectorBlock(len(vector))
        if len(vector) != block.dim:
            raise ValueError(f"gallery {self.gallery.name!r}: model {model_id!r} vectors are {block.dim}-d, "
                             f"entry {entry!r} is {len(vector)}-d")
        if entry not in self.where:
            models = self.models_of.setdefault(identity, Counter())
            if models[model_id] == 0:
                self.identities_with[model_id] += 1
            models[model_id] += 1
        block.put(entry, vector)
        self.where[entry] = model_id

    def _drop(self, entry: str) -> int:
        model_id = self.where.pop(entry, None)
        if model_id is None:
            return 0
        self.blocks[model_id].drop(entry)
        identity = identity_of(entry)
        models = self.models_of[identity]
        models[model_id] -= 1
        if models[model_id] == 0:
            del models[model_id]
            self.identities_with[model_id] -= 1
        if not models:
            del self.models_of[identity]
        return 1

    def vector_of(self, entry: str) -> np.ndarray | None:
        """A copy of one entry's stored vector as of the last refresh, or None."""
        with self.lock:
            model_id = self.where.get(entry)
            if model_id is None:
                return None
            block = self.blocks[model_id]
            return block.matrix[block.rows[entry]].copy()

    # -- answering ----------------------------------------------------------------------------------------
    def match(self, vector: Any, model_id: str, threshold: float, refresh: bool = True) -> Match:
        """The best identity for a vector among vectors of the same model id (refreshing first, by default).

        no_gallery: the gallery is empty; re_enroll: it holds only other models' vectors (never compared);
        match: the best cosine similarity reaches the threshold; no_match otherwise.
        """
        query = unit_vector(vector)
        if refresh:
            self.refresh()
        with self.lock:
            if not self.where:
                return Match("no_gallery")
            stale = len(self.models_of) - self.identities_with.get(model_id, 0)
            block = self.blocks.get(model_id)
            if block is None or not len(block):
                return Match("re_enroll", stale=stale)
            if len(query) != block.dim:
                raise GalleryError(f"a {model_id!r} vector has {block.dim} numbers, this one {len(query)}")
            entry, similarity = block.best(query)
        found = identity_of(entry)
        rounded = round(similarity, SIMILARITY_DIGITS)
        if similarity >= threshold:
            return Match("match", found, rounded, entry, compared=len(block), stale=stale)
        return Match("no_match", found, rounded, entry, compared=len(block), stale=stale)


_SHARED: dict[tuple[str, str], GalleryIndex] = {}
_SHARED_LOCK = threading.Lock()


def shared_index(gallery: Gallery) -> GalleryIndex:
    """This process's one index of a gallery (per Redis server and database), made on first use and kept: a
    task that builds its Gallery per event still searches an index that is only refreshed, never reloaded."""
    where = gallery.client.get_connection_kwargs()
    key = (f"{where.get('host') or where.get('path')}:{where.get('port')}/{where.get('db', 0)}", gallery.name)
    with _SHARED_LOCK:
        index = _SHARED.get(key)
        if index is None:
            index = _SHARED[key] = GalleryIndex(gallery)
        return index
