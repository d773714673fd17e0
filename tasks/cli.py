"""`model-zoo`: the operator's command line for submitting events, reading results and watching the pool.

Exit codes: 0 done, 1 the request failed (unknown event id, unreadable image, timeout, failed task),
2 Redis cannot be reached (or a usage error, as typer reports it).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import redis
import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from tasks.household_cli import household_app
from tasks.results import COMPLETED_CHANNEL
from workers.settings import Settings, with_password

if TYPE_CHECKING:
    from celery.result import AsyncResult

    from tasks.client import EnrichmentClient

UNREACHABLE_EXIT = 2
STATUS_COLOURS = {"complete": "green", "partial": "yellow", "rejected": "red"}
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Submit events to the Model Zoo pool and read results.")
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)
app.add_typer(household_app, name="household")  # members, faces, vehicles, named identities (tasks/household_cli.py)


# -- values ---------------------------------------------------------------------------------------------
Box = tuple[int | float, int | float, int | float, int | float]


def parse_box(text: str) -> Box:
    """'x1,y1,x2,y2' in pixels -> a box with x2 > x1 and y2 > y1 (integers stay integers)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not four numbers x1,y1,x2,y2") from None
    if len(numbers) != 4:
        raise typer.BadParameter(f"{text!r} has {len(numbers)} numbers, a box needs four: x1,y1,x2,y2")
    x1, y1, x2, y2 = (int(n) if n.is_integer() else n for n in numbers)
    if x2 <= x1 or y2 <= y1:
        raise typer.BadParameter(f"{text!r}: x2 must exceed x1 and y2 must exceed y1")
    return x1, y1, x2, y2


def redacted(url: str) -> str:
    """The URL with any password replaced, for messages."""
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def build_event(image: bytes, box: Box, detection_type: str, camera: str, event_id: str,
                face: Box | None = None, suspicious: float = 0.0, timestamp: str | None = None) -> dict[str, Any]:
    """The enrich_detection event for one image file (the frame travels as base64)."""
    event: dict[str, Any] = {
        "event_id": event_id, "camera_id": camera, "detection_type": detection_type, "confidence": 1.0,
        "timestamp": timestamp or datetime.now(UTC).isoformat(), "bbox": list(box),
        "face_visible": face is not None, "suspicious_score": suspicious,
        "image": base64.b64encode(image).decode(),
    }
    if face is not None:
        event["face_bbox"] = list(face)
    return event


def new_event_id() -> str:
    return f"cli-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


# -- output ---------------------------------------------------------------------------------------------
def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code)


def models_table(models: dict[str, dict[str, Any]]) -> Table:
    table = Table("model", "status", "worker", "device", "hit", "load ms", "infer ms", "error")
    for name, record in models.items():
        colour = "green" if record.get("status") == "ok" else "yellow"
        table.add_row(
            name, f"[{colour}]{record.get('status')}[/{colour}]", record.get("worker") or "-", record.get("device") or "-",
            "yes" if record.get("cache_hit") else "no", f"{record.get('load_ms', 0):.0f}",
            f"{record.get('infer_ms', 0):.0f}", record.get("error") or "",
        )
    return table


def print_result(result: dict[str, Any]) -> None:
    """Status line, per-model table, errors and the Nemotron prompt of one stored result."""
    status = result.get("status", "?")
    colour = STATUS_COLOURS.get(status, "white")
    console.rule(f"[bold]{result.get('event_id')}[/bold]  [{colour}]{status}[/{colour}]")
    console.print(
        f"camera {result.get('camera_id') or '-'}  detection {result.get('detection_type') or '-'}  "
        f"context attributes {result.get('context_attributes', 0)}  timings {result.get('timings') or {}}"
    )
    if result.get("models"):
        console.print(models_table(result["models"]))
    for field, reason in (result.get("errors") or {}).items():
        if field not in (result.get("models") or {}):  # model errors are already in the table
            console.print(f"[red]{field}[/red]: {reason}")
    if result.get("risk"):
        console.print(Panel(json.dumps(result["risk"], indent=2), title="Nemotron risk", expand=False))
    if result.get("prompt"):
        console.print(Panel(result["prompt"], title="Nemotron prompt", expand=False))


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


