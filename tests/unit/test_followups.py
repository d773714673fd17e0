"""A second round: the first models' evidence asks for follow-up models (action on a crouching posture, a weapon
or a forced-entry tool), and an ask that lacks what it needs is noted, not run."""

from __future__ import annotations

from tasks.pipeline import ask_followups, assemble_result, second_round
from tests.unit.test_assembly import CROUCHING, PERSON_BOX, routed
from tests.unit.test_posture import UPRIGHT as UPRIGHT_POINTS
from tests.unit.test_posture import skeleton
from workers.models.action import NO_FRAMES, asked_by_evidence
from workers.models.pose import pose_result
from workers.models.threat import threat_report
from workers.registry import followup_candidates

UPRIGHT = skeleton(UPRIGHT_POINTS)


def first_round(posture_keypoints, threats=()) -> list[dict]:
    pose = pose_result(PERSON_BOX, [PERSON_BOX], [posture_keypoints])
    return [{"model": "pose", "status": "ok", "data": pose},
            {"model": "threat", "status": "ok", "data": threat_report(list(threats), 0.25)}]


def person(event_id: str, frame_count: int):
    event = routed(event_id, planned=["pose", "threat"])
    return event.model_copy(update={"event": event.event.model_copy(update={"frame_count": frame_count}),
                                    "followups": followup_candidates(event.event, ["pose", "threat"])})


def test_action_is_a_follow_up_candidate_of_a_person_event_that_did_not_plan_it():
    event = routed("fc", planned=["pose"]).event
    assert "action" in followup_candidates(event, ["pose", "threat"])
    assert "action" not in followup_candidates(event, ["pose", "action"])


def test_a_crouching_posture_asks_for_action_recognition_on_the_frames():
    requests, asked = ask_followups(person("f1", frame_count=4), first_round(CROUCHING))
    assert [r.model for r in requests] == ["action"]
    assert asked["action"].ran and "crouching posture" in asked["action"].asked_by
    assert requests[0].bbox == PERSON_BOX


def test_an_upright_person_with_no_weapon_asks_for_nothing():
    requests, asked = ask_followups(person("f2", frame_count=4), first_round(UPRIGHT))
    assert requests == [] and asked == {}


def test_a_weapon_asks_for_action_recognition():
    knife = {"type": "knife", "confidence": 0.9, "bbox": [100, 100, 120, 140]}
    _, asked = ask_followups(person("f3", frame_count=4), first_round(UPRIGHT, [knife]))
    assert "a detected weapon (knife)" in asked["action"].asked_by


def test_a_forced_entry_tool_seen_by_florence_asks_for_action_recognition():
    enrichment = {"scene": {"florence": {"security_objects": {"labels": ["person", "Crowbar"], "bboxes": [[], []]}}}}
    ask = asked_by_evidence(enrichment, {"frame_count": 2})
    assert ask is not None and ask.missing is None and "forced-entry tool in view (crowbar)" in ask.reason


def test_without_frames_the_ask_is_noted_and_the_result_and_prompt_say_so():
    event = person("f4", frame_count=0)
    records = first_round(CROUCHING)
    requests, asked = ask_followups(event, records)
    assert requests == [] and not asked["action"].ran and asked["action"].missing == NO_FRAMES
    result = assemble_result([], second_round(event, records, [], {}, {}, asked), gallery=None)
    assert result.status == "complete", "an ask without its input makes nothing unavailable"
    assert result.follow_ups["action"].missing == NO_FRAMES
    noted = '- action (activity recognition): "not run: asked for by a crouching posture, but the event has no frames'
    assert noted in result.prompt
    assert set(result.models) == {"pose", "threat"}


def test_the_second_round_keeps_the_first_records_and_assembles_them_all():
    event = person("f5", frame_count=4)
    records = first_round(CROUCHING)
    requests, asked = ask_followups(event, records)
    second = second_round(event, records, requests, {"action": "cpu.0"}, {"action": "t-action"}, asked, "g2")
    assert second.stage == 2 and second.planned == ["pose", "threat", "action"] and second.followups == []
    action_record = {"model": "action", "status": "ok", "data": {"top_action": "a person climbing a fence",
                                                                "confidence": 0.4, "all_scores": {}}}
    result = assemble_result([action_record], second, gallery=None)
    assert set(result.models) == {"pose", "threat", "action"} and result.status == "complete"
    assert result.follow_ups["action"].ran
    assert "a person climbing a fence" in result.prompt


FACE_BOX = [120.0, 40.0, 170.0, 100.0]


def face_record(found: bool) -> dict:
    best = {"box": FACE_BOX, "score": 0.99, "landmarks": [], "quality": 0.8} if found else None
    return {"model": "face", "status": "ok", "data": {"face_visible": found, "face_count": int(found),
                                                       "faces": [best] if found else [], "best": best}}


def test_a_face_found_by_face_detection_asks_for_age_and_gender_on_its_box():
    routed_event = person("f-face", frame_count=0)
    assert "age_gender" in routed_event.followups
    requests, asked = ask_followups(routed_event, [*first_round(UPRIGHT), face_record(True)])
    assert [r.model for r in requests] == ["age_gender"]
    assert list(requests[0].face_bbox) == FACE_BOX, "the detected face, not the top-quarter guess"
    assert asked["age_gender"].asked_by == "a face found by face detection"


def test_no_face_found_asks_for_no_age_and_gender():
    requests, asked = ask_followups(person("f-noface", frame_count=0), [*first_round(UPRIGHT), face_record(False)])
    assert requests == [] and "age_gender" not in asked
