"""Generated weights never replace real ones: only a directory the generator wrote is ever rewritten."""

from __future__ import annotations

import pytest

from scripts.fixtures.weights import GENERATING_MARKER, NotGenerated, write_generated, writers
from workers.model_files import COMPLETE_MARKER, is_complete
from workers.registry import REGISTRY

ENTRY = REGISTRY["depth"]  # any entry: its writer is swapped for a fast one


@pytest.fixture
def fast_writer(monkeypatch):
    """The depth writer swapped for one that writes a single small file (the real one takes seconds)."""
    def write(dest, full_size=False):
        (dest / "model.safetensors").write_bytes(b"random")

    monkeypatch.setitem(writers(), ENTRY.name, write)


def model_dir_holding(models_dir, files: dict[str, bytes]):
    """MODELS_DIR/<name> of the test's entry, holding `files` (name -> bytes)."""
    dest = models_dir / ENTRY.name
    dest.mkdir()
    for name, data in files.items():
        (dest / name).write_bytes(data)
    return dest


def test_weights_put_there_by_hand_are_left_alone_even_with_force(tmp_path, fast_writer):
    mine = model_dir_holding(tmp_path, {"model.safetensors": b"my fine-tuned weights"})
    for force in (False, True):
        with pytest.raises(NotGenerated, match="did not write"):
            write_generated(ENTRY, tmp_path, force=force)
    assert (mine / "model.safetensors").read_bytes() == b"my fine-tuned weights"


def test_downloaded_weights_are_never_overwritten_with_random_ones(tmp_path, fast_writer):
    downloaded = model_dir_holding(tmp_path, {"model.safetensors": b"real weights",
                                              COMPLETE_MARKER: b"downloaded from hf://org/model\nverified 2026-11-27\n"})
    assert write_generated(ENTRY, tmp_path) == downloaded, "complete: kept as it is"
    with pytest.raises(NotGenerated, match="not generated"):
        write_generated(ENTRY, tmp_path, force=True)
    assert (downloaded / "model.safetensors").read_bytes() == b"real weights"


def test_an_interrupted_generation_is_redone_and_generated_weights_can_be_forced(tmp_path, fast_writer):
    model_dir_holding(tmp_path, {GENERATING_MARKER: b"being written\n", "partial.bin": b"half"})
    dest = write_generated(ENTRY, tmp_path)
    assert is_complete(dest) and not (dest / GENERATING_MARKER).exists() and not (dest / "partial.bin").exists()
    assert (dest / COMPLETE_MARKER).read_text() == "tiny random\n"
    assert (write_generated(ENTRY, tmp_path, full_size=True, force=True) / COMPLETE_MARKER).read_text() == \
        "full-size random\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_complete(write_generated(REGISTRY["depth"], empty))
