"""The pool's signature on the messages it sends: an HMAC-SHA256 of the message headers and body bytes, with
POOL_SIGNING_KEY, in the header MAC_HEADER.

It is computed where kombu's Redis channel has the serialized (and compressed) body and the headers it will store,
and checked against the same bytes when a message is taken off an internal queue, before anything in it is decoded.
The headers are signed in a canonical JSON form (sorted keys), so the task name, id, ETA and time limits are bound
to the body. A message a worker puts back (redelivery, a dead worker's unacknowledged tasks) keeps its signature:
kombu restores the envelope as it was received, adding only its `redelivered` header, which is a fact of delivery
(not the sender's) and so is left out of what is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

MAC_HEADER = "x-model-zoo-mac"
UNSIGNED_HEADERS = frozenset({MAC_HEADER, "redelivered"})  # kombu sets "redelivered" when it puts a message back


def as_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def canonical_headers(headers: dict[str, Any]) -> bytes:
    """The headers as signed: every one but the signature and kombu's redelivered mark, as sorted ASCII-only JSON."""
    signed = {name: value for name, value in headers.items() if name not in UNSIGNED_HEADERS}
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def signature(key: bytes, headers: dict[str, Any], body: bytes) -> str:
    return hmac.new(key, canonical_headers(headers) + b"\n" + body, hashlib.sha256).hexdigest()


def sign(message: dict[str, Any], key: bytes) -> None:
    """Add the signature to a kombu message dict (its body still serialized, not yet base64-encoded for Redis)."""
    headers = message.get("headers")
    if headers is None:
        headers = message["headers"] = {}
    headers[MAC_HEADER] = signature(key, headers, as_bytes(message.get("body")))


def verified(key: bytes | None, headers: dict[str, Any], body: bytes) -> bool:
    """Whether the headers carry the pool's signature of (headers, body); never without a key."""
    given = headers.get(MAC_HEADER)
    if not key or not isinstance(given, str):
        return False
    return hmac.compare_digest(given, signature(key, headers, body))
