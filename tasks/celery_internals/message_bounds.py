"""What a worker checks in a message's raw bytes before it decodes anything: `screen(raw, queue, policy)`.

Every message taken off one of the pool's task queues (tasks/trust.py) is screened by the worker's Redis channel
(tasks/celery_internals/trusted_transport.py) before kombu parses it:

- its size as read from Redis (at most the body limit in base64, plus room for headers): a larger one is never
  parsed; on an internal queue (assemble, gpu.N, cpu.N) its signature (POOL_SIGNING_KEY) is checked next, over the
  raw body bytes, so a forged message is refused before anything in it is decoded;
- on a public queue (router, celery): the task name from the headers (only enrich_detection runs there), no ETA or
  countdown (nobody parks payloads in a worker's memory), Celery's protocol 2 (protocol 1 has no headers to check);
- on every queue: JSON only; a compressed body is inflated only up to the limit (zlib, bzip2, lzma; others refused);
  the body's size, and on public queues the JSON shape an event can have (a few objects and arrays, shallow, few
  items), then that it parses (bounded and shaped like an event, it is cheap to parse; a body Celery could not
  decode would otherwise fail in a pool process, its sender never told).

Bytes alone do not bound the cost of decoding: 4 MB of `{"frames": [{}, {}, ...]}` is a million objects, 3 GB and
20 s in the decoder and the schema; a deep nest of arrays overflows the decoder's recursion. The shape is read from
the raw bytes with C-speed scans (brackets, commas and colons inside strings count too: an event's strings are ids,
timestamps and base64, which hold none).
"""

from __future__ import annotations

import base64
import binascii
import bz2
import json
import lzma
import re
import zlib
from dataclasses import dataclass
from typing import Any

from kombu.utils.json import loads

from tasks.celery_internals import signing

MAX_CONTAINERS = 5_000  # JSON objects and arrays in one message (an event with 1,000 frames has about 1,010)
MAX_DEPTH = 32  # nesting of objects and arrays (an event needs 4)
MAX_ITEMS = 20_000  # commas and colons: values in arrays, members of objects
BRACKETS = b"[]{}"
NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in BRACKETS)
ENVELOPE_ROOM = 64 * 1024  # kombu's envelope around the base64 body: headers, properties
TAIL_BYTES = 64 * 1024  # where an unparsed envelope's headers (and the task id) are looked for
TASK_ID = re.compile(rb'"id": ?"([^"\\]{1,256})"')


@dataclass(frozen=True)
class Policy:
    """What screening allows: the body limit (MAX_EVENT_BYTES), the signing key, the public queues and tasks."""

    max_body_bytes: int
    key: bytes | None
    public_queues: frozenset[str]
    public_tasks: frozenset[str]

    @property
    def max_envelope_bytes(self) -> int:
        return (self.max_body_bytes + 2) // 3 * 4 + ENVELOPE_ROOM


@dataclass(frozen=True)
class Refusal:
    """A message not delivered. `reason` labels the metric; `field` and `problem` make the sender's rejection;
    `answer`: whether the sender is told (senders on public queues are; forgers on internal queues are not)."""

    queue: str
    reason: str
    problem: str
    field: str = "message"
    task: str | None = None
    task_id: str | None = None
    answer: bool = False


def oversized_reason(size: int, limit: int) -> str:
    return f"the message is {size} bytes, above the {limit} byte limit (MAX_EVENT_BYTES); send frames by image_key"


def shape_problem(body: bytes) -> str | None:
    """Why the body's JSON shape is not an event's (too many objects, too deep, too many items), or None."""
    brackets = body.translate(None, NOT_BRACKETS)
    containers = brackets.count(b"[") + brackets.count(b"{")
    if containers > MAX_CONTAINERS:
        return f"the message holds {containers} JSON objects and arrays, above the {MAX_CONTAINERS} limit"
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        return f"the message nests JSON {deepest} deep, above the {MAX_DEPTH} limit"
    items = body.count(b",") + body.count(b":")
    if items > MAX_ITEMS:
        return f"the message holds {items} JSON items, above the {MAX_ITEMS} limit"
    return None


class TooLarge(ValueError):
    pass


def _zlib(data: bytes, limit: int) -> tuple[bytes, bool]:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    return out, inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data


def _bz2(data: bytes, limit: int) -> tuple[bytes, bool]:
    inflater = bz2.BZ2Decompressor()
    out = inflater.decompress(data, max_length=limit + 1)
    return out, inflater.eof and not inflater.unused_data


def _lzma(data: bytes, limit: int) -> tuple[bytes, bool]:
    inflater = lzma.LZMADecompressor()
    out = inflater.decompress(data, max_length=limit + 1)
    return out, inflater.eof and not inflater.unused_data


# kombu's compression content types (and their aliases) that can be inflated with a bound on the output.
INFLATERS = {
    "application/x-gzip": _zlib, "gzip": _zlib, "zlib": _zlib,
    "application/x-bz2": _bz2, "bzip2": _bz2, "bzip": _bz2,
    "application/x-lzma": _lzma, "lzma": _lzma, "xz": _lzma,
}


