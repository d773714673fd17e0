"""Scene models once per frame: events on one frame share each scene model's frame outputs (single flight).

The first run_model for (model, frame) takes a claim with the ledger's own claim-or-wait script (the claim at
claim:scene=<model>:<frame>, owned by its task id, for MODEL_TIME_LIMIT) and runs the model; its frame outputs are
stored at scene:shared:<model>:<frame> for SCENE_SHARE_TTL_SECONDS and the claim dropped, in one transaction.
Another event's run_model for the same frame finds them stored, or the claim held and waits for them (polling, at
most SCENE_SHARE_WAIT_SECONDS); when the wait runs out, or the first run failed, it runs the model itself. A model
whose whole answer is the frame's (florence) is then not run at all; one with a per-event part (clip's crop
embedding) runs only that part.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from tasks.ledger import Ledger, claim_key
from workers.records import ModelRecord, ModelRequest
from workers.registry import REGISTRY

log = logging.getLogger(__name__)

SHARED_PREFIX = "scene:shared"
POLL_SECONDS = (0.005, 0.01, 0.02, 0.05)  # the waits between looks, then the last one repeated


def shared_name(model: str, frame_id: str) -> str:
    """The claim's name (the ledger puts it under claim:): its '=' is in no event id (EVENT_ID_PATTERN), so an
    event can neither hold a frame's claim nor find its own id claimed by one."""
    return f"scene={model}:{frame_id}"


def shared_key(model: str, frame_id: str) -> str:
    return f"{SHARED_PREFIX}:{model}:{frame_id}"


class SceneSharing:
    """Single flight of per-frame model outputs across the events on one frame, through Redis."""

    def __init__(self, client: redis.Redis, ttl_seconds: float, wait_seconds: float, claim_seconds: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.ledger = Ledger(client)
        self.ttl_seconds = int(ttl_seconds)  # 0: nothing shared
        self.wait_seconds = wait_seconds
        self.claim_seconds = claim_seconds
        self.clock = clock
        self.sleep = sleep

    def run(self, request: ModelRequest, task_id: str | None,
            compute: Callable[[dict[str, Any] | None], ModelRecord]) -> ModelRecord:
        """The request's record: computed here (compute(None)), or built from the frame outputs another event's run
        stored (compute(shared) for the per-event part, or none when the whole answer is the frame's)."""
        entry = REGISTRY.get(request.model)
        if request.frame_id is None or entry is None or not entry.shared_per_frame or self.ttl_seconds <= 0:
            return compute(None)
        name, key = shared_name(request.model, request.frame_id), shared_key(request.model, request.frame_id)
        owner = task_id or f"{request.event_id}/{request.model}"
        started = self.clock()
        for attempt in range(1_000_000):
            stored, claimed = self.ledger.claim_or_wait(name, key, self.claim_seconds, owner=owner)
            if stored is not None:
                return self.from_shared(request, json.loads(stored), started, compute)
            if claimed:
                return self.compute_and_share(request, name, key, compute)
            if self.clock() - started >= self.wait_seconds:
                log.warning("%s for %s: waited %.1fs for the run on the same frame; running it here",
                            request.model, request.event_id, self.clock() - started)
                return compute(None)
            self.sleep(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)])
        return compute(None)

    def compute_and_share(self, request: ModelRequest, name: str, key: str,
                          compute: Callable[[dict[str, Any] | None], ModelRecord]) -> ModelRecord:
        """Run the model and store its frame outputs for the other events on this frame (nothing on a failure:
        they run it themselves), dropping the claim in the same transaction."""
        record = compute(None)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                if record.status == "ok" and record.data is not None:
                    frame = frame_part(request.model, record.data)
                    pipe.set(key, json.dumps({"event_id": request.event_id, "data": frame}), ex=self.ttl_seconds)
                pipe.delete(claim_key(name))
                pipe.execute()
        except redis.RedisError as exc:  # the record stands; the others wait out their bound and run it themselves
            log.warning("could not share %s's frame outputs for %s: %s", request.model, request.event_id, exc)
        return record

    def from_shared(self, request: ModelRequest, shared: dict[str, Any], started: float,
                    compute: Callable[[dict[str, Any] | None], ModelRecord]) -> ModelRecord:
        entry = REGISTRY[request.model]
        source = str(shared.get("event_id") or "")
        if entry.frame_outputs == "all":
            return ModelRecord(model=request.model, status="ok", data=shared["data"], shared_from=source,
                               infer_ms=round((self.clock() - started) * 1000, 2))
        record = compute(shared["data"])
        return record.model_copy(update={"shared_from": source}) if record.status == "ok" else record


def frame_part(model: str, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of a model's answer that depend on the frame alone (the registry's frame_outputs)."""
    outputs = REGISTRY[model].frame_outputs
    return dict(data) if outputs == "all" else {k: v for k, v in data.items() if k in outputs}
