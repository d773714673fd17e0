"""scripts/download_models.py: complete directories are checked, not fetched; missing ones fail clearly offline; what
is fetched (from a fake Hub, or a loopback HTTP server) is held to its pin, and a mismatch is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts import download_models
from scripts.download_models import LOCK_NAME, HubFile, app, directory_mb, git_blob_id, hub_ignore_patterns, source_of
from scripts.fixtures.weights import writers
from workers.model_files import COMPLETE_MARKER, WEIGHTS_RECORD, file_digests, read_record, sha256_file
from workers.registry import MODELS, REGISTRY, DirectFile

WIDE = {"COLUMNS": "250", "HF_HUB_OFFLINE": "1"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def table_rows(output: str) -> dict[str, list[str]]:
    """The report table's rows by model name: name, source, path, size MB, status."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 5 and cells[0] in REGISTRY:
            rows[cells[0]] = cells
    return rows


@pytest.fixture
def no_fetching(monkeypatch):
    """Fail the test if anything tries to fetch."""
    calls = []

    def refuse(entry, dest, pin):
        calls.append(entry.name)
        raise AssertionError(f"fetched {entry.name}")

    monkeypatch.setattr(download_models, "fetch", refuse)
    return calls


@pytest.fixture(scope="module")
def populated(tiny_model, tmp_path_factory) -> Path:
    """A MODELS_DIR whose every entry is a complete tiny model (links to the shared tiny cache)."""
    models_dir = tmp_path_factory.mktemp("models")
    for entry in MODELS:
        (models_dir / entry.name).symlink_to(tiny_model(entry.name), target_is_directory=True)
    return models_dir


def test_complete_models_are_verified_and_not_fetched(populated, no_fetching):
    result = invoke("--models-dir", str(populated))

    assert result.exit_code == 0, result.output
    assert no_fetching == []
    rows = table_rows(result.output)
    assert sorted(rows) == sorted(REGISTRY)
    assert {cells[4] for cells in rows.values()} == {"present (generated random weights, not the real ones), loads"}


def test_only_limits_the_models_processed(populated, no_fetching):
    result = invoke("--models-dir", str(populated), "--only", "depth", "--only", "pet")
    assert result.exit_code == 0, result.output
    assert sorted(table_rows(result.output)) == ["depth", "pet"]


def test_missing_model_with_the_network_off_is_a_clear_error(tmp_path):
    result = invoke("--models-dir", str(tmp_path), "--only", "florence", "--only", "pose")

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"error: florence: cannot fetch {REGISTRY['florence'].source.repo_id}" in result.output
    assert "error: pose: cannot fetch https://github.com/ultralytics/assets" in result.output
    assert "network access is disabled (HF_HUB_OFFLINE=1)" in result.output
    assert not (tmp_path / "florence" / COMPLETE_MARKER).exists()


def test_list_shows_present_partial_and_missing_without_the_network(populated, tmp_path, no_fetching):
    (tmp_path / "clip").symlink_to(populated / "clip", target_is_directory=True)
    (tmp_path / "depth").mkdir()
    (tmp_path / "depth" / "config.json").write_text("{}")

    result = invoke("--models-dir", str(tmp_path), "--list")

    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert sorted(rows) == sorted(REGISTRY)
    assert rows["clip"][4] == "generated" and rows["depth"][4] == "partial" and rows["florence"][4] == "missing"
    assert rows["clip"][1] == "hf://openai/clip-vit-large-patch14@32bd64288804"
    assert rows["threat"][1] == "hf://Subh775/Threat-Detection-YOLOv8n (unpinned)"
    assert float(rows["clip"][3]) > 0 and float(rows["florence"][3]) == 0
    assert not (tmp_path / "florence").exists()


def test_fetched_model_is_verified_then_marked_complete(tmp_path, fake_hub):
    models = tmp_path / "models"
    result = online("--models-dir", str(models), "--only", "depth")

    assert result.exit_code == 0, result.output
    assert table_rows(result.output)["depth"][4] == "downloaded, pin and digests checked, loads"
    pinned = REGISTRY["depth"].source.revision
    assert fake_hub.asked == [("depth-anything/Depth-Anything-V2-Small-hf", pinned)]
    assert pinned in (models / "depth" / COMPLETE_MARKER).read_text()
    record = read_record(models / "depth")
    assert record.pin == pinned and record.files == file_digests(models / "depth")
    assert "model.safetensors" in record.files
    assert json.loads((models / LOCK_NAME).read_text())["models"]["depth"]["pin"] == pinned


def test_a_model_that_does_not_load_is_reported_and_not_hidden(tmp_path, no_fetching):
    broken = tmp_path / "depth"
    broken.mkdir()
    (broken / COMPLETE_MARKER).write_text("tiny random\n")
    (broken / "config.json").write_text("{not json")

    result = invoke("--models-dir", str(tmp_path), "--only", "depth")

    assert result.exit_code == 1
    assert "error: depth: does not load" in result.output
    assert "Traceback" not in result.output


