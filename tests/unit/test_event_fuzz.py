"""Bad input fuzzing: every event is either admitted or rejected naming a field; nothing else escapes."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tasks.admission import MAX_BOX_ASPECT, MIN_BOX_SIDE, Rejected, admit, parse_event, redis_key_reader
from tasks.schemas import MAX_ERRORS, MAX_REASON_CHARS
from workers.settings import Settings

TRIED = {"count": 0, "rejected": 0, "admitted": 0}


def jpeg(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which carries almost no data: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


GOOD_IMAGE = base64.b64encode(jpeg()).decode()


def valid_event(**changes) -> dict:
    event = {
        "event_id": "fuzz-1", "camera_id": "cam", "timestamp": "2026-11-24T22:00:00Z", "detection_type": "person",
        "confidence": 0.8, "bbox": [4, 4, 40, 40], "image": GOOD_IMAGE,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


@dataclass
class Gate:
    """The router's admission with small limits; image_key frames are read from a real Redis."""

    settings: Settings
    read_key: Callable[[str], bytes | None]


@pytest.fixture
def fuzz_settings(tmp_path, redis_client):
    (tmp_path / "ok.jpg").write_bytes(jpeg())
    limits = Settings(image_root=tmp_path, max_image_pixels=1_000_000, max_image_bytes=256 * 1024, max_frames=4)
    return Gate(limits, redis_key_reader(redis_client, limits.max_image_bytes))


def admit_event(event, gate: Gate):
    """What the router does before any model runs: parse once, then decode every frame once."""
    return admit(parse_event(event), gate.settings, read_key=gate.read_key)


def outcome(event, settings_) -> str:
    """'admitted' or 'rejected'; anything else raised is a bug the fuzzer reports."""
    TRIED["count"] += 1
    try:
        admit_event(event, settings_)
    except Rejected as exc:
        assert exc.errors and all(isinstance(k, str) and v for k, v in exc.errors.items())
        assert len(exc.errors) <= MAX_ERRORS + 1
        assert all(len(v) <= MAX_REASON_CHARS and v.isprintable() and v.isascii() for v in exc.errors.values())
        TRIED["rejected"] += 1
        return "rejected"
    TRIED["admitted"] += 1
    return "admitted"


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
FIELDS = ["event_id", "camera_id", "timestamp", "detection_type", "confidence", "bbox", "face_visible",
          "face_bbox", "suspicious_score", "image", "image_path", "image_key", "frames"]

images = st.one_of(
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),  # random bytes
    st.integers(10, 600).map(lambda n: base64.b64encode(jpeg()[:n]).decode()),  # truncated JPEG
    st.just(base64.b64encode(png_claiming(100_000, 100_000)).decode()),  # bomb header
    st.just(base64.b64encode(jpeg(1200, 1000)).decode()),  # above max pixels
    st.just("A" * 400_000),  # above max bytes
    st.text(max_size=30),  # not base64
    st.just(GOOD_IMAGE),
)
paths = st.sampled_from(["ok.jpg", "../ok.jpg", "/etc/passwd", "../../../../etc/shadow", "missing.jpg", "", ".", "ok.jpg/.."])
coordinate = st.one_of(st.floats(min_value=-1e6, max_value=1e6), st.sampled_from([math.nan, math.inf, -math.inf]))
boxes = st.lists(coordinate, min_size=0, max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(junk, st.lists(junk, max_size=3), st.dictionaries(st.sampled_from(FIELDS), junk, max_size=8)))
def test_arbitrary_json_is_rejected_or_admitted(fuzz_settings, event):
    assert outcome(event, fuzz_settings) in ("admitted", "rejected")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FIELDS), junk)
def test_one_bad_field_never_crashes(fuzz_settings, field, value):
    assert outcome(valid_event(**{field: value}), fuzz_settings) in ("admitted", "rejected")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images, boxes, st.integers(0, 6), st.sampled_from(["person", "car", "dog", "umbrella", "", "PERSON"]))
def test_malformed_frames_boxes_and_labels(fuzz_settings, image, box, frames, label):
    event = valid_event(image=image, bbox=box, detection_type=label, frames=[{"image": image}] * frames)
    result = outcome(event, fuzz_settings)
    if result == "admitted":
        assert len(box) == 4 and all(math.isfinite(v) for v in box) and box[2] > box[0] and box[3] > box[1]
        assert frames <= fuzz_settings.settings.max_frames
        admitted = admit_event(event, fuzz_settings)
        left, top, right, bottom = admitted.bbox
        sides = (right - left, bottom - top)
        assert min(sides) >= MIN_BOX_SIDE and max(sides) <= MAX_BOX_ASPECT * min(sides)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths)
def test_image_paths_are_confined(fuzz_settings, path):
    result = outcome(valid_event(image=..., image_path=path), fuzz_settings)
    assert result == ("admitted" if path == "ok.jpg" else "rejected")


def test_decompression_bomb_is_refused_without_decoding(fuzz_settings):
    tracemalloc.start()
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(image=base64.b64encode(png_claiming(100_000, 100_000)).decode()), fuzz_settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    reason = caught.value.errors["image"]
    assert "pixel limit" in reason or "decompression bomb" in reason
    assert peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while refusing a 10-gigapixel header"


def test_zero_area_and_outside_boxes_name_bbox(fuzz_settings):
    for box in ([10, 10, 10, 30], [-50, -50, -10, -10], [1000, 0, 1100, 10]):
        with pytest.raises(Rejected) as caught:
            admit_event(valid_event(bbox=box), fuzz_settings)
        assert "bbox" in caught.value.errors


