"""`model-zoo household ...`: the operator's commands for members, their faces, registered vehicles and named
re-ID identities (mounted on the main CLI as its `household` group; also runs alone).

Exit codes as the main CLI's: 0 done, 1 refused or failed (the message says why), 2 Redis cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, NoReturn

import redis
import typer
from rich.console import Console
from rich.table import Table

from tasks.household import ROLES, Household, HouseholdError, within_schedule
from workers.settings import Settings, with_password

UNREACHABLE_EXIT = 2
MIN_ENROL_QUALITY = 0.3

household_app = typer.Typer(add_completion=False, no_args_is_help=True,
                            help="The household: members and their faces, registered vehicles, named identities.")
# Names and descriptions are the operator's text: printed as they are, never read as rich markup.
console = Console(highlight=False, markup=False, soft_wrap=True)  # one line per message, for scripts too
errors = Console(stderr=True, highlight=False, markup=False)


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print("error:", style="red", end=" ")
    errors.print(message, soft_wrap=True)
    raise typer.Exit(code)


def redacted(url: str) -> str:
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


@household_app.callback()
def household_main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option("--redis-url", help="Default: the main command's, else REDIS_URL")] = None,
) -> None:
    """The household: members and their faces, registered vehicles, named identities."""
    parent = ctx.obj if isinstance(ctx.obj, dict) else {}
    settings = Settings()
    if url:
        chosen = with_password(url, settings.redis_password)
    else:
        chosen = parent.get("redis_url") or with_password(settings.redis_url, settings.redis_password)
    ctx.obj = {**parent, "redis_url": chosen}


def household(ctx: typer.Context) -> Household:
    """The store over a client that has answered PING (exit 2 otherwise), naming identities in the re-ID gallery."""
    from tasks.reid_matching import IndexedReidGallery

    url = ctx.obj["redis_url"]
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        fail(f"cannot reach Redis at {redacted(url)}: {exc}", UNREACHABLE_EXIT)
    reid = Settings().reid
    return Household(client, identities=IndexedReidGallery.configured(client, reid))


def refused(exc: Exception) -> NoReturn:
    fail(str(exc))


def parse_schedule(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f'--schedule is not JSON ({exc.msg}); e.g. \'{{"mon": [["08:00", "18:00"]]}}\'')


# -- members --------------------------------------------------------------------------------------------
@household_app.command("add-member")
def add_member(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="How the prompt will name them")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}")] = "resident",
    schedule: Annotated[str | None, typer.Option(help='Weekly hours as JSON: {"mon": [["08:00", "18:00"]], ...}')]
    = None,
) -> None:
    """Add a household member (faces are enrolled separately)."""
    try:
        member = household(ctx).add_member(name, role, parse_schedule(schedule))
    except HouseholdError as exc:
        refused(exc)
    console.print(f"added {member.name} ({member.role}) as {member.id}")


@household_app.command()
def enrol(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The member's name or id")],
    image: Annotated[Path | None, typer.Option(help="A photo of them alone, face visible")] = None,
    event: Annotated[str | None, typer.Option(help="A stored event whose face record holds one face")] = None,
    face_model: Annotated[Path | None, typer.Option(help="The face model directory (default: FACE_MODEL_PATH, "
                                                         "else MODELS_DIR/face)")] = None,
    min_quality: Annotated[float, typer.Option(min=0.0, max=1.0, help="Refuse a face of lower quality")]
    = MIN_ENROL_QUALITY,
) -> None:
    """Enrol a member's face from a photo (detected and embedded here, on the CPU) or from a stored event."""
    if (image is None) == (event is None):
        fail("give either --image FILE or --event EVENT_ID")
    store = household(ctx)
    try:
        member = store.require(name)
    except HouseholdError as exc:
        refused(exc)
    found = face_from_image(image, face_model) if image is not None else face_from_event(store, event)
    if found["face_count"] == 0:
        fail(f"no face found in {image or event}; enrol from a photo where {member.name}'s face is clearly visible")
    if found["face_count"] > 1:
        fail(f"{found['face_count']} faces found in {image or event}; enrol from a photo of {member.name} alone")
    quality = found["best"]["quality"]
    if quality < min_quality:
        fail(f"the face in {image or event} is of quality {quality:.2f} (below {min_quality:.2f}: too small, blurred "
             "or turned away); use a sharper, frontal photo")
    try:
        slot = store.enrol_face(member.id, found["embedding"], found["embedding_model"])
    except HouseholdError as exc:
        refused(exc)
    console.print(f"enrolled a face for {member.name} (photo {int(slot) + 1}, quality {quality:.2f}, "
                  f"embedder {found['embedding_model']})")


