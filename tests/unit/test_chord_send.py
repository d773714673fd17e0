"""send_chord publishes what Celery's canvas chord publishes for a flat header (ids, group, order, body)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import Celery, chord, group

from tasks.celery_internals.chords import send_chord

QUEUES = ("device.a", "device.b")


@pytest.fixture
def app() -> Celery:
    app = Celery("chord_send_test", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_serializer = "json"

    @app.task(name="part", shared=False)
    def part(x: int) -> int:
        return x

    @app.task(name="collect", shared=False)
    def collect(results: list[int], note: str) -> str:
        return note

    @app.task(name="then", shared=False)
    def then(value: str) -> str:
        return value

    return app


def header(app: Celery) -> list[Any]:
    return [app.tasks["part"].si(i).set(queue=QUEUES[i % 2], task_id=f"part-{i}", argsrepr=f"({i})")
            for i in range(3)]


def drained(app: Celery) -> list[dict[str, Any]]:
    """Every message on the test queues, as (headers, body) decoded from the memory transport."""
    messages = []
    with app.connection_for_read() as connection:
        for name in QUEUES:
            queue = connection.SimpleQueue(name)
            while queue.qsize():
                message = queue.get(timeout=1)
                messages.append({"headers": message.headers, "body": json.loads(message.body)})
                message.ack()
            queue.close()
    return sorted(messages, key=lambda m: m["headers"]["id"])


def chord_sizes(app: Celery, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    sizes: list[tuple[str, int]] = []
    monkeypatch.setattr(app.backend, "set_chord_size", lambda gid, size: sizes.append((gid, size)))
    return sizes


def essentials(message: dict[str, Any]) -> dict[str, Any]:
    headers, (args, kwargs, embed) = message["headers"], message["body"]
    body = embed["chord"]
    chain = body["kwargs"].get("tasks", [])
    # the chain's own id and its last task's are fixed; a middle task's id is fresh on every send
    body_ids = [body["options"].get("task_id"), len(chain), chain[-1]["options"]["task_id"] if chain else None]
    return {
        "id": headers["id"], "task": headers["task"], "group": headers["group"], "group_index": headers["group_index"],
        "root_id": headers["root_id"], "parent_id": headers["parent_id"], "argsrepr": headers["argsrepr"],
        "args": args, "kwargs": kwargs, "body_task": body["task"], "body_args": body["args"], "body_ids": body_ids,
    }


@pytest.mark.parametrize("chained", [False, True])
def test_send_chord_matches_the_canvas(app: Celery, monkeypatch: pytest.MonkeyPatch, chained: bool) -> None:
    def body() -> Any:
        sig = app.tasks["collect"].s("note")
        return sig | app.tasks["then"].s() if chained else sig

    sizes = chord_sizes(app, monkeypatch)
    work = chord(header(app), body())
    work.tasks = group(header(app)).set(task_id="group-1")
    work.freeze("router-1")
    work.set(root_id="root-1", parent_id="router-1")
    work.apply_async()
    canvas = drained(app)

    send_chord(app, header(app), body(), group_id="group-1", body_id="router-1", root_id="root-1",
               parent_id="router-1")
    ours = drained(app)

    assert sizes == [("group-1", 3), ("group-1", 3)]
    assert [m["headers"]["id"] for m in ours] == ["part-0", "part-1", "part-2"]
    assert [essentials(m) for m in ours] == [essentials(m) for m in canvas]
    body_ids = essentials(ours[0])["body_ids"]
    assert body_ids[0] == "router-1" and body_ids[-1] in ("router-1", None), (
        "the result a caller waits for is the body's last task, under the router's id")
    assert {m["headers"]["group_index"] for m in ours} == {0, 1, 2}


def test_an_empty_header_is_refused(app: Celery) -> None:
    with pytest.raises(ValueError):
        send_chord(app, [], app.tasks["collect"].s("note"), group_id="g", body_id="b", root_id="r", parent_id="p")
