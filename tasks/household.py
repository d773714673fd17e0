"""The household in Redis: members with a role and a weekly schedule, their face vectors, registered vehicles and
named re-ID identities; no key has a TTL, and nothing here is a cache.

Keys (the household lives only as long as Redis persists it: turn on AOF or RDB snapshots to keep it):
  household:members          hash  member id -> Member JSON (name, role, schedule)
  household:member-names     hash  case-folded name -> member id (names are unique, case-insensitively)
  household:next-member      counter behind member ids (m-0001, m-0002 ...)
  household:vehicles         hash  plate -> Vehicle JSON
  household:identity-names   hash  re-ID identity (person-0007) -> member id
  gallery:{household-faces}:*     the members' face vectors (matching engine; identity = member id)
  gallery:{household-vehicles}:*  the vehicles' visual embeddings (identity = plate)
Vectors never appear in a repr, a log line or an error message; export() is the one way they leave.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any, Literal, Protocol

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.matching import (
    Gallery,
    GalleryError,
    GalleryIndex,
    Match,
    check_model_id,
    pack_entry,
    shared_index,
    unit_vector,
    unpack_entry,
)
from workers.plate_text import normalise_plate

Role = Literal["resident", "family", "service_worker", "frequent_visitor"]
ROLES: tuple[str, ...] = ("resident", "family", "service_worker", "frequent_visitor")
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 120
MAX_FACES_PER_MEMBER = 10
EXPORT_FORMAT = 1
TIME_PATTERN = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")
IDENTITY_PATTERN = re.compile(r"person-\d{4,}")
# FaceNet (VGGFace2) cosine similarity for "the same person": 0.6 is a Euclidean distance of 0.89 between unit
# vectors, stricter than the 1.0-1.1 usually quoted for this model: a stranger taken for a resident costs more than a
# resident not recognised. To be calibrated on real weights (random test weights say nothing).
FACE_THRESHOLD = 0.6
VEHICLE_THRESHOLD = 0.9  # CLIP crop embeddings of one car across sightings; also to be calibrated

Schedule = dict[str, list[tuple[str, str]]]


class HouseholdError(ValueError):
    """A request the household refuses, with the reason in words an operator can act on."""


def printable_text(value: str, what: str, limit: int) -> str:
    """The value stripped, refused when empty, longer than limit or holding anything but printable characters."""
    if not isinstance(value, str):
        raise HouseholdError(f"{what} must be text")
    text = value.strip()
    if not text:
        raise HouseholdError(f"{what} must not be empty")
    if len(text) > limit:
        raise HouseholdError(f"{what} is {len(text)} characters; at most {limit}")
    if not text.isprintable():
        raise HouseholdError(f"{what} may hold only printable characters (no control, format or line characters)")
    return text


def minutes(clock: str) -> int:
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def check_schedule(schedule: Any) -> Schedule:
    """{"mon": [["08:00", "18:00"], ...], ...}: day keys, HH:MM intervals; an interval ending before it starts runs
    past midnight into the next day. Refuses anything else with the reason."""
    if not isinstance(schedule, dict):
        raise HouseholdError('a schedule is a JSON object such as {"mon": [["08:00", "18:00"]]}')
    checked: Schedule = {}
    for day, intervals in schedule.items():
        if day not in DAYS:
            raise HouseholdError(f"schedule day {day!r} is not one of {', '.join(DAYS)}")
        if not isinstance(intervals, list):
            raise HouseholdError(f"schedule {day}: a list of [start, end] pairs")
        checked[day] = []
        for interval in intervals:
            if not (isinstance(interval, (list, tuple)) and len(interval) == 2
                    and all(isinstance(t, str) and TIME_PATTERN.fullmatch(t) for t in interval)):
                raise HouseholdError(f"schedule {day}: {interval!r} is not a [\"HH:MM\", \"HH:MM\"] pair")
            start, end = interval
            if start == end or start == "24:00":
                raise HouseholdError(f"schedule {day}: {start}-{end} is empty")
            checked[day].append((start, end))
    return checked


def within_schedule(schedule: Schedule | None, when: datetime) -> bool | None:
    """Whether a local time falls in the weekly schedule; None when there is no schedule to compare with."""
    if schedule is None:
        return None
    day = DAYS[when.weekday()]
    previous = DAYS[(when.weekday() - 1) % 7]
    now = when.hour * 60 + when.minute
    for start, end in schedule.get(day, []):
        begin, finish = minutes(start), minutes(end)
        if begin < finish and begin <= now < finish:
            return True
        if finish < begin and now >= begin:  # starts today, runs past midnight
            return True
    for start, end in schedule.get(previous, []):
        if minutes(end) < minutes(start) and now < minutes(end):  # started yesterday, runs into today
            return True
    return False


class Member(BaseModel):
    """One household member as stored (no vectors)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"m-\d{4,}")
    name: str
    role: Role
    schedule: Schedule | None = None
    created: float

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return printable_text(value, "a name", MAX_NAME_CHARS)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return None if value is None else check_schedule(value)

    def public(self) -> dict[str, Any]:
        """What a match or a listing shows of the member."""
        return {"id": self.id, "name": self.name, "role": self.role}