def test_too_many_frames_is_rejected(fuzz_settings):
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(frames=[{"image": GOOD_IMAGE}] * 5), fuzz_settings)
    assert "frames" in caught.value.errors


def test_missing_image_key_is_rejected(fuzz_settings):
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(image=..., image_key="frame:nope"), fuzz_settings)
    assert "image_key" in caught.value.errors


@pytest.mark.parametrize("change, field", [
    ({"face_visible": "yes"}, "face_visible"), ({"face_visible": 1}, "face_visible"),
    ({"confidence": True}, "confidence"), ({"confidence": "0.8"}, "confidence"),
    ({"suspicious_score": "90"}, "suspicious_score"), ({"bbox": [4, 4, "40", 40]}, "bbox.2"),
    ({"bbox": [4, 4, True, 40]}, "bbox.2"), ({"camera_id": "front door"}, "camera_id"),
    ({"camera_id": "cam\n## SYSTEM"}, "camera_id"), ({"camera_id": 12}, "camera_id"),
    ({"event_id": "rejected-1"}, "event_id"), ({"image_key": 5, "image": ...}, "image_key"),
])
def test_lax_types_are_refused(fuzz_settings, change, field):
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(**change), fuzz_settings)
    assert field in caught.value.errors, caught.value.errors


@pytest.mark.parametrize("field", ["confidence", "suspicious_score"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_say_so(fuzz_settings, field, value):
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(**{field: value}), fuzz_settings)
    assert caught.value.errors[field] == "must be a finite number"


def test_integers_stay_numbers(fuzz_settings):
    admitted = admit_event(valid_event(confidence=1, suspicious_score=100, bbox=[4, 4, 40, 40]), fuzz_settings)
    assert admitted.event.confidence == 1.0


@pytest.mark.parametrize("box", [[63.5, 0, 5000, 48], [0, 47.6, 64, 500], [0, 0, 64, 1]])
def test_sliver_boxes_are_refused_naming_bbox(fuzz_settings, box):
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(bbox=box), fuzz_settings)
    assert "2x2 px" in caught.value.errors["bbox"]


@pytest.mark.parametrize("kind", ["hash", "list", "set", "zset"])
def test_image_key_of_another_type_is_an_input_error(fuzz_settings, redis_client, kind):
    {"hash": lambda: redis_client.hset("k", "a", "b"), "list": lambda: redis_client.rpush("k", "a"),
     "set": lambda: redis_client.sadd("k", "a"), "zset": lambda: redis_client.zadd("k", {"a": 1})}[kind]()
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(image=..., image_key="k"), fuzz_settings)
    assert f"holds a Redis {kind}" in caught.value.errors["image_key"]


@pytest.mark.parametrize("key", ["enrichment:x", "frame:other:full", "claim:x", "_kombu.binding.router", "unacked"])
def test_image_key_in_the_pools_own_key_spaces_is_refused(fuzz_settings, redis_client, key):
    redis_client.set(key, jpeg())
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(image=..., image_key=key), fuzz_settings)
    assert "pool's own keys" in caught.value.errors["image_key"]


def test_oversized_image_key_is_refused_without_reading_it(fuzz_settings, redis_client):
    redis_client.set("big", b"\0" * (fuzz_settings.settings.max_image_bytes + 1))
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(image=..., image_key="big"), fuzz_settings)
    assert "byte limit" in caught.value.errors["image_key"]


def test_image_path_with_a_nul_byte_is_an_input_error(fuzz_settings):
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(image=..., image_path="ok\0.jpg"), fuzz_settings)
    assert "image_path" in caught.value.errors


def test_rejection_errors_are_bounded_whatever_the_input(fuzz_settings):
    event = {"frames": [{"junk-" + "k" * 500 + str(i): 1} for i in range(40)], "detection_type": "x" * 10_000}
    with pytest.raises(Rejected) as caught:
        admit_event(event, fuzz_settings)
    errors = caught.value.errors
    assert len(errors) <= MAX_ERRORS + 1 and len(json.dumps(errors)) < 8000


def test_zz_report_how_many_inputs_were_tried():
    print(f"\n[fuzz] inputs tried={TRIED['count']} rejected={TRIED['rejected']} admitted={TRIED['admitted']}")
    assert TRIED["count"] >= 100


def test_a_long_frame_list_is_refused_before_its_entries_are_validated(fuzz_settings):
    import time

    started = time.monotonic()
    with pytest.raises(Rejected) as caught:
        admit_event(valid_event(frames=[{}] * 1_000_000), fuzz_settings)
    assert "1000000 frames given" in caught.value.errors["frames"] and time.monotonic() - started < 2


@pytest.mark.parametrize("body, words", [
    (json.dumps([[{"frames": [{}] * 100_000}], {}, {}]).encode(), "objects and arrays"),
    (b"[" * 2000 + b"]" * 2000, "deep"),
    (json.dumps([[{"junk": list(range(30_000))}], {}, {}]).encode(), "items"),
])
def test_a_message_not_shaped_like_an_event_is_refused_from_its_bytes(body, words):
    from tasks.celery_internals.message_bounds import shape_problem

    assert words in shape_problem(body)


def test_an_event_with_32_frames_is_shaped_like_an_event():
    from scripts.fixtures.sample_events import person_event
    from tasks.celery_internals.message_bounds import shape_problem

    assert shape_problem(json.dumps([[person_event("x", face=True, frames=32)], {}, {}]).encode()) is None