def face_from_image(image: Path, face_model: Path | None) -> dict[str, Any]:
    """The face family's record for a whole photo, run here on the CPU. The photo is read by the pool's own decoder
    (JPEG, PNG or WebP, bounded, EXIF orientation applied), not by whatever Pillow plugins happen to be loaded."""
    from workers.images import InputError, decode_image
    from workers.models.face import FaceModel

    settings = Settings()
    path = face_model or settings.zoo.model_paths.get("face") or settings.models_dir / "face"
    try:
        data = image.read_bytes()
        if len(data) > settings.max_image_bytes:
            raise InputError("image", f"larger than the {settings.max_image_bytes} byte limit (MAX_IMAGE_BYTES)")
        frame = decode_image("image", data, settings.max_image_pixels)
    except (OSError, InputError) as exc:
        fail(f"{image} is not a readable image ({getattr(exc, 'reason', exc)})")
    model = FaceModel(path, "cpu", settings.zoo)
    try:
        model.load()
    except (OSError, ValueError, RuntimeError) as exc:
        fail(f"cannot load the face model at {path}: {exc}")
    try:
        return model.analyse(frame)
    finally:
        model.unload()


def face_from_event(store: Household, event_id: str) -> dict[str, Any]:
    """The face record of a stored result (its `face` section) with the face vector the pool kept apart from it
    (face-recent:<event_id>, for UNKNOWN_FACE_RETENTION_SECONDS; a stored result never holds the vector)."""
    from tasks.results import ResultStore

    result = ResultStore(store.client, ttl_seconds=0).get(event_id)
    if result is None:
        fail(f"no result stored for event {event_id!r}")
    found = dict((result.get("enrichment") or {}).get("face") or {})
    if "face_count" not in found:
        fail(f"event {event_id} has no face record (the face model did not run on it)")
    kept = store.recent_face(event_id)
    if found["face_count"] == 1:
        if kept is None:
            fail(f"event {event_id}'s face vector is no longer kept (UNKNOWN_FACE_RETENTION_SECONDS), or it matched "
                 "a member already; enrol from a photo")
        found["embedding_model"], found["embedding"] = kept
    return found


@household_app.command("list")
def list_household(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False
                   ) -> None:
    """Members (with faces enrolled per embedder and whether they are within their schedule now), vehicles and named
    identities."""
    from datetime import datetime

    store = household(ctx)
    now = datetime.now()
    members = [{**m.public(), "schedule": m.schedule, "within_schedule_now": within_schedule(m.schedule, now),
                "faces": store.face_count(m.id)} for m in store.members()]
    vehicles = [v.model_dump(include={"plate", "description", "embedding_model"}) for v in store.vehicles()]
    names = {identity: member.name for identity, member in store.named_identities().items()}
    if as_json:
        typer.echo(json.dumps({"members": members, "vehicles": vehicles, "identity_names": names}, indent=2))
        return
    table = Table("id", "name", "role", "faces", "schedule", "now", title="members")
    for m in members:
        faces = ", ".join(f"{count} ({model.split(':')[0]})" for model, count in m["faces"].items()) or "none"
        now_text = {True: "within", False: "outside", None: "-"}[m["within_schedule_now"]]
        table.add_row(m["id"], m["name"], m["role"], faces, json.dumps(m["schedule"]) if m["schedule"] else "-",
                      now_text)
    console.print(table)
    cars = Table("plate", "description", "visual embedding", title="vehicles")
    for v in vehicles:
        cars.add_row(v["plate"], v["description"], v["embedding_model"] or "-")
    console.print(cars)
    if names:
        console.print("named identities: " + ", ".join(f"{i} = {n}" for i, n in sorted(names.items())))


@household_app.command()
def rename(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Current name or id")],
           new_name: Annotated[str, typer.Argument(help="The new name")]) -> None:
    """Rename a member (faces and named identities follow)."""
    try:
        member = household(ctx).rename(name, new_name)
    except HouseholdError as exc:
        refused(exc)
    console.print(f"{member.id} is now {member.name}")


@household_app.command()
def forget(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Name or id")],
           yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False) -> None:
    """Forget a member: their record, every face vector, and the re-ID identities named after them."""
    store = household(ctx)
    try:
        member = store.require(name)
    except HouseholdError as exc:
        refused(exc)
    if not yes and not typer.confirm(f"forget {member.name} and every face vector of theirs?"):
        raise typer.Exit(1)
    report = store.forget(member.id)
    unnamed = f"; unnamed {', '.join(report['identities_unnamed'])}" if report["identities_unnamed"] else ""
    console.print(f"forgot {member.name}: {report['face_vectors_removed']} face vectors removed{unnamed}")