# -- connections ----------------------------------------------------------------------------------------
def redis_url(ctx: typer.Context) -> str:
    return ctx.obj["redis_url"]


def connect(url: str) -> redis.Redis:
    """A client that has answered PING; otherwise one clear line and exit code 2."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        fail(f"cannot reach Redis at {redacted(url)}: {exc}", UNREACHABLE_EXIT)
    return client


def enrichment_client(url: str) -> EnrichmentClient:
    """The backend's client, once Redis has answered (celery would otherwise retry the broker forever)."""
    from tasks.client import EnrichmentClient

    connect(url).close()
    return EnrichmentClient(url)


def stop_waiting(pending: AsyncResult) -> None:
    """Unsubscribe from a task's result while Redis is still there (AsyncResult.__del__ would try it later)."""
    with contextlib.suppress(Exception):
        pending.backend.remove_pending_result(pending)


@app.callback()
def main(
    ctx: typer.Context,
    url: str = typer.Option(None, "--redis-url", show_default="REDIS_URL or redis://127.0.0.1:6379/0",
                            help="Broker and result store; REDIS_PASSWORD is added when the URL has none"),
) -> None:
    """Submit events to the Model Zoo pool and read results."""
    settings = Settings()
    ctx.obj = {"redis_url": with_password(url or settings.redis_url, settings.redis_password)}


# -- commands -------------------------------------------------------------------------------------------
@app.command()
def submit(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="JPEG/PNG frame to enrich"),
    box: str = typer.Option(..., "--box", help="Detection box x1,y1,x2,y2 in pixels"),
    detection_type: str = typer.Option("person", "--type", help="Detector label: person, car, dog ..."),
    camera: str = typer.Option("cli", "--camera", help="camera_id of the event"),
    face: str | None = typer.Option(None, "--face", help="Face box x1,y1,x2,y2 (marks the face visible)"),
    suspicious: float = typer.Option(0.0, "--suspicious", min=0, max=100, help="suspicious_score 0-100"),
    event_id: str | None = typer.Option(None, "--event-id", help="Default: a new cli-<time>-<random> id"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the assembled result"),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the result"),
    as_json: bool = typer.Option(False, "--json", help="Print raw JSON"),
) -> None:
    """Enrich one image file: submit the event, wait for the result, print its summary and prompt."""
    event = build_event(read_image(image), parse_box(box), detection_type, camera, event_id or new_event_id(),
                        face=parse_box(face) if face else None, suspicious=suspicious)
    client = enrichment_client(redis_url(ctx))
    pending = None
    try:
        pending = client.submit(event)
        if not wait:
            print_submitted(event["event_id"], pending.id, as_json)
            return
        result = wait_for(pending, event["event_id"], timeout, f"enriching {event['event_id']} ({image.name})")
        print_json(result) if as_json else print_result(result)
    finally:
        if pending is not None:
            stop_waiting(pending)
        client.close()


def read_image(image: Path) -> bytes:
    """The file's bytes, once PIL agrees it is an image; otherwise one clear line and exit code 1."""
    try:
        data = image.read_bytes()
    except OSError as exc:
        fail(f"cannot read image {image}: {exc.strerror or exc}")
    try:
        from PIL import Image

        Image.open(io.BytesIO(data)).verify()
    except Exception as exc:
        fail(f"{image} is not a readable image ({exc})")
    return data


def print_submitted(event_id: str, task_id: str, as_json: bool) -> None:
    if as_json:
        print_json({"event_id": event_id, "task_id": task_id})
    else:
        console.print(f"submitted {event_id}  task {task_id}\nread it later with: model-zoo show {event_id}")


