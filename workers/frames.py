"""Frames in Redis, written once per event by the router and read by reference by model tasks."""

from __future__ import annotations

import threading
from collections import OrderedDict

import redis
from PIL import Image

from workers.images import decode_image
from workers.redis_writes import queued


def frame_key(event_id: str) -> str:
    return f"frame:{event_id}:full"


def buffer_key(event_id: str, index: int) -> str:
    return f"frame:{event_id}:buf:{index}"


class FrameStore:
    """Encoded frame bytes under frame:<event_id>:* with a TTL; deleted once the event is assembled."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl_seconds = ttl_seconds

    def put_many(self, frames: dict[str, bytes], pipe: redis.client.Pipeline | None = None) -> None:
        """SET each key to its bytes with the frame TTL, in one round trip; into `pipe` (the caller executes it)
        when given."""
        if not frames:
            return
        with queued(self.client, pipe, transaction=False) as writes:
            for key, data in frames.items():
                writes.set(key, data, ex=self.ttl_seconds)

    def get(self, key: str) -> bytes | None:
        return self.client.get(key)

    def delete(self, keys: list[str], pipe: redis.client.Pipeline | None = None) -> None:
        """Delete the keys (into `pipe`, executed by the caller, when given)."""
        if keys:
            (pipe if pipe is not None else self.client).delete(*keys)


class DecodedFrames:
    """A worker's small LRU of decoded frames, so the models of one event read and decode the frame once.

    Thread-safe and single-flight: when an event's models ask for a frame at the same moment (a threads pool),
    the first reads and decodes it while the others wait for that answer instead of reading it again.
    """

    def __init__(self, store: FrameStore | None, max_pixels: int, capacity: int = 8):
        self.store = store
        self.max_pixels = max_pixels
        self.capacity = capacity
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self._reading: dict[str, threading.Lock] = {}
        self.bytes_read = 0

    def get(self, key: str) -> Image.Image:
        image = self._cached(key)
        if image is not None:
            return image
        with self._lock:
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:  # one reader per key; the others find its answer in the cache
            image = self._cached(key)
            if image is None:
                image = self.remember(key, self._read(key))
        with self._lock:
            self._reading.pop(key, None)
        return image

    def _cached(self, key: str) -> Image.Image | None:
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                self._images.move_to_end(key)
            return image

    def _read(self, key: str) -> Image.Image:
        data = self.store.get(key) if self.store is not None else None
        if data is None:
            raise LookupError(f"frame {key} is gone from Redis (expired or already assembled)")
        with self._lock:
            self.bytes_read += len(data)
        return decode_image(key, data, self.max_pixels)

    def remember(self, key: str, image: Image.Image) -> Image.Image:
        """Keep an already decoded frame under its key (the direct pipeline hands its frames over this way)."""
        with self._lock:
            self._images[key] = image
            self._images.move_to_end(key)
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return image
