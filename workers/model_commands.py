"""Preload and unload commands for the process that holds a device worker's model cache, and their replies.

A remote-control command runs in the Celery worker's main process. In a threads pool that process holds the
cache: the command runs there (`local_executor()`). Under prefork the main process is the parent, which holds
no models; it publishes the command on `workers:commands:<worker>`, where the child's listener thread
(`listen`) picks it up. Either way the outcome is pushed to `workers:command-replies:<id>` (a list with a
TTL), where the caller (`model-zoo preload`) waits for it; the control command itself answers at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

log = logging.getLogger(__name__)

COMMAND_CHANNEL_PREFIX = "workers:commands:"
REPLY_KEY_PREFIX = "workers:command-replies:"
REPLY_TTL_SECONDS = 600
ACTIONS = ("preload", "unload")


def command_channel(worker: str) -> str:
    return COMMAND_CHANNEL_PREFIX + worker


def reply_key(command_id: str) -> str:
    return REPLY_KEY_PREFIX + command_id


@dataclass(frozen=True)
class ModelCommand:
    """Load (`preload`) or unload these models in one worker's cache; the outcome goes to reply_key(id)."""

    action: str
    models: tuple[str, ...]
    worker: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown model command {self.action!r}; known: {', '.join(ACTIONS)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ModelCommand:
        data = json.loads(raw)
        return cls(action=data["action"], models=tuple(data["models"]), worker=data["worker"], id=data["id"],
                   sent_at=float(data.get("sent_at", 0.0)))


Executor = Callable[[ModelCommand], dict[str, Any]]  # runs a command in the process holding the cache

_local: dict[str, Executor] = {}  # the executor of the cache this process holds (a threads pool's runtime)
_local_lock = threading.Lock()


def register_local(executor: Executor) -> None:
    """This process holds a model cache: commands for it may run here instead of going through Redis."""
    with _local_lock:
        _local["executor"] = executor


def unregister_local(executor: Executor) -> None:
    with _local_lock:
        if _local.get("executor") == executor:
            _local.pop("executor")


def local_executor() -> Executor | None:
    with _local_lock:
        return _local.get("executor")


def send_reply(client: redis.Redis, command: ModelCommand, outcome: dict[str, Any]) -> None:
    """Push the outcome where the caller waits for it (kept REPLY_TTL_SECONDS for a caller that gave up)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.rpush(reply_key(command.id), json.dumps(outcome)).expire(reply_key(command.id), REPLY_TTL_SECONDS)
        pipe.execute()


def execute_and_reply(client: redis.Redis, command: ModelCommand, execute: Executor) -> dict[str, Any]:
    """Run the command and push its outcome; a failure is an outcome too."""
    try:
        outcome = execute(command)
    except Exception as exc:  # the caller is waiting: tell it
        log.exception("model command %s failed", command.action)
        outcome = {"worker": command.worker, "action": command.action, "error": f"{type(exc).__name__}: {exc}"}
    try:
        send_reply(client, command, outcome)
    except redis.RedisError as exc:
        log.warning("could not reply to model command %s: %s", command.id, exc)
    return outcome


def run_in_background(client: redis.Redis, command: ModelCommand, execute: Executor) -> threading.Thread:
    """execute_and_reply in a daemon thread, so a control command answers before the models are loaded."""
    thread = threading.Thread(target=execute_and_reply, args=(client, command, execute),
                              name=f"model-command-{command.action}", daemon=True)
    thread.start()
    return thread


def publish_command(client: redis.Redis, command: ModelCommand) -> int:
    """Hand the command to the worker's model process through Redis; how many listeners received it."""
    return int(client.publish(command_channel(command.worker), command.to_json()))


def listen(client: redis.Redis, worker: str, execute: Executor, stop: threading.Event, poll_seconds: float = 1.0,
           subscribed: threading.Event | None = None) -> None:
    """Run commands published for worker, one at a time, until stop is set (the model process's listener thread).

    Errors (Redis gone, the client closed) are logged and the subscription is renewed after poll_seconds.
    """
    while not stop.is_set():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(command_channel(worker))
            if subscribed is not None:
                subscribed.set()
            while not stop.is_set():
                message = pubsub.get_message(timeout=poll_seconds)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    command = ModelCommand.from_json(message["data"])
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("ignoring malformed model command: %s", exc)
                    continue
                execute_and_reply(client, command, execute)
        except Exception as exc:  # Redis went away, or its client was closed under us: renew unless stopping
            if not stop.is_set():
                log.warning("model command listener lost Redis: %s", exc)
                stop.wait(poll_seconds)
        finally:
            try:
                pubsub.close()
            except Exception:
                pass


def wait_for_replies(client: redis.Redis, command_ids: dict[str, str], timeout: float) -> dict[str, dict[str, Any]]:
    """The outcome of each command (worker -> command id) that arrives within timeout, by worker."""
    deadline = time.monotonic() + timeout
    outcomes: dict[str, dict[str, Any]] = {}
    for worker, command_id in command_ids.items():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        popped = client.blpop([reply_key(command_id)], timeout=max(remaining, 0.01))
        if popped is not None:
            outcomes[worker] = json.loads(popped[1])
    return outcomes
