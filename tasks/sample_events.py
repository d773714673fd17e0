"""Sample detection events for the demo and the tests, built from real photos shipped inside installed packages."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from importlib import resources

from PIL import Image, ImageDraw, ImageFilter


def packaged_photo(package: str, *parts: str) -> bytes:
    return resources.files(package).joinpath(*parts).read_bytes()


def bus_photo() -> bytes:
    """ultralytics' bus.jpg (810x1080): a city bus and pedestrians."""
    return packaged_photo("ultralytics", "assets", "bus.jpg")


def two_people_photo() -> bytes:
    """ultralytics' zidane.jpg (1280x720): two people, one face clearly visible."""
    return packaged_photo("ultralytics", "assets", "zidane.jpg")


def garden_with_dog() -> bytes:
    """A rendered night-vision-like garden frame with a dog-shaped figure (no animal photo ships locally)."""
    image = Image.new("RGB", (960, 540), (70, 92, 64))
    draw = ImageDraw.Draw(image)
    for x in range(0, 960, 48):
        draw.rectangle((x, 120, x + 10, 300), fill=(120, 104, 88))
    draw.rectangle((0, 150, 960, 162), fill=(120, 104, 88))
    draw.ellipse((400, 300, 600, 400), fill=(150, 110, 70))
    draw.ellipse((570, 260, 650, 330), fill=(150, 110, 70))
    for leg in (420, 460, 540, 580):
        draw.rectangle((leg, 380, leg + 16, 450), fill=(140, 100, 62))
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def person_event(event_id: str, face: bool = False, suspicious: float = 0.0, frames: int = 0) -> dict:
    photo = two_people_photo()
    event = {
        "event_id": event_id, "camera_id": "front_door", "timestamp": now_iso(), "detection_type": "person",
        "confidence": 0.91, "bbox": [747, 41, 1141, 712], "face_visible": face, "suspicious_score": suspicious,
        "image": b64(photo),
    }
    if face:
        event["face_bbox"] = [860, 90, 1010, 290]
    if frames:
        event["frames"] = [{"image": b64(photo)} for _ in range(frames)]
    return event


def vehicle_event(event_id: str) -> dict:
    return {
        "event_id": event_id, "camera_id": "driveway", "timestamp": now_iso(), "detection_type": "bus",
        "confidence": 0.88, "bbox": [17, 230, 801, 768], "image": b64(bus_photo()),
    }


def animal_event(event_id: str) -> dict:
    return {
        "event_id": event_id, "camera_id": "garden", "timestamp": now_iso(), "detection_type": "dog",
        "confidence": 0.77, "bbox": [395, 255, 655, 455], "image": b64(garden_with_dog()),
    }


def demo_events(prefix: str = "demo") -> list[tuple[str, dict]]:
    """A short tour: person, person with face and frames (suspicious), vehicle, animal, and a corrupt frame."""
    corrupt = vehicle_event(f"{prefix}-corrupt") | {"image": b64(bus_photo()[:2000])}
    return [
        ("person at the front door", person_event(f"{prefix}-person")),
        ("suspicious person, face visible, 8 frames", person_event(f"{prefix}-suspicious", face=True, suspicious=80, frames=8)),
        ("bus on the driveway camera", vehicle_event(f"{prefix}-vehicle")),
        ("dog in the garden (rendered frame)", animal_event(f"{prefix}-animal")),
        ("truncated JPEG (must be rejected)", corrupt),
    ]

