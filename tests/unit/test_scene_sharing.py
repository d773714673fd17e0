"""Scene models once per frame: events on one frame share each scene model's frame outputs (single flight in Redis)."""

from __future__ import annotations

import threading
import time

from tasks.ledger import claim_key
from tasks.scene_sharing import SceneSharing, shared_key, shared_name
from workers.records import ModelRecord, ModelRequest

FLORENCE = {"scene": "A man at a door.", "security_objects": {"labels": [], "bboxes": []},
            "text_regions": {"labels": [], "quad_boxes": []}}
CLIP = {"frame_embedding": [1.0, 0.0], "crop_embedding": [0.0, 1.0], "dim": 2, "tags": [], "weather": None}


def request(event_id: str, model: str = "florence", frame_id: str | None = "bytes:abc") -> ModelRequest:
    return ModelRequest(event_id=event_id, model=model, frame_key=f"frame:{event_id}:full", bbox=(0, 0, 10, 10),
                        detection_type="person", frame_id=frame_id)


class CountingModel:
    """A model that takes `seconds` per run and counts its runs (and what it was given)."""

    def __init__(self, model: str, data: dict, seconds: float = 0.2, status: str = "ok"):
        self.model, self.data, self.seconds, self.status = model, data, seconds, status
        self.runs: list[dict | None] = []
        self.lock = threading.Lock()

    def __call__(self, shared: dict | None) -> ModelRecord:
        with self.lock:
            self.runs.append(shared)
        time.sleep(self.seconds)
        if self.status != "ok":
            return ModelRecord(model=self.model, status=self.status, error="boom", worker="w")
        data = dict(self.data) if shared is None else dict(shared) | {"crop_embedding": [0.5, 0.5]}
        return ModelRecord(model=self.model, status="ok", data=data, worker="w", infer_ms=self.seconds * 1000)


def run_together(sharing: SceneSharing, model: CountingModel, events: list[str], name: str = "florence") -> dict:
    records: dict[str, ModelRecord] = {}

    def one(event_id: str) -> None:
        records[event_id] = sharing.run(request(event_id, name), f"task-{event_id}", model)

    threads = [threading.Thread(target=one, args=(event_id,)) for event_id in events]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    return records


def test_four_detections_on_one_frame_run_florence_once_and_all_carry_it(redis_client):
    sharing = SceneSharing(redis_client, ttl_seconds=30, wait_seconds=5, claim_seconds=90)
    florence = CountingModel("florence", FLORENCE)
    records = run_together(sharing, florence, ["e1", "e2", "e3", "e4"])
    assert florence.runs == [None]
    assert all(record.status == "ok" and record.data == FLORENCE for record in records.values())
    assert records["e1"].shared_from is None
    assert {records[e].shared_from for e in ("e2", "e3", "e4")} == {"e1"}
    assert 0 < redis_client.ttl(shared_key("florence", "bytes:abc")) <= 30, "the shared answer expires soon"
    assert not redis_client.exists(claim_key(shared_name("florence", "bytes:abc")))


def test_clip_shares_its_frame_outputs_and_embeds_each_crop(redis_client):
    sharing = SceneSharing(redis_client, ttl_seconds=30, wait_seconds=5, claim_seconds=90)
    clip = CountingModel("clip", CLIP)
    records = run_together(sharing, clip, ["c1", "c2"], name="clip")
    frame_part = {key: CLIP[key] for key in ("frame_embedding", "dim", "tags", "weather")}
    assert clip.runs == [None, frame_part], "the second run is given the frame's outputs, computes the crop only"
    assert records["c2"].data == frame_part | {"crop_embedding": [0.5, 0.5]} and records["c2"].shared_from == "c1"


def test_other_frames_and_models_without_frame_outputs_run_on_their_own(redis_client):
    sharing = SceneSharing(redis_client, ttl_seconds=30, wait_seconds=5, claim_seconds=90)
    florence = CountingModel("florence", FLORENCE, seconds=0)
    sharing.run(request("a", frame_id="bytes:one"), "t-a", florence)
    sharing.run(request("b", frame_id="bytes:two"), "t-b", florence)
    sharing.run(request("c", frame_id=None), "t-c", florence)
    depth = CountingModel("depth", {"relative_depth": 0.5}, seconds=0)
    sharing.run(request("d", model="depth"), "t-d", depth)
    sharing.run(request("e", model="depth"), "t-e", depth)
    assert len(florence.runs) == 3 and len(depth.runs) == 2


def test_a_failed_first_run_is_not_shared_and_the_waiter_runs_it_itself(redis_client):
    sharing = SceneSharing(redis_client, ttl_seconds=30, wait_seconds=5, claim_seconds=90)
    failing = CountingModel("florence", FLORENCE, status="error")
    records = run_together(sharing, failing, ["f1", "f2"])
    assert len(failing.runs) == 2 and all(r.status == "error" for r in records.values())
    assert not redis_client.exists(shared_key("florence", "bytes:abc"))


def test_the_wait_is_bounded_when_the_first_run_never_answers(redis_client):
    sharing = SceneSharing(redis_client, ttl_seconds=30, wait_seconds=0.3, claim_seconds=90)
    redis_client.set(claim_key(shared_name("florence", "bytes:abc")), "a-dead-worker's-task", ex=90)
    florence = CountingModel("florence", FLORENCE, seconds=0)
    started = time.monotonic()
    record = sharing.run(request("late"), "t-late", florence)
    assert 0.3 <= time.monotonic() - started < 2 and record.status == "ok" and florence.runs == [None]


def test_no_event_id_can_name_a_frames_claim():
    import re

    from tasks.schemas import EVENT_ID_PATTERN

    assert not re.fullmatch(EVENT_ID_PATTERN, shared_name("florence", "bytes:0123456789abcdef"))


def test_a_ttl_of_zero_shares_nothing(redis_client):
    sharing = SceneSharing(redis_client, ttl_seconds=0, wait_seconds=5, claim_seconds=90)
    florence = CountingModel("florence", FLORENCE, seconds=0.1)
    run_together(sharing, florence, ["z1", "z2"])
    assert florence.runs == [None, None] and not redis_client.keys("scene:*")