# -- export and import ----------------------------------------------------------------------------------
@household_app.command()
def export(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="JSON file to write (vectors included)")]
           ) -> None:
    """Write the household, face and vehicle vectors included, to a JSON file only you can read (mode 600)."""
    data = household(ctx).export()
    try:
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(data, handle)
            handle.write("\n")
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror or exc}")
    faces = sum(len(m["faces"]) for m in data["members"])
    console.print(f"exported {len(data['members'])} members ({faces} face vectors), {len(data['vehicles'])} vehicles "
                  f"to {file}")


@household_app.command("import")
def import_household(
    ctx: typer.Context, file: Annotated[Path, typer.Argument(help="A file written by export")],
    replace: Annotated[bool, typer.Option("--replace", help="Forget the current household first")] = False,
) -> None:
    """Restore a household from an export (refused over a household that is not empty, unless --replace)."""
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except json.JSONDecodeError as exc:
        fail(f"{file} is not JSON ({exc.msg})")
    try:
        counts = household(ctx).import_(data, replace=replace)
    except HouseholdError as exc:
        refused(exc)
    console.print("imported " + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items()))


# -- vehicles and named identities ----------------------------------------------------------------------
@household_app.command("add-vehicle")
def add_vehicle(ctx: typer.Context, plate: Annotated[str, typer.Argument(help="As written on the plate")],
                description: Annotated[str, typer.Option(help='e.g. "blue Civic"')],
                event: Annotated[str | None, typer.Option(help="A stored vehicle event of this car: its look (CLIP's "
                                                               "crop embedding) recognises it when no plate is read")]
                = None) -> None:
    """Register a vehicle by plate (upper-case letters and digits; spaces and dashes are dropped)."""
    store = household(ctx)
    embedding, model_id = look_from_event(store, event) if event else (None, None)
    try:
        vehicle = store.add_vehicle(plate, description, embedding, model_id)
    except HouseholdError as exc:
        refused(exc)
    console.print(f"registered {vehicle.plate} ({vehicle.description})" + (", with its look" if embedding else ""))


def look_from_event(store: Household, event_id: str) -> tuple[list[float], str]:
    """A stored vehicle event's CLIP crop embedding and its model id."""
    from tasks.results import ResultStore

    result = ResultStore(store.client, ttl_seconds=0).get(event_id)
    if result is None:
        fail(f"no result stored for event {event_id!r}")
    if result.get("detection_type") != "vehicle":
        fail(f"event {event_id} is not a vehicle event")
    clip = ((result.get("enrichment") or {}).get("scene") or {}).get("clip") or {}
    if not clip.get("crop_embedding") or not clip.get("embedding_model"):
        fail(f"event {event_id} has no CLIP look (CLIP runs on vehicle events with SCENE_DETECTION_TYPES=person,vehicle)")
    return clip["crop_embedding"], clip["embedding_model"]


@household_app.command("remove-vehicle")
def remove_vehicle(ctx: typer.Context, plate: Annotated[str, typer.Argument(help="The registered plate")]) -> None:
    """Remove a registered vehicle and its visual embedding."""
    try:
        vehicle = household(ctx).remove_vehicle(plate)
    except HouseholdError as exc:
        refused(exc)
    console.print(f"removed {vehicle.plate} ({vehicle.description})")


@household_app.command("name-identity")
def name_identity(ctx: typer.Context, identity: Annotated[str, typer.Argument(help="A re-ID identity: person-0007")],
                  name: Annotated[str, typer.Argument(help="The member's name or id")]) -> None:
    """Give a re-ID identity a member's name; it is then kept from expiring."""
    try:
        member = household(ctx).name_identity(identity, name)
    except HouseholdError as exc:
        refused(exc)
    console.print(f"{identity} is {member.name}")


@household_app.command("unname-identity")
def unname_identity(ctx: typer.Context, identity: Annotated[str, typer.Argument(help="A named re-ID identity")]
                    ) -> None:
    """Take a re-ID identity's name away; it expires again like any stranger."""
    try:
        household(ctx).unname_identity(identity)
    except HouseholdError as exc:
        refused(exc)
    console.print(f"{identity} is unnamed")


if __name__ == "__main__":
    household_app()
