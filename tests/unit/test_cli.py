"""The model-zoo command line against a real redis-server: results, completions, submission and friendly errors."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from tasks import cli
from tasks.cli import app, build_event, parse_box, redacted
from tasks.local_pool import free_port
from tasks.results import ResultStore
from tasks.schemas import DetectionEvent, EnrichmentResult
from workers.records import ModelRecord

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_ambient_password(monkeypatch):
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)


def invoke(redis_server, *args: str):
    return runner.invoke(app, ["--redis-url", redis_server.url, *args])


def stored_result(event_id: str) -> EnrichmentResult:
    return EnrichmentResult(
        event_id=event_id, status="partial", camera_id="front_door", detection_type="person",
        models={
            "pose": ModelRecord(model="pose", status="ok", data={"posture": "crouching"}, device="cpu",
                                worker="cpu0@host", cache_hit=True, load_ms=0.0, infer_ms=12.5),
            "threat": ModelRecord(model="threat", status="error", error="load failed: weights missing"),
        },
        prompt="## PERSON\nPosture: crouching", context_attributes=3, errors={"threat": "load failed: weights missing"},
    )


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "frame.png"
    Image.new("RGB", (64, 48), (40, 90, 160)).save(path)
    return path


def test_parse_box_accepts_four_ordered_numbers():
    assert parse_box("10, 20,110,220") == (10, 20, 110, 220)
    assert parse_box("1.5,2,3,4") == (1.5, 2, 3, 4)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,5,20", "1,2,3,4,5"])
def test_parse_box_refuses_malformed_boxes(text):
    with pytest.raises(typer.BadParameter):
        parse_box(text)


def test_redacted_hides_the_password_only():
    assert redacted("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redacted("redis://user:s3cret@redis:6379/0") == "redis://user:***@redis:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_built_event_passes_the_routers_schema():
    event = build_event(b"jpeg", (1, 2, 30, 40), "car", "driveway", "cli-1", face=(2, 3, 10, 12), suspicious=70)
    parsed = DetectionEvent.model_validate(event)
    assert parsed.detection_type == "vehicle" and parsed.face_visible and parsed.suspicious_score == 70
    assert base64.b64decode(event["image"]) == b"jpeg"


def test_show_unknown_event_exits_1_and_says_so(redis_server, redis_client):
    result = invoke(redis_server, "show", "no-such-event")
    assert result.exit_code == 1
    assert "no result stored for event 'no-such-event'" in result.output
    assert "Traceback" not in result.output


def test_show_prints_a_stored_result(redis_server, redis_client, monkeypatch):
    monkeypatch.setattr(cli.console, "width", 160)  # a wide terminal: table cells are not wrapped
    ResultStore(redis_client, ttl_seconds=60).save(stored_result("evt-show"))
    result = invoke(redis_server, "show", "evt-show")
    assert result.exit_code == 0, result.output
    for text in ("evt-show", "partial", "pose", "crouching", "threat", "load failed: weights missing", "front_door"):
        assert text in result.output


def test_show_json_is_the_stored_document(redis_server, redis_client):
    saved = ResultStore(redis_client, ttl_seconds=60).save(stored_result("evt-json"))
    result = invoke(redis_server, "show", "evt-json", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == saved


@pytest.mark.parametrize("command", [["show", "x"], ["tail", "--count", "1"], ["models"]])
def test_unreachable_redis_is_one_line_and_exit_2(command):
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = runner.invoke(app, ["--redis-url", url, *command])
    assert result.exit_code == 2
    assert f"cannot reach Redis at {url}" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_unreachable_redis_message_hides_the_password(photo):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = runner.invoke(app, ["--redis-url", url, "submit", str(photo), "--box", "1,1,20,20", "--no-wait"])
    assert result.exit_code == 2
    assert "hunter2" not in result.output and ":***@" in result.output


def test_tail_prints_a_completion_published_while_it_listens(redis_server, redis_client):
    store = ResultStore(redis_client, ttl_seconds=60)
    delivered = threading.Event()

    def publish_until_heard() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not delivered.is_set():
            (_, listeners), = redis_client.pubsub_numsub("enrichment.completed")
            if listeners:
                store.save(stored_result("evt-tail"))
                delivered.set()
            time.sleep(0.05)

    thread = threading.Thread(target=publish_until_heard, daemon=True)
    thread.start()
    result = invoke(redis_server, "tail", "--count", "1")
    thread.join(timeout=5)
    assert delivered.is_set()
    assert result.exit_code == 0, result.output
    assert "evt-tail" in result.stdout and "partial" in result.stdout and "1/2 models ok" in result.stdout


def test_submit_no_wait_queues_the_event_and_returns_a_task_id(redis_server, redis_client, photo):
    result = invoke(redis_server, "submit", str(photo), "--box", "4,4,40,40", "--face", "10,6,20,16",
                    "--event-id", "evt-submit", "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert reply["event_id"] == "evt-submit" and reply["task_id"]
    queued = [json.loads(raw) for raw in redis_client.lrange("router", 0, -1)]
    assert [m["headers"]["id"] for m in queued] == [reply["task_id"]]
    assert queued[0]["headers"]["task"] == "enrich_detection"
    assert queued[0]["properties"]["body_encoding"] is None, "the body travels as JSON text, not base64 of it"
    (event,), _, _ = json.loads(queued[0]["body"])
    assert event["event_id"] == "evt-submit" and event["face_visible"] and event["bbox"] == [4, 4, 40, 40]
    # the frame is carried once: uploaded raw by the client, the event names its key
    assert "image" not in event and event["image_key"].startswith("frame-upload:")
    assert Image.open(io.BytesIO(redis_client.get(event["image_key"]))).size == (64, 48)
    assert 0 < redis_client.ttl(event["image_key"]) <= 900


def test_submit_missing_image_is_a_clear_error(redis_server, tmp_path):
    result = invoke(redis_server, "submit", str(tmp_path / "nope.jpg"), "--box", "1,1,2,2")
    assert result.exit_code == 1
    assert "cannot read image" in result.output and "nope.jpg" in result.output
    assert "Traceback" not in result.output


def test_submit_refuses_a_file_that_is_not_an_image(redis_server, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    result = invoke(redis_server, "submit", str(text), "--box", "1,1,2,2")
    assert result.exit_code == 1
    assert "is not a readable image" in result.output


def test_submit_waits_and_reports_a_timeout_when_no_worker_runs(redis_server, redis_client, photo):
    result = invoke(redis_server, "submit", str(photo), "--box", "4,4,40,40", "--event-id", "evt-wait", "--timeout", "1")
    assert result.exit_code == 1
    assert "no result for evt-wait within 1s" in result.output