def test_skip_verify_reports_without_loading(tmp_path, no_fetching):
    broken = tmp_path / "depth"
    broken.mkdir()
    (broken / COMPLETE_MARKER).write_text("tiny random\n")
    result = invoke("--models-dir", str(tmp_path), "--only", "depth", "--skip-verify")
    assert result.exit_code == 0, result.output
    assert table_rows(result.output)["depth"][4] == \
        "present (generated random weights, not the real ones), not loaded (--skip-verify)"


def test_unknown_model_is_refused(tmp_path):
    result = invoke("--models-dir", str(tmp_path), "--only", "yolo9000")
    assert result.exit_code == 2
    assert "yolo9000" in result.output


def test_every_registry_model_has_a_source():
    sources = {entry.name: source_of(entry) for entry in MODELS}
    assert sources["pose"].startswith("https://github.com/ultralytics/assets/releases/download/")
    assert sources["reid"].startswith("https://drive.google.com/")
    assert sources["threat"] == "hf://Subh775/Threat-Detection-YOLOv8n (unpinned)"
    assert all(s.startswith(("hf://", "https://")) for s in sources.values())


def test_pinned_hub_revisions_are_full_commit_hashes():
    pins = {entry.name: entry.source.revision for entry in MODELS if getattr(entry.source, "revision", None)}
    assert set(pins) == {"clip", "depth", "florence"}
    assert all(len(pin) == 40 and int(pin, 16) >= 0 for pin in pins.values())


def test_hub_downloads_skip_other_frameworks_and_duplicate_bin_weights():
    with_safetensors = hub_ignore_patterns(["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"])
    assert "pytorch_model*.bin" in with_safetensors and "*.h5" in with_safetensors
    assert "pytorch_model*.bin" not in hub_ignore_patterns(["config.json", "pytorch_model.bin"])


def test_size_ignores_hub_bookkeeping(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x" * 2**20)
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / ".cache" / "huggingface" / "big.incomplete").write_bytes(b"x" * 2**21)
    assert directory_mb(tmp_path) == pytest.approx(1.0)