def inflate(data: bytes, compression: str, limit: int) -> bytes:
    """The body inflated, stopping past `limit` bytes (TooLarge); ValueError for unknown or corrupt compression."""
    inflater = INFLATERS.get(compression)
    if inflater is None:
        raise ValueError(f"compression {compression!r} is not accepted (zlib, bzip2 or lzma are)")
    try:
        out, complete = inflater(data, limit)
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"the {compression} body cannot be inflated ({exc})") from None
    if len(out) > limit:
        raise TooLarge(f"the body inflates to more than the {limit} byte limit (MAX_EVENT_BYTES)")
    if not complete:
        raise ValueError(f"the {compression} body is truncated or has data after its end")
    return out


def task_id_in(data: bytes) -> str | None:
    match = TASK_ID.search(data)
    return match.group(1).decode("utf-8", "replace") if match else None


def screen(raw: bytes, queue: str, policy: Policy) -> dict[str, Any] | Refusal:
    """The kombu envelope of a message taken off `queue`, parsed, when it may be delivered; else why not."""
    public = queue in policy.public_queues
    if len(raw) > policy.max_envelope_bytes:
        # kombu writes the headers after the body: the sender's task id is in the tail, found without parsing.
        return Refusal(queue, "oversized", oversized_reason(len(raw), policy.max_body_bytes), "event",
                       task_id=task_id_in(raw[-TAIL_BYTES:]), answer=public)
    try:
        envelope = loads(raw)
        headers, properties, text = envelope["headers"] or {}, envelope["properties"], envelope.get("body") or ""
        if not (isinstance(headers, dict) and isinstance(properties, dict) and isinstance(text, str)):
            raise TypeError("not a kombu envelope")
        body = base64.b64decode(text, validate=True) if properties.get("body_encoding") == "base64" else text.encode()
    except (ValueError, TypeError, KeyError, binascii.Error, AttributeError):
        return Refusal(queue, "malformed", "the message is not a kombu message", task_id=task_id_in(raw[-TAIL_BYTES:]),
                       answer=False)
    task, task_id = headers.get("task"), headers.get("id")
    task_id = task_id if isinstance(task_id, str) and 0 < len(task_id) <= 256 else None
    if not public and not signing.verified(policy.key, headers, body):
        return Refusal(queue, "unsigned", "the message does not carry the pool's signature (POOL_SIGNING_KEY)",
                       task=_name(task), task_id=task_id)
    if task is None:  # Celery's protocol 1 keeps the task's name and id in the body
        return Refusal(queue, "protocol_1", "Celery protocol 1 messages are refused; send with protocol 2 (the "
                       "default since Celery 4)", task_id=task_id_in(body[:4096]), answer=public)
    if public:
        refused = _public_refusal(headers, queue, policy)
        if refused is not None:
            return Refusal(queue, refused[0], refused[1], refused[2], _name(task), task_id, answer=True)
    if envelope.get("content-type") != "application/json":
        return Refusal(queue, "content_type", f"content type {_name(envelope.get('content-type'))!r} is refused: "
                       f"JSON only", task=_name(task), task_id=task_id, answer=public)
    compression = headers.get("compression")
    try:
        if compression is not None:
            body = inflate(body, str(compression), policy.max_body_bytes)
    except TooLarge as exc:
        return Refusal(queue, "oversized", str(exc), "event", _name(task), task_id, answer=public)
    except ValueError as exc:
        return Refusal(queue, "compression", str(exc), task=_name(task), task_id=task_id, answer=public)
    if len(body) > policy.max_body_bytes:
        return Refusal(queue, "oversized", oversized_reason(len(body), policy.max_body_bytes), "event", _name(task),
                       task_id, answer=public)
    problem = shape_problem(body) if public else None
    if problem is not None:
        return Refusal(queue, "shape", problem, "event", _name(task), task_id, answer=True)
    if public and not parses(body):  # bounded and event-shaped: safe to parse, and its sender can still be told
        return Refusal(queue, "not_json", "the message body is not valid JSON", task=_name(task), task_id=task_id,
                       answer=True)
    return envelope


def parses(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _public_refusal(headers: dict[str, Any], queue: str, policy: Policy) -> tuple[str, str, str] | None:
    task = headers.get("task")
    if task not in policy.public_tasks:
        allowed = ", ".join(sorted(policy.public_tasks))
        return "not_public", f"task {_name(task)!r} is not accepted on the public queue {queue!r} (only {allowed})", "task"
    if headers.get("eta") is not None or headers.get("countdown") is not None:
        return "eta", f"an ETA or countdown is refused on the public queue {queue!r}: send when it is due", "message"
    return None


def _name(value: Any) -> str | None:
    """A value from a message header as a log line or an error may show it: printable, at most 64 characters."""
    if value is None:
        return None
    text = re.sub(r"[^ -~]", "?", str(value)[:256])
    return text if len(text) <= 64 else text[:61] + "..."
