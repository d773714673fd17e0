"""The backend's client: submit detection events, wait for their results, read the completion feed; sync and asyncio.

Importing it needs celery, redis and pydantic, and this repository's pure modules (tasks.contract, the section
shapes in prompt_formatting, workers.records): no torch, no model code, no task code. It sends `enrich_detection`
by name to the public queue "router", never to Celery's default queue.

A frame given inline (`image`: base64) is carried once: the client stores its bytes at frame-upload:<uuid> (TTL
`upload_ttl_seconds`) and sends the event by `image_key`; the pool reads the frame there and deletes it with the
event's own frames. A frame the backend already keeps in Redis (`image_key`) is sent as it is.

The Redis URL's password (redis://:password@host) and TLS (rediss://) are honoured, and `password=` adds one to a
URL that carries none (as REDIS_PASSWORD does for the pool). For rediss://, `ssl` takes redis-py's ssl_* options
(default: the server's certificate is verified against the system's CAs).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import ssl as ssl_module
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import Celery
from celery.result import AsyncResult

from tasks.contract import (
    COMPLETION_STREAM,
    UPLOAD_KEY_PREFIX,
    EnrichmentResult,
    result_key,
    wake_key,
)
from workers.redis_urls import with_password

ROUTER_QUEUE = "router"
TASK_NAME = "enrich_detection"
DEFAULT_UPLOAD_TTL_SECONDS = 900  # the pool's FRAME_TTL_SECONDS default: an upload outlives no event


class EnrichmentFailed(RuntimeError):
    """The pool's task failed (not a rejection: a rejection is a result whose status is "rejected")."""


def ssl_options(url: str, ssl: dict[str, Any] | None) -> dict[str, Any]:
    """redis-py's ssl_* options for a rediss:// URL (verification required unless told otherwise); {} for redis://."""
    if not url.startswith("rediss://"):
        return {}
    return {"ssl_cert_reqs": ssl_module.CERT_REQUIRED} | dict(ssl or {})


def client_app(redis_url: str, ssl: dict[str, Any] | None = None) -> Celery:
    """A thin Celery app that only sends tasks by name (no task code imported), JSON only."""
    app = Celery("model_zoo_client", broker=redis_url, backend=redis_url)
    options = ssl_options(redis_url, ssl)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        broker_connection_retry_on_startup=True, result_extended=True,
        # the task's body as JSON text in the message, not base64 of it (a third fewer bytes through Redis)
        broker_transport_options={"body_encoding": None},
        **({"broker_use_ssl": options, "redis_backend_use_ssl": options} if options else {}),
    )
    return app