class Vehicle(BaseModel):
    """A registered vehicle: its normalised plate, a description, whether a visual embedding is enrolled."""

    model_config = ConfigDict(extra="forbid")

    plate: str
    description: str
    added: float
    embedding_model: str | None = None

    @field_validator("plate")
    @classmethod
    def _plate(cls, value: str) -> str:
        plate = normalise_plate(value)
        if plate is None or plate != value:
            raise HouseholdError(f"{value!r} is not a normalised plate (2-10 upper-case letters and digits)")
        return plate

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return printable_text(value, "a description", MAX_DESCRIPTION_CHARS)


class IdentityStore(Protocol):
    """The re-ID side a named identity needs: it must exist, and naming keeps it from expiring."""

    def exists(self, identity: str) -> bool: ...

    def keep(self, identity: str) -> None: ...

    def release(self, identity: str) -> None: ...


def match_answer(found: Match, member: Member | None, when: datetime | None) -> dict[str, Any]:
    """A face match as the enrichment carries it: outcome, similarity, and the member with their schedule's say."""
    answer: dict[str, Any] = {"outcome": found.outcome, "similarity": found.similarity, "member": None}
    if found.outcome == "match" and member is not None:
        answer["member"] = member.public()
        answer["within_schedule"] = None if when is None else within_schedule(member.schedule, when)
    if found.stale:
        answer["needs_re_enrolment"] = found.stale
    return answer


