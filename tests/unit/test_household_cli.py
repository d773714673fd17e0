"""`model-zoo household ...` against a real redis-server: members, enrolment from real photos, forget, export."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tasks.household import Household
from tasks.household_cli import household_app
from tasks.matching import GalleryIndex
from tasks.reid_matching import IndexedReidGallery
from tests.face_models import tiny_face_dir

skimage_data = pytest.importorskip("skimage.data")
runner = CliRunner()


@pytest.fixture(scope="module")
def face_dir(tiny_models_dir):
    return tiny_face_dir(tiny_models_dir)


@pytest.fixture
def household(redis_server, redis_client):
    """household(*args) runs the command group alone against the test's Redis."""
    def run(*args: str, input: str | None = None):
        return runner.invoke(household_app, ["--redis-url", redis_server.url, *args], input=input)

    return run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(skimage_data.astronaut())
    astronaut.save(folder / "dana.png")
    Image.fromarray(skimage_data.chelsea()).save(folder / "cat.png")
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(astronaut, (512, 0))
    pair.save(folder / "two.png")
    (folder / "notes.png").write_text("not an image")
    return folder


def vector_keys(client) -> int:
    return len(client.keys("gallery:{household-faces}:e:*"))


def test_add_member_and_list(household):
    assert household("add-member", "Dana", "--role", "resident",
                     "--schedule", '{"mon": [["08:00", "18:00"]]}').exit_code == 0
    assert household("add-member", "Sam", "--role", "family").exit_code == 0
    listed = json.loads(household("list", "--json").stdout)
    assert [(m["name"], m["role"]) for m in listed["members"]] == [("Dana", "resident"), ("Sam", "family")]
    assert listed["members"][0]["schedule"] == {"mon": [["08:00", "18:00"]]}
    table = household("list").stdout
    assert "Dana" in table and "resident" in table


@pytest.mark.parametrize(("args", "message"), [
    (["add-member", "Dana\x1b[2J", "--role", "resident"], "printable"),
    (["add-member", "Dana", "--role", "butler"], "role"),
    (["add-member", "Dana", "--schedule", "mon 8-6"], "not JSON"),
    (["add-member", "Dana", "--schedule", '{"mon": [["8", "18"]]}'], "HH:MM"),
    (["rename", "Nobody", "Someone"], "no household member"),
    (["add-vehicle", "!!", "--description", "car"], "not a plate"),
])
def test_refusals_say_why_and_exit_1(household, args, message):
    result = household(*args)
    assert result.exit_code == 1 and message in result.stderr


def test_enrol_from_a_photo_then_the_face_matches(household, face_dir, photos, redis_client):
    household("add-member", "Dana")
    result = household("enrol", "Dana", "--image", str(photos / "dana.png"), "--face-model", str(face_dir))
    assert result.exit_code == 0, result.stderr
    assert "enrolled a face for Dana" in result.stdout
    assert vector_keys(redis_client) == 1
    listed = json.loads(household("list", "--json").stdout)
    assert sum(listed["members"][0]["faces"].values()) == 1
    from workers.models.face import FaceModel

    model = FaceModel(face_dir, "cpu")
    model.load()
    again = model.analyse(Image.open(photos / "dana.png").convert("RGB"))
    store = Household(redis_client)
    store.faces_index = GalleryIndex(store.faces)
    assert store.match_face(again["embedding"], again["embedding_model"])["member"]["name"] == "Dana"


@pytest.mark.parametrize(("photo", "message"), [
    ("cat.png", "no face found"), ("two.png", "2 faces found"), ("notes.png", "not a readable image"),
])
def test_enrolment_refuses_photos_without_exactly_one_face(household, face_dir, photos, redis_client, photo, message):
    household("add-member", "Dana")
    result = household("enrol", "Dana", "--image", str(photos / photo), "--face-model", str(face_dir))
    assert result.exit_code == 1 and message in result.stderr
    assert vector_keys(redis_client) == 0


def test_enrol_needs_a_known_member_and_one_source(household, face_dir, photos):
    result = household("enrol", "Nobody", "--image", str(photos / "dana.png"), "--face-model", str(face_dir))
    assert result.exit_code == 1 and "no household member" in result.stderr
    assert "either --image" in household("enrol", "Dana").stderr


def test_forget_leaves_no_vector_behind(household, redis_client):
    store = Household(redis_client)
    store.add_member("Dana", "resident")
    store.add_member("Sam", "family")
    for seed in (1, 2):
        store.enrol_face("Dana", np.random.default_rng(seed).standard_normal(512), "facenet.pt:0123456789ab")
    store.enrol_face("Sam", np.random.default_rng(3).standard_normal(512), "facenet.pt:0123456789ab")
    keys_before = redis_client.dbsize()
    assert household("forget", "Dana", input="n\n").exit_code == 1  # asked, declined
    result = household("forget", "dana", "--yes")
    assert result.exit_code == 0 and "2 face vectors removed" in result.stdout
    assert vector_keys(redis_client) == 1
    assert redis_client.dbsize() == keys_before - 2 + 1  # two vector keys gone, the gallery's tombstone set made
    assert [m["name"] for m in json.loads(household("list", "--json").stdout)["members"]] == ["Sam"]


