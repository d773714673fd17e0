"""What Flower and `celery events` see: every task of an event announces itself, batched, under its own name."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from scripts.fixtures.sample_events import person_event

pytestmark = pytest.mark.integration

PERSON_MODELS = {"clothing", "pose", "threat", "reid", "depth", "face", "florence", "clip",
                 "age_gender"}  # age_gender: the face found by face detection asks for it in a second round


class Listener:
    """A celery events receiver in a thread, collecting event types by task id and task names by id."""

    def __init__(self, app):
        self.app = app
        self.types: dict[str, list[str]] = defaultdict(list)
        self.names: dict[str, str] = {}
        self.batched = 0
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stop = False

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
            self.ready.set()
            for _ in receiver.itercapture(limit=None, timeout=None, wakeup=False):
                if self.stop:
                    return

    def _on_event(self, event: dict) -> None:
        if "uuid" in event:
            self.types[event["uuid"]].append(event["type"])
            if event.get("name"):
                self.names.setdefault(event["uuid"], event["name"])

    def wait_for(self, task_ids: list[str], kind: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(kind in self.types.get(task_id, []) for task_id in task_ids):
                return True
            time.sleep(0.05)
        return False


def test_every_task_of_an_event_is_seen_received_started_and_succeeded(pool):
    listener = Listener(pool.client.app)
    listener.thread.start()
    assert listener.ready.wait(10)
    time.sleep(0.5)  # the receiver's subscription is in place before the event is sent

    submitted = pool.client.submit(person_event("it-task-events"))
    result = submitted.get(timeout=300)
    assert result["status"] == "complete", result["errors"]

    def model_ids() -> list[str]:
        return [tid for tid, name in list(listener.names.items()) if name.startswith("run_model:")]

    deadline = time.monotonic() + 5
    while len(model_ids()) < len(PERSON_MODELS) and time.monotonic() < deadline:
        time.sleep(0.05)
    model_ids = model_ids()
    assert listener.wait_for(model_ids + [submitted.id], "task-succeeded", timeout=5), dict(listener.types)
    listener.stop = True

    names = {listener.names[tid] for tid in model_ids}
    assert names == {f"run_model:{model}" for model in PERSON_MODELS}, "Flower tells model tasks apart by name"
    for task_id in model_ids:
        seen = listener.types[task_id]
        assert seen[:1] == ["task-received"] and "task-started" in seen and seen[-1] == "task-succeeded", seen
    # the router's own task and the assembly that answers under its id
    assert {"task-received", "task-succeeded"} <= set(listener.types[submitted.id])