def wait_for(pending: AsyncResult, event_id: str, timeout: float, status: str) -> dict[str, Any]:
    """The task's result within timeout, with a spinner; a timeout, lost Redis or failed task ends the command."""
    from celery.exceptions import TimeoutError as ResultTimeout

    try:
        with console.status(status):
            return pending.get(timeout=timeout)
    except ResultTimeout:
        fail(f"no result for {event_id} within {timeout:g}s (is a worker running?); "
             f"try later: model-zoo show {event_id}")
    except redis.RedisError as exc:
        fail(f"lost Redis while waiting: {exc}", UNREACHABLE_EXIT)
    except Exception as exc:
        fail(f"task for {event_id} failed: {type(exc).__name__}: {exc}")


@app.command()
def show(ctx: typer.Context, event_id: str = typer.Argument(..., help="The event's id"),
         as_json: bool = typer.Option(False, "--json", help="Print raw JSON")) -> None:
    """Print the stored result of one event (enrichment:<event_id>)."""
    from tasks.results import ResultStore

    client = connect(redis_url(ctx))
    try:
        result = ResultStore(client, ttl_seconds=0).get(event_id)
    finally:
        client.close()
    if result is None:
        fail(f"no result stored for event {event_id!r} (unknown id, still running, or expired after RESULT_TTL_SECONDS)")
    if as_json:
        print_json(result)
    else:
        print_result(result)


@app.command()
def models(ctx: typer.Context, timeout: float = typer.Option(2.0, help="Seconds to wait for workers' replies"),
           as_json: bool = typer.Option(False, "--json", help="Print raw JSON")) -> None:
    """Models each worker holds, with memory use (the loaded_models remote-control command)."""
    client = enrichment_client(redis_url(ctx))
    try:
        replies = client.app.control.broadcast("loaded_models", reply=True, timeout=timeout)
    finally:
        client.close()
    states = {node: state for reply in replies or [] for node, state in reply.items()}
    if as_json:
        print_json(states)
        return
    if not states:
        fail(f"no worker answered within {timeout:g}s")
    console.print(loaded_models_table(states))


