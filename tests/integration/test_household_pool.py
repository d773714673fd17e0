"""Who is at the door, through the real pool: an enrolled face is named in the stored result and the prompt, a
registered plate is recognised, forget leaves no vector, and faces enrolled with another embedder answer re_enroll.

The face model runs as deployed (real MTCNN weights from facenet-pytorch's wheel, the tiny random embedder the
pool loads); the test enrols with that same embedder's vector of the same photo. Tiny random Florence reads no
text, so a stand-in Florence reads one plate (tests.stand_in_models.PlateReadingFlorenceModel).
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import redis
from PIL import Image

from scripts.fixtures.sample_events import b64, now_iso, vehicle_event
from scripts.fixtures.weights.face import write_face
from tasks.household import Household
from tests.integration.conftest import started_pool
from workers.models.face import FaceModel

pytestmark = pytest.mark.integration
skimage_data = pytest.importorskip("skimage.data")

ASTRONAUT_PERSON = [20.0, 10.0, 470.0, 512.0]


def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut()).convert("RGB")


def astronaut_event(event_id: str) -> dict:
    buffer = io.BytesIO()
    astronaut().save(buffer, format="JPEG", quality=92)
    return {"event_id": event_id, "camera_id": "front_door", "timestamp": now_iso(), "detection_type": "person",
            "confidence": 0.93, "bbox": ASTRONAUT_PERSON, "face_visible": False, "suspicious_score": 0,
            "image": b64(buffer.getvalue())}


def face_of_astronaut(model_dir) -> tuple[list[float], str]:
    """The embedding and embedder id a FaceModel loaded from model_dir gives the astronaut's face."""
    model = FaceModel(model_dir, "cpu")
    model.load()
    try:
        found = model.analyse(astronaut(), tuple(ASTRONAUT_PERSON))
    finally:
        model.unload()
    assert found["face_count"] == 1
    return found["embedding"], found["embedding_model"]


@pytest.fixture(scope="module")
def household_pool(pool_models_dir, tmp_path_factory):
    with started_pool(pool_models_dir, tmp_path_factory.mktemp("household-logs"), {
        "FLORENCE_MODEL_FAMILY": "tests.stand_in_models:PlateReadingFlorenceModel",
        "SCENE_MODELS": "florence,clip", "SCENE_DETECTION_TYPES": "person,vehicle",
    }) as running:
        yield running


@pytest.fixture(scope="module")
def household(household_pool):
    return Household(redis.Redis.from_url(household_pool.redis_url))


def vector_keys(client: redis.Redis) -> list[bytes]:
    """The household's packed face entries (identity, model id, vector): gallery:{household-faces}:e:<entry>."""
    return list(client.scan_iter(match="gallery:{household-faces}:e:*"))


def test_an_enrolled_face_is_named_in_the_result_and_the_prompt_and_forget_leaves_nothing(
        household_pool, household, pool_models_dir):
    vector, model_id = face_of_astronaut(pool_models_dir / "face")
    household.add_member("Dana", "resident")
    household.enrol_face("Dana", vector, model_id)
    assert len(vector_keys(household.client)) == 1, "enrolment stored one vector"

    result = household_pool.client.enrich(astronaut_event("ev-dana"), timeout=300)
    assert result["models"]["face"]["status"] == "ok", result["models"]["face"]
    face = result["enrichment"]["face"]
    assert face["face_visible"] is True and "embedding" not in face
    match = result["enrichment"]["household"]["face_match"]
    assert match["outcome"] == "match" and match["member"]["name"] == "Dana", match
    assert result["enrichment"]["household"]["face_visible_source"] == "face detection"
    assert '**Known person**: "Dana" (resident)' in result["prompt"]
    assert "A known household member" in result["prompt"]
    assert str(vector[0]) not in result["prompt"]

    forgotten = household.forget("Dana")
    assert forgotten["face_vectors_removed"] == 1
    assert vector_keys(household.client) == [] and household.faces.count() == 0
    result = household_pool.client.enrich(astronaut_event("ev-after-forget"), timeout=300)
    assert result["enrichment"]["household"]["face_match"]["outcome"] == "no_gallery"
    assert "Dana" not in result["prompt"]


def test_faces_enrolled_with_another_embedder_answer_re_enroll(household_pool, household, tmp_path):
    other = tmp_path / "face-other"
    write_face(other, seed=7)
    vector, model_id = face_of_astronaut(other)
    household.add_member("Robin", "family")
    household.enrol_face("Robin", vector, model_id)
    result = household_pool.client.enrich(astronaut_event("ev-robin"), timeout=300)
    assert result["enrichment"]["household"]["face_match"]["outcome"] == "re_enroll"
    assert "must be enrolled again" in result["prompt"]
    household.forget("Robin")


def test_a_registered_plate_is_recognised(household_pool, household):
    household.add_vehicle("ABC 123", "blue Civic")
    result = household_pool.client.enrich(vehicle_event("ev-civic"), timeout=300)
    plate = result["enrichment"]["household"]["plate"]
    assert plate["text"] == "ABC123" and plate["registered"] is True, plate
    assert plate["vehicle"]["description"] == "blue Civic"
    assert 'registered household vehicle "blue Civic"' in result["prompt"]
    household.remove_vehicle("ABC123")
    result = household_pool.client.enrich(vehicle_event("ev-civic-gone"), timeout=300)
    assert result["enrichment"]["household"]["plate"]["registered"] is False
    assert "not registered" in result["prompt"]


def test_a_vehicle_whose_plate_is_not_registered_is_recognised_by_its_look(household_pool, household):
    first = household_pool.client.enrich(vehicle_event("ev-look-first"), timeout=300)
    assert first["status"] == "complete", first["errors"]
    assert first["enrichment"]["household"]["plate"]["registered"] is False
    assert first["enrichment"]["scene"]["clip"]["embedding_model"].startswith("clip:")
    added = subprocess.run([sys.executable, "-m", "tasks.cli", "--redis-url", household_pool.redis_url, "household",
                            "add-vehicle", "XYZ 789", "--description", "grey van", "--event", "ev-look-first"],
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0 and "with its look" in added.stdout, added.stderr
    try:
        again = household_pool.client.enrich(vehicle_event("ev-look-again"), timeout=300)
        found = again["enrichment"]["household"]
        assert found["plate"]["registered"] is False  # the stand-in still reads ABC-123, which is not registered
        look = found["vehicle_look"]
        assert look["outcome"] == "match" and look["vehicle"]["plate"] == "XYZ789", look
        assert 'looks like registered household vehicle "grey van"' in again["prompt"]
        assert str(first["enrichment"]["scene"]["clip"]["crop_embedding"][0]) not in again["prompt"]
    finally:
        household.remove_vehicle("XYZ789")