def test_export_is_private_and_import_restores_it(household, redis_client, tmp_path):
    store = Household(redis_client)
    store.add_member("Dana", "resident")
    store.enrol_face("Dana", np.random.default_rng(1).standard_normal(512), "facenet.pt:0123456789ab")
    household("add-vehicle", "abc 123", "--description", "blue Civic")
    file = tmp_path / "household.json"
    assert household("export", str(file)).exit_code == 0
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    exported = json.loads(file.read_text())
    assert len(exported["members"][0]["faces"][0]["vector"]) == 512
    refused = household("import", str(file))
    assert refused.exit_code == 1 and "--replace" in refused.stderr
    redis_client.flushall()
    result = household("import", str(file))
    assert result.exit_code == 0 and "1 members, 1 faces, 1 vehicles" in result.stdout
    listed = json.loads(household("list", "--json").stdout)
    assert listed["members"][0]["name"] == "Dana" and listed["vehicles"][0]["plate"] == "ABC123"


def test_vehicles_are_registered_and_removed_by_plate(household):
    result = household("add-vehicle", "abc-123", "--description", "blue Civic")
    assert result.exit_code == 0 and "registered ABC123 (blue Civic)" in result.stdout
    assert household("remove-vehicle", "ABC 123").exit_code == 0
    missing = household("remove-vehicle", "ABC123")
    assert missing.exit_code == 1 and "no registered vehicle" in missing.stderr


def test_a_reid_identity_is_named_after_a_member(household, redis_client):
    reid = IndexedReidGallery(redis_client, ttl_seconds=60)
    reid.index = GalleryIndex(reid.gallery)
    reid.match_or_add(np.random.default_rng(1).standard_normal(512), "front_door", 1000.0)
    household("add-member", "Dana")
    assert "no re-ID identity" in household("name-identity", "person-0009", "Dana").stderr
    result = household("name-identity", "person-0001", "Dana")
    assert result.exit_code == 0 and "person-0001 is Dana" in result.stdout
    assert json.loads(household("list", "--json").stdout)["identity_names"] == {"person-0001": "Dana"}
    assert reid.expire(now=1e12) == []
    assert household("unname-identity", "person-0001").exit_code == 0
    assert reid.expire(now=1e12) == ["person-0001"]


def test_markup_in_a_name_is_printed_as_text(household):
    result = household("add-member", "[bold]Dana[/]")
    assert result.exit_code == 0 and "added [bold]Dana[/]" in result.stdout


def test_unreachable_redis_exits_2():
    result = runner.invoke(household_app, ["--redis-url", "redis://127.0.0.1:1/0", "list"])
    assert result.exit_code == 2 and "cannot reach Redis" in result.stderr


def test_mounted_on_the_main_command_it_uses_its_redis_url(redis_server, redis_client):
    from tasks.cli import app

    if not any(group.name == "household" for group in app.registered_groups):
        app.add_typer(household_app, name="household")  # the one line tasks/cli.py gets
    result = runner.invoke(app, ["--redis-url", redis_server.url, "household", "add-member", "Dana"])
    assert result.exit_code == 0, result.stderr
    assert Household(redis_client).member("Dana") is not None


def test_enrol_from_a_stored_events_face_record(household, redis_client):
    from tasks.results import result_key

    # the stored result holds no vector: the pool kept it apart, with a TTL (face-recent:<event_id>)
    face = {"face_visible": True, "face_count": 1, "best": {"quality": 0.8}, "embedding_model": "facenet.pt:0123456789ab"}
    Household(redis_client).remember_face("evt-1", np.random.default_rng(4).standard_normal(512),
                                          "facenet.pt:0123456789ab", 60)
    assert 0 < redis_client.ttl("face-recent:evt-1") <= 60
    redis_client.set(result_key("evt-1"), json.dumps({"event_id": "evt-1", "enrichment": {"face": face}}))
    redis_client.set(result_key("evt-2"), json.dumps({"event_id": "evt-2", "enrichment": {"pose": {}}}))
    household("add-member", "Dana")
    result = household("enrol", "Dana", "--event", "evt-1")
    assert result.exit_code == 0 and "embedder facenet.pt:0123456789ab" in result.stdout
    assert "no face record" in household("enrol", "Dana", "--event", "evt-2").stderr
    assert "no result stored" in household("enrol", "Dana", "--event", "evt-3").stderr
    assert vector_keys(redis_client) == 1
    redis_client.delete("face-recent:evt-1")
    assert "no longer kept" in household("enrol", "Dana", "--event", "evt-1").stderr
