"""Through the real pool: events on one frame share each scene model's frame outputs. Florence-2 runs once per
frame and every event's result carries its answer; CLIP embeds the frame once and each detection's crop."""

from __future__ import annotations

import base64
import io
import uuid

import pytest
from PIL import Image

from scripts.fixtures.sample_events import b64, person_event

pytestmark = pytest.mark.integration

BOXES = ([747, 41, 1141, 712], [120, 200, 560, 712], [560, 100, 760, 600], [40, 60, 300, 500])


def unique_frame() -> bytes:
    """The sample photo with one pixel changed: bytes no other test sent (the shared answers are per frame)."""
    image = Image.open(io.BytesIO(base64.b64decode(person_event("x")["image"]))).convert("RGB")
    image.putpixel((0, 0), tuple(int(v) for v in uuid.uuid4().bytes[:3]))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def detections(prefix: str, frame: dict, count: int) -> list[dict]:
    return [person_event(f"{prefix}-{i}") | {"image": None, "bbox": BOXES[i]} | frame for i in range(count)]


def submit_together(pool, events: list[dict]) -> list[dict]:
    pending = []
    for event in events:
        event = {key: value for key, value in event.items() if value is not None}
        pending.append(pool.client.submit(event))
    return [pool.client.wait(p, timeout=300) for p in pending]


def check_one_run_shared(results: list[dict], model: str) -> str:
    """The event whose run the others took (exactly one ran the model; each other names it)."""
    ran = [r["event_id"] for r in results if r["models"][model].get("shared_from") is None]
    assert len(ran) == 1, [(r["event_id"], r["models"][model].get("shared_from")) for r in results]
    assert all(r["models"][model]["status"] == "ok" for r in results)
    assert {r["models"][model]["shared_from"] for r in results if r["event_id"] != ran[0]} == {ran[0]}
    return ran[0]


def test_the_device_worker_preloads_the_resident_models_by_default(pool):
    """PRELOAD_MODELS' default (residents): florence and clip are loaded as the worker starts, before any event."""
    import time

    deadline = time.monotonic() + 120
    while "preloaded on start" not in pool.log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.5)
    log = pool.log_path.read_text(errors="replace")
    line = next(line for line in log.splitlines() if "preloaded on start" in line)
    # "already loaded": an event that came first loaded it (the session's pool takes events at once); preload still
    # ran for it and the worker holds it
    assert all(f"{model} loaded" in line or f"{model} already loaded" in line for model in ("florence", "clip")), line


def test_two_events_on_one_frame_run_florence_once_and_both_carry_it(pool):
    key = f"backend:scene-frame:{uuid.uuid4().hex}"
    pool.client.redis.set(key, unique_frame(), ex=300)
    results = submit_together(pool, detections("spf-two", {"image_key": key}, 2))
    assert all(r["status"] == "complete" for r in results), [r["errors"] for r in results]
    check_one_run_shared(results, "florence")
    first, second = (r["enrichment"]["scene"] for r in results)
    assert first["florence"] == second["florence"]
    shown = ["### Scene Analysis (Florence-2)" in r["prompt"] for r in results]
    assert shown[0] == shown[1]  # the same Florence answer prints the same section (empty when tiny Florence said
    # nothing but location tokens)
    check_one_run_shared(results, "clip")
    assert first["clip"]["frame_embedding"] == second["clip"]["frame_embedding"]
    assert first["clip"]["crop_embedding"] != second["clip"]["crop_embedding"], "each detection's own crop"


def test_a_four_detection_frame_sent_inline_runs_florence_once(pool):
    frame = {"image": b64(unique_frame())}  # the same bytes inline four times: matched by their digest
    results = submit_together(pool, detections("spf-four", frame, 4))
    assert all(r["status"] == "complete" for r in results), [r["errors"] for r in results]
    check_one_run_shared(results, "florence")
    assert len({str(r["enrichment"]["scene"]["florence"]) for r in results}) == 1