class Household:
    """The household store over one Redis connection (decode_responses=False, as the galleries need)."""

    def __init__(self, client: redis.Redis, identities: IdentityStore | None = None, prefix: str = "household",
                 face_threshold: float = FACE_THRESHOLD, vehicle_threshold: float = VEHICLE_THRESHOLD,
                 faces_index: GalleryIndex | None = None, vehicles_index: GalleryIndex | None = None):
        self.client = client
        self.identities = identities
        self.prefix = prefix
        self.face_threshold = face_threshold
        self.vehicle_threshold = vehicle_threshold
        self.faces = Gallery(client, f"{prefix}-faces")
        self.vehicle_looks = Gallery(client, f"{prefix}-vehicles")
        self.faces_index = faces_index or shared_index(self.faces)
        self.vehicles_index = vehicles_index or shared_index(self.vehicle_looks)

    def __repr__(self) -> str:
        return f"Household({self.prefix!r})"

    def _key(self, part: str) -> str:
        return f"{self.prefix}:{part}"

    # -- members ------------------------------------------------------------------------------------------
    def add_member(self, name: str, role: str, schedule: Any = None) -> Member:
        """A new member; the name must be printable and not already taken (case-insensitively)."""
        if role not in ROLES:
            raise HouseholdError(f"role {role!r} is not one of {', '.join(ROLES)}")
        name = printable_text(name, "a name", MAX_NAME_CHARS)
        member_id = f"m-{self.client.incr(self._key('next-member')):04d}"
        member = self._validated(id=member_id, name=name, role=role, schedule=schedule, created=time.time())
        if not self.client.hsetnx(self._key("member-names"), name.casefold(), member_id):
            raise HouseholdError(f"a member named {name!r} already exists")
        self.client.hset(self._key("members"), member_id, member.model_dump_json())
        return member

    def _validated(self, **fields: Any) -> Member:
        try:
            return Member(**fields)
        except ValidationError as exc:
            reasons = (error["msg"].removeprefix("Value error, ") for error in exc.errors())
            raise HouseholdError("; ".join(reasons)) from None

    def members(self) -> list[Member]:
        """Every member, by name."""
        stored = self.client.hvals(self._key("members"))
        return sorted((Member.model_validate_json(raw) for raw in stored), key=lambda m: m.name.casefold())

    def member(self, who: str) -> Member | None:
        """The member with this id or (case-insensitive) name."""
        member_id = who if re.fullmatch(r"m-\d{4,}", who or "") else self.client.hget(
            self._key("member-names"), (who or "").strip().casefold())
        if member_id is None:
            return None
        raw = self.client.hget(self._key("members"), member_id)
        return Member.model_validate_json(raw) if raw is not None else None

    def require(self, who: str) -> Member:
        member = self.member(who)
        if member is None:
            raise HouseholdError(f"no household member {who!r}")
        return member

    def rename(self, who: str, new_name: str) -> Member:
        member = self.require(who)
        new_name = printable_text(new_name, "a name", MAX_NAME_CHARS)
        names = self._key("member-names")
        if new_name.casefold() != member.name.casefold():
            if not self.client.hsetnx(names, new_name.casefold(), member.id):
                raise HouseholdError(f"a member named {new_name!r} already exists")
            self.client.hdel(names, member.name.casefold())
        renamed = member.model_copy(update={"name": new_name})
        self.client.hset(self._key("members"), member.id, renamed.model_dump_json())
        return renamed

    def set_schedule(self, who: str, schedule: Any) -> Member:
        member = self.require(who)
        updated = self._validated(**{**member.model_dump(), "schedule": schedule})
        self.client.hset(self._key("members"), member.id, updated.model_dump_json())
        return updated

    def forget(self, who: str) -> dict[str, Any]:
        """Remove a member: their record, every face vector, and every re-ID identity named after them."""
        member = self.require(who)
        removed = self.faces.delete_identity(member.id)
        named = [identity for identity, owner in self._identity_links().items() if owner == member.id]
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self._key("members"), member.id)
        pipe.hdel(self._key("member-names"), member.name.casefold())
        if named:
            pipe.hdel(self._key("identity-names"), *named)
        pipe.execute()
        for identity in named:
            if self.identities is not None:
                self.identities.release(identity)
        return {"member": member.public(), "face_vectors_removed": len(removed), "identities_unnamed": named}

    # -- faces ----------------------------------------------------------------------------------------------
    def enrol_face(self, who: str, embedding: Any, model_id: str) -> str:
        """Add a face vector to a member (up to MAX_FACES_PER_MEMBER); returns its slot."""
        member = self.require(who)
        check_model_id(model_id)
        used = {entry.rsplit("/", 1)[1] for entry in self.faces.entries_of(member.id)}
        free = [str(slot) for slot in range(MAX_FACES_PER_MEMBER) if str(slot) not in used]
        if not free:
            raise HouseholdError(f"{member.name} already has {MAX_FACES_PER_MEMBER} face photos; forget and re-enrol")
        try:
            self.faces.put(member.id, unit_vector(embedding), model_id, slot=free[0])
        except GalleryError as exc:
            raise HouseholdError(str(exc)) from None
        return free[0]

    def face_count(self, who: str) -> dict[str, int]:
        """A member's face vectors per embedding model id."""
        member = self.require(who)
        counts: dict[str, int] = {}
        for _, value in self.faces.read(self.faces.entries_of(member.id)):
            if value is not None:
                counts[value[1]] = counts.get(value[1], 0) + 1
        return counts

    def match_face(self, embedding: Any, model_id: str, when: datetime | None = None) -> dict[str, Any]:
        """match / no_match / no_gallery / re_enroll for a face vector, with the member and their schedule's say."""
        found = self.faces_index.match(embedding, model_id, self.face_threshold)
        member = self.member(found.identity) if found.outcome == "match" and found.identity else None
        return match_answer(found, member, when)

    def remember_face(self, event_id: str, embedding: Any, model_id: str, seconds: int) -> None:
        """Keep an event's face vector for `seconds` (face-recent:<event_id>, apart from the household, with a TTL),
        so that an operator may enrol the face from the event; 0 keeps nothing."""
        if seconds > 0:
            self.client.set(f"face-recent:{event_id}", pack_entry(event_id, check_model_id(model_id),
                                                                  unit_vector(embedding)), ex=seconds)

    def recent_face(self, event_id: str) -> tuple[str, list[float]] | None:
        """(embedder id, vector) of an event's face while it is kept, else None."""
        raw = self.client.get(f"face-recent:{event_id}")
        if raw is None:
            return None
        _, model_id, vector = unpack_entry(raw)
        return model_id, vector.tolist()

    # -- vehicles -----------------------------------------------------------------------------------------
    def add_vehicle(self, plate: str, description: str, embedding: Any = None, model_id: str | None = None) -> Vehicle:
        """Register a vehicle by plate (normalised), with an optional visual embedding for when no plate is read."""
        normal = normalise_plate(plate)
        if normal is None:
            raise HouseholdError(f"{plate!r} is not a plate: 2-10 letters and digits, spaces and dashes aside")
        if (embedding is None) != (model_id is None):
            raise HouseholdError("a vehicle's embedding needs its model id, and a model id its embedding")
        vehicle = Vehicle(plate=normal, description=printable_text(description, "a description", MAX_DESCRIPTION_CHARS),
                          added=time.time(), embedding_model=model_id)
        if embedding is not None:
            try:
                self.vehicle_looks.put(normal, unit_vector(embedding), check_model_id(model_id))
            except GalleryError as exc:
                raise HouseholdError(str(exc)) from None
        else:
            self.vehicle_looks.delete_identity(normal)
        self.client.hset(self._key("vehicles"), normal, vehicle.model_dump_json())
        return vehicle

    def remove_vehicle(self, plate: str) -> Vehicle:
        normal = normalise_plate(plate)
        raw = self.client.hget(self._key("vehicles"), normal) if normal else None
        if raw is None:
            raise HouseholdError(f"no registered vehicle with plate {plate!r}")
        self.vehicle_looks.delete_identity(normal)
        self.client.hdel(self._key("vehicles"), normal)
        return Vehicle.model_validate_json(raw)

    def vehicles(self) -> list[Vehicle]:
        return sorted((Vehicle.model_validate_json(raw) for raw in self.client.hvals(self._key("vehicles"))),
                      key=lambda v: v.plate)

    def match_plate(self, text: str) -> Vehicle | None:
        """The registered vehicle whose plate equals the read text once both are normalised."""
        normal = normalise_plate(text)
        raw = self.client.hget(self._key("vehicles"), normal) if normal else None
        return Vehicle.model_validate_json(raw) if raw is not None else None

    def match_vehicle_embedding(self, embedding: Any, model_id: str) -> dict[str, Any]:
        """The fallback when no plate is read: the registered vehicle that looks closest, if close enough."""
        found = self.vehicles_index.match(embedding, model_id, self.vehicle_threshold)
        vehicle = self.match_plate(found.identity) if found.outcome == "match" and found.identity else None
        return {"outcome": found.outcome, "similarity": found.similarity,
                "vehicle": vehicle.model_dump(include={"plate", "description"}) if vehicle else None}

    # -- named re-ID identities -----------------------------------------------------------------------------
    def name_identity(self, identity: str, who: str) -> Member:
        """Give a re-ID identity a member's name; the identity is then kept from expiring."""
        if not IDENTITY_PATTERN.fullmatch(identity or ""):
            raise HouseholdError(f"{identity!r} is not a re-ID identity such as person-0007")
        member = self.require(who)
        if self.identities is not None:
            if not self.identities.exists(identity):
                raise HouseholdError(f"no re-ID identity {identity} (never seen, or expired)")
            self.identities.keep(identity)
        self.client.hset(self._key("identity-names"), identity, member.id)
        return member

    def unname_identity(self, identity: str) -> None:
        if not self.client.hdel(self._key("identity-names"), identity):
            raise HouseholdError(f"{identity} has no name")
        if self.identities is not None:
            self.identities.release(identity)

    def identity_member(self, identity: str) -> Member | None:
        """The member a re-ID identity was named after, if any."""
        member_id = self.client.hget(self._key("identity-names"), identity)
        return self.member(member_id.decode()) if member_id is not None else None

    def named_identities(self) -> dict[str, Member]:
        """Every named re-ID identity with its member."""
        members = {member.id: member for member in self.members()}
        return {identity: members[owner] for identity, owner in self._identity_links().items() if owner in members}

    def _identity_links(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self._key("identity-names")).items()}

    # -- export and import ----------------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """Everything, vectors included, as JSON-ready data import_() takes back."""
        members = []
        for member in self.members():
            faces = [{"slot": entry.rsplit("/", 1)[1], "model": value[1], "vector": value[2].tolist()}
                     for entry, value in self.faces.read(self.faces.entries_of(member.id)) if value is not None]
            members.append({**member.model_dump(), "faces": faces})
        vehicles = []
        for vehicle in self.vehicles():
            entries = self.vehicle_looks.entries_of(vehicle.plate)
            looks = [value for _, value in self.vehicle_looks.read(entries) if value]
            embedding = {"model": looks[0][1], "vector": looks[0][2].tolist()} if looks else None
            vehicles.append({**vehicle.model_dump(), "embedding": embedding})
        return {"format": EXPORT_FORMAT, "exported": time.time(), "members": members, "vehicles": vehicles,
                "identity_names": self._identity_links()}

    def is_empty(self) -> bool:
        return not any(self.client.exists(self._key(part)) for part in ("members", "vehicles", "identity-names"))

    def import_(self, data: Any, replace: bool = False) -> dict[str, int]:
        """Restore an export; refuses a household that is not empty unless `replace` (which forgets it first)."""
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise HouseholdError(f"not a household export (format {EXPORT_FORMAT})")
        try:
            members = [(self._validated(**{k: v for k, v in m.items() if k != "faces"}), m.get("faces") or [])
                       for m in data.get("members") or []]
            vehicles = [(Vehicle(**{k: v for k, v in v_.items() if k != "embedding"}), v_.get("embedding"))
                        for v_ in data.get("vehicles") or []]
        except (TypeError, AttributeError, ValidationError) as exc:
            raise HouseholdError(f"export is malformed: {exc}") from None
        links = data.get("identity_names") or {}
        if not self.is_empty():
            if not replace:
                raise HouseholdError("the household is not empty; import with --replace to forget it first")
            self.clear()
        highest = 0
        for member, faces in members:
            if not self.client.hsetnx(self._key("member-names"), member.name.casefold(), member.id):
                raise HouseholdError(f"the export names {member.name!r} twice")
            self.client.hset(self._key("members"), member.id, member.model_dump_json())
            for face in faces:
                self.faces.put(member.id, face["vector"], face["model"], slot=str(face["slot"]))
            highest = max(highest, int(member.id.split("-")[1]))
        current = int(self.client.get(self._key("next-member")) or 0)
        self.client.set(self._key("next-member"), max(current, highest))
        for vehicle, embedding in vehicles:
            self.client.hset(self._key("vehicles"), vehicle.plate, vehicle.model_dump_json())
            if embedding:
                self.vehicle_looks.put(vehicle.plate, embedding["vector"], embedding["model"])
        known = {member.id for member, _ in members}
        for identity, member_id in links.items():
            if member_id in known and IDENTITY_PATTERN.fullmatch(identity):
                self.client.hset(self._key("identity-names"), identity, member_id)
        return {"members": len(members), "faces": sum(len(f) for _, f in members), "vehicles": len(vehicles),
                "identity_names": len(links)}

    def clear(self) -> None:
        """Forget everyone and every vehicle (used by import --replace)."""
        for identity in self._identity_links():
            if self.identities is not None:
                self.identities.release(identity)
        for member in self.members():
            self.faces.delete_identity(member.id)
        for vehicle in self.vehicles():
            self.vehicle_looks.delete_identity(vehicle.plate)
        self.client.delete(*[self._key(p) for p in ("members", "member-names", "vehicles", "identity-names")])

