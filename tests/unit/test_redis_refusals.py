"""Issue 28: what Redis refuses (down, restarting, full) is run again or answered, never acknowledged away.

A model record's chord join and an assembly that Redis refused used to be acknowledged all the same, leaving their
event for the sweeper; an event whose frames a full Redis refused held a router process until Redis had room (the
pool stalled). Against a real redis-server at maxmemory where it matters.
"""

from __future__ import annotations

import json

import pytest
import redis

from tasks import assemble as assembly
from tasks.celery_internals import chord_join
from tasks.ledger import DEADLINES_KEY, Ledger
from tasks.metrics import EVENTS_REFUSED_FULL, REDIS_WRITE_RETRIES
from tasks.redis_retry import until_written
from tasks.results import ResultStore
from tests.unit.test_assembly import routed

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def test_a_full_redis_is_waited_out_only_as_long_as_the_caller_says(monkeypatch):
    clock = [0.0]
    calls = []

    def write():
        calls.append(clock[0])
        raise redis.exceptions.OutOfMemoryError(OOM)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr("tasks.redis_retry.time.monotonic", lambda: clock[0])
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        until_written("test-full", write, sleep=sleep, full_for=2.0)
    assert 1.0 <= clock[0] <= 2.0 and len(calls) >= 4


def test_an_unreachable_redis_is_still_waited_out_when_full_is_not():
    errors = [redis.ConnectionError("down")] * 12
    pauses: list[float] = []

    def write() -> str:
        if errors:
            raise errors.pop(0)
        return "written"

    assert until_written("test-down", write, sleep=pauses.append, full_for=0.0) == "written"
    assert len(pauses) == 12


def test_a_chord_join_redis_refused_is_run_again(monkeypatch):
    answers: list[object] = [redis.ConnectionError("Connection reset by peer"),
                             redis.exceptions.OutOfMemoryError(OOM), "joined"]
    seen = []

    def original(self, request, state, result, propagate=None, **kwargs):
        seen.append((request, state, result))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(chord_join, "_original_on_chord_part_return", original)
    monkeypatch.setattr("tasks.redis_retry.time.sleep", lambda _: None)
    before = REDIS_WRITE_RETRIES.labels("chord_join", "unreachable")._value.get()
    assert chord_join._on_chord_part_return(object(), "request", "SUCCESS", {"model": "pose"}) == "joined"
    assert len(seen) == 3 and all(call == ("request", "SUCCESS", {"model": "pose"}) for call in seen)
    assert REDIS_WRITE_RETRIES.labels("chord_join", "unreachable")._value.get() - before == 1


def test_the_chord_join_retry_is_installed_with_the_shortcuts():
    import tasks.celery  # noqa: F401 - installs the shortcuts
    from tasks import celery_internals

    assert chord_join.installed() == celery_internals.enabled()


