"""Bad input fuzzing: every event is either admitted or rejected naming a field; nothing else escapes."""

from __future__ import annotations

import base64
import io
import math
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from tasks.admission import Rejected, admit, parse_event
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
    return Gate(limits, redis_client.get)


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
        TRIED["rejected"] += 1
        return "rejected"
    TRIED["admitted"] += 1
    return "admitted"


junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
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


def test_zz_report_how_many_inputs_were_tried():
    print(f"\n[fuzz] inputs tried={TRIED['count']} rejected={TRIED['rejected']} admitted={TRIED['admitted']}")
    assert TRIED["count"] >= 100