def handed_over(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The event with every inline frame replaced by an upload key, and the bytes to store under those keys.

    A frame whose base64 does not decode is left inline: the pool then rejects it, naming the field.
    """
    uploads: dict[str, bytes] = {}

    def by_key(source: dict[str, Any]) -> dict[str, Any]:
        image = source.get("image")
        if not isinstance(image, str) or source.get("image_key") is not None or source.get("image_path") is not None:
            return source
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            return source
        key = f"{UPLOAD_KEY_PREFIX}{uuid.uuid4().hex}"
        uploads[key] = data
        return {name: value for name, value in source.items() if name != "image"} | {"image_key": key}

    if not isinstance(event, dict):
        return event, uploads
    sent = by_key(event)
    frames = event.get("frames")
    if isinstance(frames, list):
        sent = dict(sent, frames=[by_key(f) if isinstance(f, dict) else f for f in frames])
    return sent, uploads


def _task_options(event: Any, task_id: str) -> dict[str, Any]:
    given = event.get("event_id") if isinstance(event, dict) else None
    return {"queue": ROUTER_QUEUE, "task_id": task_id, "argsrepr": f"(event {str(given)[:64]!r})", "kwargsrepr": "{}"}


def celery_outcome(raw: bytes | str | None) -> dict[str, Any] | None:
    """The task's result from Celery's stored meta: None while it runs; raises EnrichmentFailed for a failure."""
    if raw is None:
        return None
    meta = json.loads(raw)
    if meta.get("status") == "SUCCESS":
        return meta["result"]
    if meta.get("status") in ("FAILURE", "REVOKED"):
        raise EnrichmentFailed(f"{meta.get('status')}: {meta.get('result')}")
    return None


def celery_meta_key(task_id: str) -> str:
    return f"celery-task-meta-{task_id}"


def typed(result: dict[str, Any]) -> EnrichmentResult:
    """A stored result as the contract's typed model (tasks.contract.EnrichmentResult)."""
    return EnrichmentResult.model_validate(result)


# -- the completion feed -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Completion:
    """One entry of the completion stream: which event finished, how, and where its result is."""

    entry_id: str
    event_id: str
    status: str
    result_key: str
    schema_version: str
    submitted_event_id: str | None = None  # a rejection's: the id it was submitted under
    revision: int = 1  # 2: the stored result was rewritten with the risk call's answer

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[Any, Any]) -> Completion:
        text = {_text(k): _text(v) for k, v in fields.items()}
        return cls(entry_id=_text(entry_id), event_id=text["event_id"], status=text["status"],
                   result_key=text["result_key"], schema_version=text.get("schema_version", ""),
                   submitted_event_id=text.get("submitted_event_id"), revision=int(text.get("revision", 1)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry_ids(completions: Iterable[Completion | str]) -> list[str]:
    return [c.entry_id if isinstance(c, Completion) else c for c in completions]


class _FeedState:
    """What both feeds share: the group, this consumer, and whether its own unacknowledged entries are still to
    be read again (after a restart, XREADGROUP from 0 hands back what this consumer took and never acknowledged)."""

    def __init__(self, group: str, consumer: str, start: str):
        self.group, self.consumer, self.start = group, consumer, start
        self.backlog = True

    def parse(self, reply: Any) -> tuple[list[Completion], list[str]]:
        """Completions, and the ids of entries trimmed from the stream while pending (acknowledged as gone)."""
        found, gone = [], []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields:
                    found.append(Completion.from_entry(entry_id, fields))
                else:
                    gone.append(_text(entry_id))
        return found, gone


class CompletionFeed:
    """The completion stream read with a consumer group: every result and rejection once per group, acknowledged.

    `read()` first hands back this consumer's own entries that were read and not acknowledged before (a backend
    that restarted), then new ones. Acknowledge each entry once it is handled; what is not acknowledged is read
    again after a restart, and `claim_stale()` takes over the entries of a consumer that is gone.
    """

    def __init__(self, client: redis.Redis, group: str, consumer: str, start: str = "0"):
        self.client = client
        self.state = _FeedState(group, consumer, start)
        self.ensure_group()

    def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists; a new group starts at `start` ("0": everything
        the stream still holds, "$": only what comes next)."""
        try:
            self.client.xgroup_create(COMPLETION_STREAM, self.state.group, id=self.state.start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 100, block_ms: int | None = 5000) -> list[Completion]:
        state = self.state
        if state.backlog:
            found, gone = state.parse(self.client.xreadgroup(state.group, state.consumer, {COMPLETION_STREAM: "0"},
                                                             count=count))
            if gone:
                self.ack(gone)
            if found or gone:
                return found
            state.backlog = False
        found, _ = state.parse(self.client.xreadgroup(state.group, state.consumer, {COMPLETION_STREAM: ">"},
                                                      count=count, block=block_ms))
        return found

    def ack(self, completions: Iterable[Completion | str]) -> int:
        ids = _entry_ids(completions)
        return int(self.client.xack(COMPLETION_STREAM, self.state.group, *ids)) if ids else 0

    def claim_stale(self, min_idle_ms: int, count: int = 100) -> list[Completion]:
        """Take over entries another consumer of the group read and left unacknowledged for min_idle_ms."""
        _next, entries, *_ = self.client.xautoclaim(COMPLETION_STREAM, self.state.group, self.state.consumer,
                                                    min_idle_ms, count=count)
        found, gone = self.state.parse([(COMPLETION_STREAM, entries)])
        if gone:
            self.ack(gone)
        return found

    def pending(self) -> int:
        """Entries of the group read by some consumer and not yet acknowledged."""
        return int(self.client.xpending(COMPLETION_STREAM, self.state.group)["pending"])

    def result(self, completion: Completion) -> dict[str, Any] | None:
        raw = self.client.get(completion.result_key)
        return json.loads(raw) if raw else None


class AsyncCompletionFeed:
    """CompletionFeed over redis.asyncio: `await feed.ensure_group()` once, then `await feed.read()`, `ack()`."""

    def __init__(self, client: aioredis.Redis, group: str, consumer: str, start: str = "0"):
        self.client = client
        self.state = _FeedState(group, consumer, start)

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(COMPLETION_STREAM, self.state.group, id=self.state.start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int = 100, block_ms: int | None = 5000) -> list[Completion]:
        state = self.state
        if state.backlog:
            reply = await self.client.xreadgroup(state.group, state.consumer, {COMPLETION_STREAM: "0"}, count=count)
            found, gone = state.parse(reply)
            if gone:
                await self.ack(gone)
            if found or gone:
                return found
            state.backlog = False
        reply = await self.client.xreadgroup(state.group, state.consumer, {COMPLETION_STREAM: ">"}, count=count,
                                             block=block_ms)
        return state.parse(reply)[0]

    async def ack(self, completions: Iterable[Completion | str]) -> int:
        ids = _entry_ids(completions)
        return int(await self.client.xack(COMPLETION_STREAM, self.state.group, *ids)) if ids else 0

    async def result(self, completion: Completion) -> dict[str, Any] | None:
        raw = await self.client.get(completion.result_key)
        return json.loads(raw) if raw else None


# -- the clients ---------------------------------------------------------------------------------------------
class EnrichmentClient:
    """Submit detection events and read their results (synchronous)."""

    def __init__(self, redis_url: str, *, password: str | None = None, ssl: dict[str, Any] | None = None,
                 upload_frames: bool = True, upload_ttl_seconds: int = DEFAULT_UPLOAD_TTL_SECONDS):
        self.url = with_password(redis_url, password)
        self.app = client_app(self.url, ssl)
        self.redis = redis.Redis.from_url(self.url, **ssl_options(self.url, ssl))
        self.upload_frames = upload_frames  # False: inline frames travel in the message (the pool stores them)
        self.upload_ttl_seconds = upload_ttl_seconds

    def submit(self, event: dict[str, Any]) -> AsyncResult:
        """Send the event to the router queue (its inline frames uploaded first); `.id` is the task id."""
        sent, uploads = handed_over(event) if self.upload_frames else (event, {})
        if uploads:
            with self.redis.pipeline(transaction=False) as pipe:
                for key, data in uploads.items():
                    pipe.set(key, data, ex=self.upload_ttl_seconds)
                pipe.execute()
        task_id = str(uuid.uuid4())
        pending = self.app.send_task(TASK_NAME, args=[sent], **_task_options(event, task_id))
        self.redis.lpush(wake_key(ROUTER_QUEUE), 1)  # an idle router takes it now, not at its next look
        return pending

    def wait(self, pending: AsyncResult | str, timeout: float = 120) -> dict[str, Any]:
        """The submission's answer: its stored result, a rejection naming the field, or the original's result for
        a duplicate id. Raises TimeoutError, or EnrichmentFailed when the task itself failed."""
        pending = pending if isinstance(pending, AsyncResult) else self.app.AsyncResult(pending)
        try:
            return pending.get(timeout=timeout)
        except Exception as exc:  # celery raises its TimeoutError and the task's own exception type
            if type(exc).__name__ == "TimeoutError":
                raise TimeoutError(f"no result for task {pending.id} within {timeout} s") from None
            raise EnrichmentFailed(f"{type(exc).__name__}: {exc}") from exc

    def enrich(self, event: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        """Submit and wait: the stored result (or the rejection)."""
        return self.wait(self.submit(event), timeout=timeout)

    def stored(self, event_id: str) -> dict[str, Any] | None:
        """What redis-cli GET enrichment:<event_id> shows (None when nothing is stored)."""
        raw = self.redis.get(result_key(event_id))
        return json.loads(raw) if raw else None

    result = stored

    def feed(self, group: str, consumer: str, start: str = "0") -> CompletionFeed:
        """The completion stream for consumer group `group`, read as `consumer` (see CompletionFeed)."""
        return CompletionFeed(self.redis, group, consumer, start)

    def loaded_models(self, timeout: float = 2.0) -> dict[str, dict[str, Any]]:
        """Each worker's reply to the loaded_models remote-control command, by node name."""
        replies = self.app.control.broadcast("loaded_models", reply=True, timeout=timeout) or []
        return {worker: state for reply in replies for worker, state in reply.items()}

    def close(self) -> None:
        self.redis.close()
        self.app.close()


class AsyncEnrichmentClient:
    """The same calls for asyncio: Redis through redis.asyncio; the task message is published by Celery's own
    producer in a worker thread (kombu has no asyncio publisher)."""

    def __init__(self, redis_url: str, *, password: str | None = None, ssl: dict[str, Any] | None = None,
                 upload_frames: bool = True, upload_ttl_seconds: int = DEFAULT_UPLOAD_TTL_SECONDS):
        self.url = with_password(redis_url, password)
        self.app = client_app(self.url, ssl)
        self.redis = aioredis.Redis.from_url(self.url, **ssl_options(self.url, ssl))
        self.upload_frames = upload_frames
        self.upload_ttl_seconds = upload_ttl_seconds

    async def submit(self, event: dict[str, Any]) -> str:
        """Send the event to the router queue (its inline frames uploaded first); returns the task id."""
        sent, uploads = handed_over(event) if self.upload_frames else (event, {})
        if uploads:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, data in uploads.items():
                    pipe.set(key, data, ex=self.upload_ttl_seconds)
                await pipe.execute()
        task_id = str(uuid.uuid4())
        await asyncio.to_thread(self.app.send_task, TASK_NAME, args=[sent], **_task_options(event, task_id))
        await self.redis.lpush(wake_key(ROUTER_QUEUE), 1)
        return task_id

    async def wait(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        """The submission's answer (as EnrichmentClient.wait): Celery's stored task result, awaited on its channel."""
        key = celery_meta_key(task_id)
        deadline = time.monotonic() + timeout
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(key)  # before the first look: nothing stored in between is missed
            while True:
                outcome = celery_outcome(await self.redis.get(key))
                if outcome is not None:
                    return outcome
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no result for task {task_id} within {timeout} s")
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))

    async def enrich(self, event: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        return await self.wait(await self.submit(event), timeout=timeout)

    async def stored(self, event_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(result_key(event_id))
        return json.loads(raw) if raw else None

    result = stored

    async def feed(self, group: str, consumer: str, start: str = "0") -> AsyncCompletionFeed:
        feed = AsyncCompletionFeed(self.redis, group, consumer, start)
        await feed.ensure_group()
        return feed

    async def close(self) -> None:
        await self.redis.aclose()
        self.app.close()