def megabytes(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def loaded_models_table(states: dict[str, dict[str, Any]]) -> Table:
    """Per worker and model: the bytes charged, the estimate and the measurement side by side; totals per worker."""
    table = Table("worker", "queue", "device", "model", "priority", "MB charged", "MB estimated", "MB measured",
                  "hits", "idle s")
    for node, state in sorted(states.items()):
        where = (node, state.get("queue", "-"), state.get("device", "-"))
        held = state.get("models") or []
        if not held:
            table.add_row(*where, "[dim]none[/dim]", *[""] * 6)
        for model in held:
            table.add_row(*where, model["name"], model.get("priority", ""), megabytes(model.get("bytes", 0)),
                          megabytes(model.get("estimated_bytes")), megabytes(model.get("measured_bytes")),
                          str(model.get("hits", "")), f"{model.get('last_used_age_s', 0):.0f}")
            where = ("", "", "")
        if "budget_bytes" in state:
            unmeasured = state.get("unmeasured") or []
            note = f" ({', '.join(unmeasured)} not measured yet)" if unmeasured else ""
            used = f"used {state['used_bytes'] / 2**20:.0f} of {state['budget_bytes'] / 2**20:.0f} MB{note}"
            table.add_row("", "", "", f"[dim]{used}[/dim]", "", "", megabytes(state.get("estimated_bytes")),
                          megabytes(state.get("measured_bytes")), "", "", end_section=True)
    return table


def device_workers(client: redis.Redis) -> list[str]:
    """Device workers that published their state within three heartbeats."""
    from workers.state import live_workers

    return [state.worker for state in live_workers(client, Settings().worker_state_max_age_seconds)]


def model_command(ctx: typer.Context, action: str, names: list[str], workers: list[str], timeout: float,
                  as_json: bool) -> None:
    """Send preload/unload to device workers, wait for each outcome, print them; exit 1 unless every model did."""
    from workers.model_commands import wait_for_replies

    command = {"preload": "preload_models", "unload": "unload_model"}[action]
    url = redis_url(ctx)
    client = enrichment_client(url)
    store = connect(url)
    try:
        targets = workers or device_workers(store)
        if not targets:
            fail("no device worker is running (none has published its state to Redis)")
        replies = client.app.control.broadcast(command, arguments={"models": names}, destination=targets, reply=True,
                                               timeout=min(timeout, 5.0))
        answers = {node: answer for reply in replies or [] for node, answer in reply.items()}
        requests = {node: answer["request"] for node, answer in answers.items() if "request" in answer}
        with console.status(f"{action}ing {', '.join(names)} on {', '.join(sorted(requests)) or 'no worker'}"):
            outcomes = wait_for_replies(store, requests, timeout)
    except redis.RedisError as exc:
        fail(f"lost Redis: {exc}", UNREACHABLE_EXIT)
    finally:
        store.close()
        client.close()
    report = {node: outcomes.get(node) or answers.get(node) or {"error": f"no answer within {timeout:g}s"}
              for node in targets}
    if as_json:
        print_json(report)
    else:
        console.print(model_command_table(report))
    if not all(outcome_succeeded(outcome) for outcome in report.values()):
        raise typer.Exit(1)


GOOD_OUTCOMES = {"loaded", "already loaded", "unloaded", "not loaded"}


def outcome_succeeded(outcome: dict[str, Any]) -> bool:
    results = outcome.get("results")
    return bool(results) and "error" not in outcome and all(r.get("status") in GOOD_OUTCOMES for r in results)


def model_command_table(report: dict[str, dict[str, Any]]) -> Table:
    table = Table("worker", "model", "status", "load ms", "MB", "detail")
    for node, outcome in sorted(report.items()):
        if "results" not in outcome:
            reason = (outcome.get("error") or outcome.get("skipped")
                      or f"request {outcome.get('request')} sent, no outcome yet")
            table.add_row(node, "-", "[red]no outcome[/red]", "", "", reason)
            continue
        for result in outcome["results"]:
            colour = "green" if result.get("status") in GOOD_OUTCOMES else "yellow"
            size = result.get("bytes") or result.get("freed_bytes")
            table.add_row(node, result["model"], f"[{colour}]{result['status']}[/{colour}]",
                          "" if result.get("load_ms") is None else f"{result['load_ms']:.0f}",
                          "" if size is None else megabytes(size), result.get("detail", ""))
        used = f"used {outcome['used_bytes'] / 2**20:.0f} of {outcome['budget_bytes'] / 2**20:.0f} MB"
        held = ", ".join(outcome.get("models") or []) or "nothing"
        table.add_row("", f"[dim]{used}: {held}[/dim]", "", "", "", "", end_section=True)
    return table


@app.command()
def preload(ctx: typer.Context, models: list[str] = typer.Argument(..., help="Model names (threat, clothing ...)"),
            worker: list[str] = typer.Option([], "--worker", help="Device worker node (repeat); default: every one"),
            timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the loads"),
            as_json: bool = typer.Option(False, "--json", help="Print raw JSON")) -> None:
    """Load models into device workers' caches now (the preload_models remote-control command)."""
    model_command(ctx, "preload", models, worker, timeout, as_json)


@app.command()
def unload(ctx: typer.Context, models: list[str] = typer.Argument(..., help="Model names"),
           worker: list[str] = typer.Option([], "--worker", help="Device worker node (repeat); default: every one"),
           timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the unloads"),
           as_json: bool = typer.Option(False, "--json", help="Print raw JSON")) -> None:
    """Unload models from device workers' caches now (the unload_model remote-control command)."""
    model_command(ctx, "unload", models, worker, timeout, as_json)


@app.command()
def tail(ctx: typer.Context, count: int = typer.Option(0, "--count", min=0, help="Stop after this many events (0: forever)"),
         as_json: bool = typer.Option(False, "--json", help="One JSON object per line")) -> None:
    """Print events as they complete (the enrichment.completed channel), with each stored result's summary."""
    from tasks.results import ResultStore

    client = connect(redis_url(ctx))
    store = ResultStore(client, ttl_seconds=0)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(COMPLETED_CHANNEL)
    if not as_json:
        errors.print(f"[dim]listening on {COMPLETED_CHANNEL} at {redacted(redis_url(ctx))}; Ctrl-C to stop[/dim]")
    seen = 0
    try:
        while not count or seen < count:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            seen += 1
            announced = json.loads(message["data"])
            stored = store.get(announced.get("event_id", "")) or {}
            if as_json:
                typer.echo(json.dumps(announced))
                continue
            records = stored.get("models") or {}
            ok = sum(1 for r in records.values() if r.get("status") == "ok")
            status = announced.get("status", "?")
            colour = STATUS_COLOURS.get(status, "white")
            console.print(
                f"{time.strftime('%H:%M:%S')}  {announced.get('event_id')}  [{colour}]{status}[/{colour}]  "
                f"{stored.get('detection_type') or '-'} on {stored.get('camera_id') or '-'}  {ok}/{len(records)} models ok"
            )
    except KeyboardInterrupt:
        pass
    except redis.RedisError as exc:
        fail(f"lost Redis: {exc}", UNREACHABLE_EXIT)
    finally:
        pubsub.close()
        client.close()


def basic_auth_problem(credentials: str) -> str | None:
    """Why 'user:password[,user2:password2]' is not usable as Flower's basic auth, or None when it is."""
    for entry in credentials.split(","):
        user, _, password = entry.partition(":")
        if not user.strip() or not password:
            return "basic auth must be user:password (comma-separate several), with a user and a password in each"
    return None


def flower_command(address: str, port: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tasks", "flower", f"--address={address}", f"--port={port}", *extra]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(
    ctx: typer.Context,
    basic_auth: str | None = typer.Option(None, "--basic-auth", show_default="FLOWER_BASIC_AUTH",
                                          help="user:password (comma-separate several); required"),
    address: str = typer.Option("127.0.0.1", help="Address Flower listens on"),
    port: int = typer.Option(5555, help="Flower's port"),
) -> None:
    """Run Flower for the pool behind basic auth; refuses to start without credentials. Extra options go to Flower."""
    secret = Settings().flower_basic_auth
    credentials = basic_auth or (secret.get_secret_value() if secret else None)
    if not credentials:
        fail("Flower needs basic auth: set FLOWER_BASIC_AUTH=user:password or pass --basic-auth user:password "
             "(this command never serves Flower to strangers)", UNREACHABLE_EXIT)
    problem = basic_auth_problem(credentials)
    if problem:
        fail(problem, UNREACHABLE_EXIT)
    # The credentials travel in Flower's own environment variable, not on its command line (where `ps` shows them).
    env = os.environ | {"REDIS_URL": redis_url(ctx), "FLOWER_BASIC_AUTH": credentials}
    command = flower_command(address, port, ctx.args)
    errors.print(f"Flower on http://{address}:{port} behind basic auth, for {redacted(redis_url(ctx))}")
    os.execve(command[0], command, env)


@app.command()
def schema(
    check: bool = typer.Option(False, "--check", help="Only compare: exit 1 when the published file differs"),
    output: Path = typer.Option(None, "--output", help="Where to write (default: the published file in tasks/)"),
) -> None:
    """Write the result contract's JSON Schema (tasks/enrichment_result.schema.json) from the code."""
    from tasks.contract import SCHEMA_FILE, SCHEMA_VERSION, schema_text

    target = output or SCHEMA_FILE
    text = schema_text()
    if check:
        if not target.exists() or target.read_text() != text:
            fail(f"{target} differs from the code's schema {SCHEMA_VERSION}: run `model-zoo schema` "
                 "(and bump SCHEMA_VERSION as README's policy says)")
        typer.echo(f"{target} matches the code (schema {SCHEMA_VERSION})")
        return
    target.write_text(text)
    typer.echo(f"wrote {target} (schema {SCHEMA_VERSION})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(ctx: typer.Context) -> None:
    """Run scripts/demo.py (its own redis-server, tiny models and workers); extra options go to it (--keep, --gpus)."""
    if not DEMO_SCRIPT.exists():
        fail(f"{DEMO_SCRIPT} is not here: the demo runs from a source checkout")
    raise typer.Exit(subprocess.call([sys.executable, str(DEMO_SCRIPT), *ctx.args]))


if __name__ == "__main__":
    app()