def test_an_assembly_redis_refused_raises_instead_of_storing_a_partial(monkeypatch):
    """The assembly is run again (assemble's until_written), not finished as 'could not be assembled'."""
    monkeypatch.setattr(assembly, "result_store", lambda: type("Empty", (), {"get": lambda self, _: None})())

    def refused(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(assembly, "assemble_result", refused)
    monkeypatch.setattr(assembly, "redis_client", lambda: None)
    monkeypatch.setattr(assembly.ReidGallery, "configured", staticmethod(lambda *a, **k: None))
    monkeypatch.setattr(assembly.SceneBaseline, "configured", staticmethod(lambda *a, **k: None))
    monkeypatch.setattr(assembly, "PictureBaseline", lambda *a, **k: None)
    monkeypatch.setattr(assembly, "Household", lambda *a, **k: None)
    with pytest.raises(redis.ConnectionError):
        assembly.finish_event([], routed("evt-refused", planned=["pose"]))


@pytest.fixture
def full_redis(redis_client, monkeypatch):
    """The stores on the test's redis-server; call it to put Redis over maxmemory (noeviction) with ballast."""
    monkeypatch.setattr(assembly, "redis_client", lambda: redis_client)
    monkeypatch.setattr(assembly, "result_store", lambda: ResultStore(redis_client, 3600))

    def fill() -> None:
        redis_client.set("ballast", b"x" * 1_000_000)
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", str(redis_client.info("memory")["used_memory"] - 10_000))
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            redis_client.set("one-more", "x")

    yield fill
    redis_client.config_set("maxmemory", "0")


def test_an_event_a_full_redis_refused_is_answered_with_the_reason_and_its_keys_removed(full_redis, redis_client):
    event = routed("evt-full", planned=["pose"])
    event.owned_keys = ["frame:evt-full:full"]
    redis_client.set("frame:evt-full:full", b"j" * 600_000)  # written before Redis filled up: the assembly frees it
    Ledger(redis_client).open(event, 300, 3600)
    redis_client.set("claim:evt-full", "router-task")
    full_redis()
    before = EVENTS_REFUSED_FULL.labels("send")._value.get()
    answer = assembly.finish_unwritten(event, "send", redis.exceptions.OutOfMemoryError(OOM))
    assert answer["status"] == "partial" and not answer["models"]
    assert "Redis was full" in answer["errors"]["storage"] and "model tasks" in answer["errors"]["storage"]
    stored = json.loads(redis_client.get("enrichment:evt-full"))
    assert stored["status"] == "partial" and stored["errors"] == answer["errors"]
    assert not redis_client.exists("frame:evt-full:full", "ledger:evt-full", "claim:evt-full")
    assert redis_client.zscore(DEADLINES_KEY, "evt-full") is None
    assert EVENTS_REFUSED_FULL.labels("send")._value.get() - before == 1


def test_an_assembly_on_a_full_redis_frees_its_frames_to_store_its_result(full_redis, redis_client):
    event = routed("evt-assembled", planned=["pose"])
    event.owned_keys = ["frame:evt-assembled:full"]
    redis_client.set("frame:evt-assembled:full", b"j" * 600_000)
    Ledger(redis_client).open(event, 300, 3600)
    full_redis()
    result = assembly.unassembled(event, RuntimeError("test"))
    payload = assembly.store_final(result, event, "assemble")
    assert payload["event_id"] == "evt-assembled"
    assert json.loads(redis_client.get("enrichment:evt-assembled"))["status"] == "partial"
    assert not redis_client.exists("frame:evt-assembled:full", "ledger:evt-assembled")


def test_a_model_task_found_nowhere_is_found_and_only_it(redis_client, monkeypatch):
    """Joined, waiting and taken tasks are accounted for; the one in none of those places is lost (tasks/resend.py)."""
    from tasks import resend
    from workers.settings import get_settings

    event = routed("evt-lost", planned=["pose", "threat", "depth", "reid"])
    event.group_id = "group-1"
    event.placement = {"pose": "cpu.1", "threat": "cpu.1", "depth": "cpu.0", "reid": "cpu.1"}
    event.task_ids = {"pose": "task-pose", "threat": "task-threat", "depth": "task-depth", "reid": "task-reid"}
    monkeypatch.setattr(resend, "redis_client", lambda: redis_client)
    monkeypatch.setattr(resend, "chord_done", lambda group_id: False)
    monkeypatch.setattr(resend, "joined_task_ids", lambda group_id: {"task-pose"})
    settings = get_settings()
    ledger = Ledger(redis_client)
    ledger.open(event, settings.event_deadline_seconds - resend.LOST_AFTER_SECONDS - 5, 3600)  # routed 35 s ago
    redis_client.set("claim:evt-lost", "router-task-id")
    redis_client.lpush("cpu.0", json.dumps({"headers": {"id": "task-depth"}}))
    redis_client.hset("unacked", "tag-1", json.dumps([{"headers": {"id": "task-threat"}}, "cpu.1", "cpu.1"]))
    lost = resend.lost_tasks(ledger, settings)
    assert [(r.event.event_id, model, submission) for r, model, submission in lost] == [
        ("evt-lost", "reid", "router-task-id")]
    # taken and not yet recorded: in its queue's taking list (tasks/celery_internals/taking.py), not lost
    redis_client.lpush("_taking.cpu.1", json.dumps({"headers": {"id": "task-reid"}}))
    assert resend.lost_tasks(ledger, settings) == []
    redis_client.delete("_taking.cpu.1")
    ledger.open(event, settings.event_deadline_seconds, 3600)  # routed just now: not looked at yet
    assert resend.lost_tasks(ledger, settings) == []


def test_a_lost_model_task_is_sent_as_the_router_sent_it(monkeypatch):
    """Same task id, group, index and chord body (the router's task id, which the claim holds) on the given queue."""
    from tasks import resend
    from workers.settings import get_settings

    event = routed("evt-resend", planned=["pose", "threat"])
    event.group_id = "group-2"
    event.task_ids = {"pose": "task-pose", "threat": "task-threat"}
    sent = {}
    monkeypatch.setattr(resend.run_model, "apply_async", lambda args, **options: sent.update(args=args, **options))
    resend.resend(event, "threat", "router-task-id", "cpu.0", get_settings())
    assert sent["task_id"] == "task-threat" and sent["queue"] == "cpu.0" and sent["group_id"] == "group-2"
    assert sent["group_index"] == 1 and sent["root_id"] == "router-task-id"
    assert sent["args"][0]["model"] == "threat" and sent["args"][0]["event_id"] == "evt-resend"
    body = sent["chord"]
    assert body.id == "router-task-id" and body.task == "assemble" and tuple(body.args) == ("evt-resend", "group-2")


def test_the_picture_baseline_waits_out_a_restart_but_names_a_full_redis():
    """A restarting Redis is the assembly's to wait out (it runs again); a full one is noted and the event says so."""
    from datetime import UTC, datetime

    from tasks.scene_context import describe_scene
    from tests.unit.test_scene_context import event
    from workers.settings import CameraSettings

    class Baseline:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def compare_and_learn(self, *args: object) -> list[str]:
            raise self.error

    detection = event("garden", datetime(2026, 1, 19, 12, 0, tzinfo=UTC))
    with pytest.raises(redis.ConnectionError):
        describe_scene(detection, None, CameraSettings(), Baseline(redis.ConnectionError("reset")), {})
    unavailable: dict[str, str] = {}
    describe_scene(detection, None, CameraSettings(), Baseline(redis.exceptions.OutOfMemoryError(OOM)), unavailable)
    assert "OOM" in unavailable["picture_baseline"]


def test_a_full_redis_wrapped_by_kombu_is_still_full():
    from kombu.exceptions import OperationalError

    from tasks.redis_retry import refusal

    assert refusal(OperationalError("command not allowed when used memory > 'maxmemory'.")) == "full"
    assert refusal(OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")) == "unreachable"


def refused_then_built(refusals: int, tries: list[int]):
    """An assemble_result whose first `refusals` calls a full Redis refuses."""
    def build(records, routed_event, *args, **kwargs):
        tries.append(1)
        if len(tries) <= refusals:
            raise redis.exceptions.OutOfMemoryError(OOM)
        return assembly.EnrichmentResult(event_id=routed_event.event.event_id, status="complete")
    return build


def test_an_assembly_whose_own_write_a_full_redis_refuses_makes_room_and_tries_once_more(full_redis, redis_client,
                                                                                          monkeypatch):
    """A gallery's or baseline's write refused on a full Redis: the frames go, the assembly runs again; refused
    again, the event ends partial naming why (never an assembly retried for as long as Redis stays full)."""
    for event_id, refusals in (("evt-room", 1), ("evt-no-room", 2)):
        event = routed(event_id, planned=["pose"])
        event.owned_keys = [f"frame:{event_id}:full"]
        redis_client.config_set("maxmemory", "0")
        redis_client.set(f"frame:{event_id}:full", b"j" * 600_000)
        Ledger(redis_client).open(event, 300, 3600)
        full_redis()
        tries: list[int] = []
        monkeypatch.setattr(assembly, "assemble_result", refused_then_built(refusals, tries))
        payload = assembly.finish_event([], event)
        assert len(tries) == 2 and not redis_client.exists(f"frame:{event_id}:full")
        if refusals == 1:
            assert payload["status"] == "complete"
        else:
            assert payload["status"] == "partial" and "OutOfMemoryError" in payload["errors"]["assembly"]
        redis_client.delete("ballast")


def test_a_model_task_reads_its_frame_again_while_redis_restarts(monkeypatch):
    """A frame read that meets a restarting Redis is read again (it ended the model's record "frame unavailable")."""
    from types import SimpleNamespace

    from workers.runtime import DeviceRuntime

    answers: list[object] = [redis.ConnectionError("Connection refused"),
                             redis.exceptions.BusyLoadingError("LOADING Redis is loading the dataset"), "inputs"]

    def inputs_for(request, with_buffer=True, shared=None):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr("workers.runtime.time.sleep", lambda _: None)
    runtime = SimpleNamespace(settings=SimpleNamespace(model_soft_time_limit=20.0), inputs_for=inputs_for)
    request = SimpleNamespace(event_id="evt-frame")
    assert DeviceRuntime.inputs_waiting_for_redis(runtime, request) == "inputs"
    gone = SimpleNamespace(settings=SimpleNamespace(model_soft_time_limit=20.0),
                           inputs_for=lambda request, with_buffer=True, shared=None: (_ for _ in ()).throw(LookupError("gone")))
    with pytest.raises(LookupError):  # an expired frame is not waited for
        DeviceRuntime.inputs_waiting_for_redis(gone, request)


def test_a_chord_whose_assembly_message_is_found_nowhere_runs_again(redis_client, monkeypatch):
    """Its join is done (the records left with the callback's message) and no queue or worker holds the assembly."""
    from tasks import resend
    from workers.settings import get_settings

    event = routed("evt-callback", planned=["pose"])
    event.group_id, event.task_ids, event.placement = "group-3", {"pose": "task-pose"}, {"pose": "cpu.0"}
    monkeypatch.setattr(resend, "redis_client", lambda: redis_client)
    monkeypatch.setattr(resend, "chord_done", lambda group_id: True)
    settings = get_settings()
    ledger = Ledger(redis_client)
    ledger.open(event, settings.event_deadline_seconds - resend.LOST_AFTER_SECONDS - 5, 3600)
    redis_client.set("claim:evt-callback", "router-task-id")
    redis_client.lpush("assemble", json.dumps({"headers": {"id": "router-task-id"}}))
    assert resend.lost_tasks(ledger, settings) == []  # its assembly waits in the assemble queue
    redis_client.delete("assemble")
    assert [(model, submission) for _, model, submission in resend.lost_tasks(ledger, settings)] == [
        (None, "router-task-id")]

