"""scripts/download_models.py offline: complete directories are verified, not fetched; missing ones fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts import download_models
from scripts.download_models import app, directory_mb, hub_ignore_patterns, source_of
from scripts.fixtures.weights import writers
from workers.model_files import COMPLETE_MARKER
from workers.registry import MODELS, REGISTRY

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

    def refuse(entry, dest):
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
    assert {cells[4] for cells in rows.values()} == {"present, verified"}


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
    assert rows["clip"][4] == "present" and rows["depth"][4] == "partial" and rows["florence"][4] == "missing"
    assert rows["clip"][1] == "hf://openai/clip-vit-large-patch14"
    assert float(rows["clip"][3]) > 0 and float(rows["florence"][3]) == 0
    assert not (tmp_path / "florence").exists()


def test_fetched_model_is_verified_then_marked_complete(tmp_path, monkeypatch):
    def fake_download(entry, dest):  # stands in for the network: writes the real on-disk format
        dest.mkdir(parents=True, exist_ok=True)
        writers()[entry.name](dest)

    monkeypatch.setattr(download_models, "fetch", fake_download)
    result = invoke("--models-dir", str(tmp_path), "--only", "depth")

    assert result.exit_code == 0, result.output
    assert table_rows(result.output)["depth"][4] == "downloaded, verified"
    assert "verified" in (tmp_path / "depth" / COMPLETE_MARKER).read_text()


def test_a_model_that_does_not_load_is_reported_and_not_hidden(tmp_path, no_fetching):
    broken = tmp_path / "depth"
    broken.mkdir()
    (broken / COMPLETE_MARKER).write_text("tiny\n")
    (broken / "config.json").write_text("{not json")

    result = invoke("--models-dir", str(tmp_path), "--only", "depth")

    assert result.exit_code == 1
    assert "error: depth: does not load" in result.output
    assert "Traceback" not in result.output


def test_skip_verify_reports_without_loading(tmp_path, no_fetching):
    broken = tmp_path / "depth"
    broken.mkdir()
    (broken / COMPLETE_MARKER).write_text("tiny\n")
    result = invoke("--models-dir", str(tmp_path), "--only", "depth", "--skip-verify")
    assert result.exit_code == 0, result.output
    assert table_rows(result.output)["depth"][4] == "present"


def test_unknown_model_is_refused(tmp_path):
    result = invoke("--models-dir", str(tmp_path), "--only", "yolo9000")
    assert result.exit_code == 2
    assert "yolo9000" in result.output


def test_every_registry_model_has_a_source():
    sources = {entry.name: source_of(entry) for entry in MODELS}
    assert sources["pose"].startswith("https://github.com/ultralytics/assets/releases/download/")
    assert sources["reid"].startswith("https://drive.google.com/")
    assert sources["threat"] == "hf://Subh775/Threat-Detection-YOLOv8n"
    assert all(s.startswith(("hf://", "https://")) for s in sources.values())


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
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                asked = self.headers.get("Range")
                server.ranges.append(asked)
                start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
                body = payload[start:]
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