class RangeServer:
    """A loopback HTTP server for one payload that honours Range requests (like GitHub's asset CDN)."""

    def __init__(self, payload: bytes):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.ranges: list[str | None] = []
        self.payload = payload
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                asked = self.headers.get("Range")
                server.ranges.append(asked)
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
                body = server.payload[start:]
                self.send_response(206 if asked else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/yolov8n-pose.pt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_download_resumes_a_partial_file(tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    server = RangeServer(payload)
    try:
        target = tmp_path / "yolov8n-pose.pt"
        (tmp_path / "yolov8n-pose.pt.part").write_bytes(payload[:300_000])  # an interrupted earlier run
        download_models.fetch_http(server.url, target)
        assert target.read_bytes() == payload
        assert server.ranges == ["bytes=300000-"]
        assert not (tmp_path / "yolov8n-pose.pt.part").exists()

        fresh = tmp_path / "fresh.pt"
        download_models.fetch_http(server.url, fresh)
        assert fresh.read_bytes() == payload and server.ranges[-1] is None
    finally:
        server.close()


# -- a fake Hub and a loopback HTTP server: what is fetched is held to its pin -------------------------------------

class FakeHub:
    """hub_listing and hub_snapshot without the network: the repo's files are a tiny model's (the real on-disk format);
    `commit` is the default branch's head; `tamper` names files whose bytes the snapshot changes after listing them."""

    def __init__(self, tmp_path: Path, model: str = "depth"):
        self.files = tmp_path / "hub-files"
        self.files.mkdir()
        writers()[model](self.files)
        self.commit = "c0ffee" + "0" * 34
        self.asked: list[tuple[str, str | None]] = []
        self.tamper: set[str] = set()

    def listing(self, repo_id, revision):
        self.asked.append((repo_id, revision))
        files = {}
        for path in sorted(self.files.rglob("*")):
            if path.is_file():
                name = path.relative_to(self.files).as_posix()
                lfs = path.suffix in (".safetensors", ".bin", ".pt", ".pth")
                files[name] = HubFile(sha256_file(path) if lfs else None, None if lfs else git_blob_id(path))
        return revision or self.commit, files

    def snapshot(self, repo_id, commit, dest, ignore):
        shutil.copytree(self.files, dest, dirs_exist_ok=True)
        for name in self.tamper:
            with open(dest / name, "ab") as handle:
                handle.write(b"\0")


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    hub = FakeHub(tmp_path)
    monkeypatch.setattr(download_models, "hub_listing", hub.listing)
    monkeypatch.setattr(download_models, "hub_snapshot", hub.snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return hub


def online(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE | {"HF_HUB_OFFLINE": "0"})


def test_a_hub_file_that_differs_from_what_the_hub_records_is_refused(tmp_path, fake_hub):
    fake_hub.tamper = {"model.safetensors"}
    result = online("--models-dir", str(tmp_path / "models"), "--only", "depth")

    assert result.exit_code == 1
    assert "refused depth-anything/Depth-Anything-V2-Small-hf at " in result.output
    assert "model.safetensors (SHA-256 " in result.output and "the Hub records " in result.output
    assert not (tmp_path / "models" / "depth" / COMPLETE_MARKER).exists()
    assert not (tmp_path / "models" / "depth" / WEIGHTS_RECORD).exists()


def test_a_config_file_is_checked_against_its_git_blob_id(tmp_path, fake_hub):
    fake_hub.tamper = {"config.json"}
    result = online("--models-dir", str(tmp_path / "models"), "--only", "depth")
    assert result.exit_code == 1 and "config.json (git blob " in result.output


def test_an_unpinned_repo_is_pinned_by_its_first_download_in_the_lock_file(tmp_path, fake_hub, monkeypatch):
    unpinned = replace(REGISTRY["depth"], source=replace(REGISTRY["depth"].source, revision=None))
    monkeypatch.setitem(REGISTRY, "depth", unpinned)
    models = tmp_path / "models"
    first = online("--models-dir", str(models), "--only", "depth")
    assert first.exit_code == 0, first.output
    assert fake_hub.asked[-1] == ("depth-anything/Depth-Anything-V2-Small-hf", None)  # the head, this once
    lock = json.loads((models / LOCK_NAME).read_text())["models"]["depth"]
    assert lock["pin"] == fake_hub.commit and lock["files"] == file_digests(models / "depth")

    fake_hub.commit = "beef" + "1" * 36  # the Hub moved on; another host fetches with the first host's lock
    other = online("--models-dir", str(tmp_path / "host2"), "--only", "depth", "--lock", str(models / LOCK_NAME))
    assert other.exit_code == 0, other.output
    assert fake_hub.asked[-1] == ("depth-anything/Depth-Anything-V2-Small-hf", lock["pin"])
    assert read_record(tmp_path / "host2" / "depth").pin == lock["pin"]


def test_a_present_directory_whose_files_changed_is_refused(tmp_path, fake_hub):
    models = tmp_path / "models"
    assert online("--models-dir", str(models), "--only", "depth").exit_code == 0
    (models / "depth" / "config.json").write_text("{}")
    again = online("--models-dir", str(models), "--only", "depth")
    assert again.exit_code == 1
    assert "no longer holds what was fetched (changed config.json)" in again.output


def test_a_present_directory_without_a_record_needs_the_hub_to_be_checked(tmp_path):
    old = tmp_path / "depth"
    shutil.copytree(writers_dir("depth", tmp_path), old)
    (old / COMPLETE_MARKER).write_text("downloaded from hf://depth-anything/Depth-Anything-V2-Small-hf\n")
    result = invoke("--models-dir", str(tmp_path), "--only", "depth")
    assert result.exit_code == 1
    assert "has no record of its weights, and checking them against the Hub needs the network" in result.output


def writers_dir(model: str, tmp_path: Path) -> Path:
    made = tmp_path / f"made-{model}"
    made.mkdir()
    writers()[model](made)
    return made


@pytest.fixture
def pose_server(tmp_path, monkeypatch):
    """The pose model served by a loopback HTTP server: (server, the file's bytes, pin(sha256) to set the entry)."""
    payload = (writers_dir("pose", tmp_path) / "yolov8n-pose.pt").read_bytes()
    server = RangeServer(payload)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def pin(sha256: str | None) -> None:
        monkeypatch.setitem(REGISTRY, "pose", replace(REGISTRY["pose"], source=DirectFile(
            server.url, "yolov8n-pose.pt", sha256=sha256)))

    yield server, payload, pin
    server.close()


def test_a_direct_file_with_its_pinned_digest_is_kept(tmp_path, pose_server):
    server, payload, pin = pose_server
    pin(hashlib.sha256(payload).hexdigest())
    result = online("--models-dir", str(tmp_path / "models"), "--only", "pose")
    assert result.exit_code == 0, result.output
    assert table_rows(result.output)["pose"][4] == "downloaded, pin and digests checked, loads"
    assert read_record(tmp_path / "models" / "pose").pin == hashlib.sha256(payload).hexdigest()


def test_a_direct_file_with_another_digest_is_refused_and_removed(tmp_path, pose_server):
    server, payload, pin = pose_server
    pin("0" * 64)
    result = online("--models-dir", str(tmp_path / "models"), "--only", "pose")
    assert result.exit_code == 1
    digest = hashlib.sha256(payload).hexdigest()
    assert f"its SHA-256 is {digest}, but {'0' * 64} is pinned (by the registry); the file was removed" in \
        " ".join(result.output.split())
    assert not (tmp_path / "models" / "pose" / "yolov8n-pose.pt").exists()


def test_a_direct_file_that_changed_since_the_first_download_is_refused(tmp_path, pose_server):
    server, payload, pin = pose_server
    pin(None)
    models = tmp_path / "models"
    assert online("--models-dir", str(models), "--only", "pose").exit_code == 0
    shutil.rmtree(models / "pose")
    server.payload = payload[:-1] + b"\x01"  # the URL now serves other bytes
    again = online("--models-dir", str(models), "--only", "pose")
    assert again.exit_code == 1
    assert "pinned (by the lock file, from its first download)" in " ".join(again.output.split())
