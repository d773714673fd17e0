"""The assembly names who is at the door: face finisher against a real Redis household, Florence's plate reads."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest

from tasks.household import DAYS
from tests.unit.test_household import FACENET, OTHER_EMBEDDER, face, fresh_household, near
from workers.finishing import Finishing
from workers.models.face import recognise_household
from workers.models.florence import read_plates
from workers.settings import DepthSettings

MONDAY_NOON = datetime(2026, 12, 7, 12, 0)
MONDAY_NIGHT = datetime(2026, 12, 7, 23, 0)
WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in DAYS[:5]}


def person(face_visible: bool = False):
    return SimpleNamespace(detection_type="person", face_visible=face_visible, bbox=[100.0, 50.0, 300.0, 600.0])


def vehicle():
    return SimpleNamespace(detection_type="vehicle", face_visible=False, bbox=[100.0, 100.0, 700.0, 500.0])


def finishing(household, event, when=MONDAY_NOON) -> Finishing:
    return Finishing(camera_id="front_door", depth=DepthSettings(), household=household, event=event, local_time=when)


def face_section(vector, model_id=FACENET) -> dict:
    return {"face_visible": True, "face_count": 1, "faces": [], "embedding": vector, "embedding_model": model_id,
            "dim": 512}


@pytest.fixture
def household(redis_client):
    return fresh_household(redis_client)


def test_an_enrolled_face_is_named_with_role_and_schedule_and_the_vector_leaves_the_result(household):
    dana = face(1)
    household.add_member("Dana", "resident", WEEKDAYS_9_TO_5)
    household.enrol_face("Dana", dana, FACENET)
    enrichment = {"face": face_section(near(dana, 2))}
    recognise_household(enrichment, finishing(household, person()))
    match = enrichment["household"]["face_match"]
    assert match["outcome"] == "match" and match["member"]["name"] == "Dana" and match["member"]["role"] == "resident"
    assert match["within_schedule"] is True
    assert "embedding" not in enrichment["face"] and enrichment["face"]["embedding_model"] == FACENET
    assert enrichment["household"]["face_visible"] is True
    assert enrichment["household"]["face_visible_source"] == "face detection"


def test_outside_the_schedule_is_said(household):
    dana = face(1)
    household.add_member("Dana", "resident", WEEKDAYS_9_TO_5)
    household.enrol_face("Dana", dana, FACENET)
    enrichment = {"face": face_section(near(dana, 3))}
    recognise_household(enrichment, finishing(household, person(), MONDAY_NIGHT))
    assert enrichment["household"]["face_match"]["within_schedule"] is False


def test_a_stranger_is_no_match_and_an_empty_household_is_no_gallery(household):
    enrichment = {"face": face_section(face(9))}
    recognise_household(enrichment, finishing(household, person()))
    assert enrichment["household"]["face_match"]["outcome"] == "no_gallery"
    household.add_member("Dana", "resident")
    household.enrol_face("Dana", face(1), FACENET)
    enrichment = {"face": face_section(face(9))}
    recognise_household(enrichment, finishing(household, person()))
    assert enrichment["household"]["face_match"]["outcome"] == "no_match"
    assert enrichment["household"]["face_match"]["member"] is None


def test_vectors_of_another_embedder_are_never_compared_re_enroll(household):
    dana = face(1)
    household.add_member("Dana", "resident")
    household.enrol_face("Dana", dana, OTHER_EMBEDDER)
    enrichment = {"face": face_section(dana)}
    recognise_household(enrichment, finishing(household, person()))
    assert enrichment["household"]["face_match"]["outcome"] == "re_enroll"


def test_without_a_face_record_the_backends_flag_is_kept_as_a_hint(household):
    enrichment: dict = {}
    recognise_household(enrichment, finishing(household, person(face_visible=True)))
    assert enrichment["household"] == {"face_visible": True, "face_visible_source": "backend hint"}


def test_a_named_reid_identity_carries_the_members_name(household):
    household.add_member("Dana", "family")
    household.name_identity("person-0007", "Dana")
    enrichment = {"reid": {"embedding": [1.0], "dim": 1, "reid_match": {"identity": "person-0007", "similarity": 0.9,
                                                                         "sighting_count": 3}},
                  "reid_match": {"identity": "person-0007", "similarity": 0.9, "sighting_count": 2}}
    recognise_household(enrichment, finishing(household, person()))
    assert enrichment["reid"]["reid_match"]["name"] == "Dana" and enrichment["reid_match"]["name"] == "Dana"
    assert enrichment["household"]["identity"]["member"]["name"] == "Dana"


def test_a_household_that_fails_makes_the_event_partial_not_an_exception():
    class Broken:
        def match_face(self, *args):
            raise ConnectionError("redis gone")

    done = finishing(Broken(), person())
    enrichment = {"face": face_section(face(1))}
    recognise_household(enrichment, done)
    assert done.unavailable == {"household": "error: ConnectionError"}
    assert "embedding" not in enrichment["face"]


def florence_reading(*reads: tuple[str, list[float]]) -> dict:
    return {"scene": {"florence": {"text_regions": {"labels": [text for text, _ in reads],
                                                    "quad_boxes": [quad for _, quad in reads]}}}}


PLATE_QUAD = [350.0, 420.0, 450.0, 420.0, 450.0, 450.0, 350.0, 450.0]  # low in the vehicle's box
SIGN_QUAD = [10.0, 10.0, 80.0, 10.0, 80.0, 30.0, 10.0, 30.0]  # outside it


def test_a_registered_plate_is_recognised_by_exact_normalised_text(household):
    household.add_vehicle("abc-123", "blue Civic")
    enrichment = florence_reading(("ABC 123", PLATE_QUAD), ("OPEN24", SIGN_QUAD))
    read_plates(enrichment, finishing(household, vehicle()))
    plate = enrichment["household"]["plate"]
    assert plate["text"] == "ABC123" and plate["registered"] is True
    assert plate["vehicle"] == {"plate": "ABC123", "description": "blue Civic"}


def test_an_unregistered_plate_is_read_and_said_to_be_unregistered(household):
    household.add_vehicle("ABC123", "blue Civic")
    enrichment = florence_reading(("7XYZ 123", PLATE_QUAD))
    read_plates(enrichment, finishing(household, vehicle()))
    assert enrichment["household"]["plate"]["text"] == "7XYZ123"
    assert enrichment["household"]["plate"]["registered"] is False


def test_plates_are_read_only_on_vehicle_events_and_only_inside_the_box(household):
    enrichment = florence_reading(("ABC 123", PLATE_QUAD))
    read_plates(enrichment, finishing(household, person()))
    assert "household" not in enrichment
    enrichment = florence_reading(("ABC 123", SIGN_QUAD))
    read_plates(enrichment, finishing(household, vehicle()))
    assert "household" not in enrichment


def test_an_unknown_face_is_kept_only_for_the_configured_retention_and_a_member_s_not_at_all(household):
    dana = face(1)
    household.add_member("Dana", "resident")
    household.enrol_face("Dana", dana, FACENET)
    event = SimpleNamespace(**vars(person()), event_id="evt-stranger")
    done = Finishing(camera_id="front_door", depth=DepthSettings(), household=household, event=event,
                     face_retention_seconds=3600)
    recognise_household({"face": face_section(face(9))}, done)
    assert 3500 < household.client.ttl("face-recent:evt-stranger") <= 3600
    assert household.recent_face("evt-stranger")[0] == FACENET
    known = SimpleNamespace(**vars(person()), event_id="evt-dana")
    recognise_household({"face": face_section(near(dana, 5))}, Finishing(
        camera_id="front_door", depth=DepthSettings(), household=household, event=known, face_retention_seconds=3600))
    assert household.recent_face("evt-dana") is None
    no_retention = SimpleNamespace(**vars(person()), event_id="evt-none")
    recognise_household({"face": face_section(face(9))}, finishing(household, no_retention))
    assert household.recent_face("evt-none") is None
