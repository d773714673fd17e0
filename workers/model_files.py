"""Where each model's files live under MODELS_DIR (MODELS_DIR/<name>), when a model directory counts as complete,
whether its weights are the ones the registry pins (the record download_models.py writes beside them), and how many
bytes a model's weights take once loaded, read from the files without loading them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workers.registry import DirectFile, HubRepo, ModelEntry

COMPLETE_MARKER = ".complete"
WEIGHTS_RECORD = ".weights.json"  # where the files came from, the pin they were fetched at, and each one's SHA-256
GENERATED_KINDS = ("tiny random", "full-size random")  # what the complete marker says of generated weights
BOOKKEEPING = {COMPLETE_MARKER, WEIGHTS_RECORD, ".generating"}  # files of ours in a model directory, not weights

# safetensors dtype names: bytes per element, and whether a family's dtype choice applies to them.
SAFETENSORS_DTYPES: dict[str, tuple[int, bool]] = {
    "F64": (8, True), "F32": (4, True), "F16": (2, True), "BF16": (2, True),
    "F8_E4M3": (1, True), "F8_E5M2": (1, True),
    "I64": (8, False), "I32": (4, False), "I16": (2, False), "I8": (1, False), "U8": (1, False), "BOOL": (1, False),
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def model_dir(entry: ModelEntry, models_dir: Path) -> Path:
    return Path(models_dir) / entry.name


def is_complete(path: Path) -> bool:
    """A model directory counts only once its writer or downloader finished and verified it."""
    return (path / COMPLETE_MARKER).exists()


def is_generated(path: Path) -> bool:
    """Random weights written by scripts/fixtures/weights (tests, the demo, GPU sizing)."""
    marker = Path(path) / COMPLETE_MARKER
    return marker.is_file() and marker.read_text(errors="replace").strip() in GENERATED_KINDS


# -- verified weights ------------------------------------------------------------------------------------------

class WeightsRefused(Exception):
    """A model's weights are not the ones its registry entry pins (or nothing says where they came from)."""


def registry_pin(entry: ModelEntry) -> str | None:
    """What the registry pins a model's weights to: a Hub commit, or a direct file's SHA-256 (None: not pinned)."""
    if isinstance(entry.source, HubRepo):
        return entry.source.revision
    return entry.source.sha256


@dataclass(frozen=True)
class WeightsRecord:
    """What scripts/download_models.py fetched into a model directory: from where, at which pin, each file's SHA-256."""

    source: str  # hf://<repo> or the direct file's URL
    pin: str  # the Hub commit, or the direct file's SHA-256
    files: dict[str, str] = field(default_factory=dict)  # path inside the directory -> SHA-256
    fetched_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> WeightsRecord:
        data = json.loads(text)
        return cls(source=data["source"], pin=data["pin"], files=dict(data["files"]), fetched_at=data.get("fetched_at", ""))


def read_record(path: Path) -> WeightsRecord | None:
    record = Path(path) / WEIGHTS_RECORD
    if not record.is_file():
        return None
    try:
        return WeightsRecord.from_json(record.read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsRefused(f"{record} cannot be read ({exc}): fetch the model again") from exc


def write_record(path: Path, record: WeightsRecord) -> None:
    (Path(path) / WEIGHTS_RECORD).write_text(record.to_json())


_digests: dict[tuple, str] = {}  # (path, inode, size, mtime) -> SHA-256: a file is hashed once per process
_digests_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """A file's SHA-256, hashed once per process while its inode, size and mtime stay the same."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _digests_lock:
        known = _digests.get(key)
    if known is None:
        with open(path, "rb") as handle:
            known = hashlib.file_digest(handle, "sha256").hexdigest()
        with _digests_lock:
            _digests[key] = known
    return known


def weight_files(path: Path) -> dict[str, Path]:
    """Every file a model directory holds (by its path inside it), the markers and the Hub's .cache left out."""
    path = Path(path)
    found = {}
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and relative.parts[0] != ".cache" and relative.as_posix() not in BOOKKEEPING:
            found[relative.as_posix()] = file
    return found


def file_digests(path: Path) -> dict[str, str]:
    return {name: sha256_file(file) for name, file in weight_files(path).items()}


def check_weights(entry: ModelEntry, path: Path, own: bool = False) -> str:
    """Why the weights at `path` may be loaded for `entry` (a line for the log), or WeightsRefused saying why not.

    Loaded: the operator's own (OWN_WEIGHTS names the model); generated random weights (tests, the demo); a
    directory whose record (written by scripts/download_models.py) has the registry's pin and whose files still have
    the recorded digests; a direct file with the registry's SHA-256. Anything else is refused, naming what to do.
    """
    path = Path(path)
    if own:
        return "the operator's own weights (OWN_WEIGHTS): not checked against the registry's pin"
    if is_generated(path):
        return "generated random weights (tests and the demo: their outputs mean nothing)"
    pin = registry_pin(entry)
    record = read_record(path) if path.is_dir() else None
    if record is not None:
        if pin is not None and record.pin != pin:
            raise WeightsRefused(
                f"{entry.name}: {path} holds {record.source} at {record.pin}, but the registry pins {pin}: fetch it "
                f"again (remove {path}, run scripts/download_models.py --only {entry.name}), or set "
                f"OWN_WEIGHTS={entry.name} if these are your own")
        differences = compare_digests(record.files, file_digests(path))
        if differences:
            raise WeightsRefused(
                f"{entry.name}: {path} no longer holds what was fetched from {record.source} at {record.pin}: "
                f"{differences}; fetch it again (remove {path}, run scripts/download_models.py --only {entry.name})")
        return f"{record.source} at {record.pin}, every file's SHA-256 as recorded"
    if isinstance(entry.source, DirectFile) and pin is not None:
        file = path if path.is_file() else path / entry.source.filename
        if file.is_file():
            digest = sha256_file(file)
            if digest != pin:
                raise WeightsRefused(f"{entry.name}: {file} has SHA-256 {digest}, but the registry pins {pin} "
                                     f"({entry.source.url}); set OWN_WEIGHTS={entry.name} if it is your own")
            return f"{file.name} with the registry's SHA-256"
    raise WeightsRefused(
        f"{entry.name}: nothing says where the weights at {path} came from (no {WEIGHTS_RECORD}, which "
        f"scripts/download_models.py writes): fetch them with it, or set OWN_WEIGHTS={entry.name} if they are your own "
        f"(a fine-tune)")


def compare_digests(recorded: dict[str, str], present: dict[str, str]) -> str:
    """What differs between the recorded files and those present, in a few words ('' when nothing)."""
    changed = sorted(name for name in recorded.keys() & present.keys() if recorded[name] != present[name])
    missing = sorted(recorded.keys() - present.keys())
    added = sorted(present.keys() - recorded.keys())
    parts = [f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
             for label, names in (("changed", changed), ("missing", missing), ("not fetched", added)) if names]
    return "; ".join(parts)


@dataclass(frozen=True)
class WeightsSize:
    """The tensors of a weights file: floating-point elements (their dtype follows the loader) and the rest."""

    float_elements: int = 0
    float_bytes: int = 0  # as stored
    other_bytes: int = 0  # integer and boolean tensors, loaded as stored

    def __add__(self, other: WeightsSize) -> WeightsSize:
        return WeightsSize(self.float_elements + other.float_elements, self.float_bytes + other.float_bytes,
                           self.other_bytes + other.other_bytes)

    def loaded_bytes(self, bytes_per_float: int | None = None) -> int:
        """Bytes once loaded with floats at bytes_per_float each (None: as stored)."""
        floats = self.float_bytes if bytes_per_float is None else self.float_elements * bytes_per_float
        return floats + self.other_bytes


def safetensors_size(path: Path) -> WeightsSize:
    """The tensors of a .safetensors file, from its JSON header alone (dtypes and shapes; no tensor is read)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path}: safetensors header of {length} bytes is not plausible")
        header = json.loads(handle.read(length))
    size = WeightsSize()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        width, is_float = SAFETENSORS_DTYPES.get(info["dtype"], (1, False))
        start, end = info["data_offsets"]
        elements = (end - start) // width
        size += WeightsSize(elements, end - start, 0) if is_float else WeightsSize(0, 0, end - start)
    return size


def torch_checkpoint_size(path: Path) -> WeightsSize | None:
    """The tensors of a torch.save'd state dict, read onto the meta device (no data is read); None when the file
    is not a plain state dict (e.g. a pickled ultralytics model, which weights_only refuses)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:
        return None
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        return None
    size = WeightsSize()
    seen: set[tuple[int, int]] = set()
    for tensor in checkpoint.values():
        if not isinstance(tensor, torch.Tensor):
            continue
        key = (id(tensor.untyped_storage()), tensor.storage_offset())
        if key in seen:  # tied weights are saved once
            continue
        seen.add(key)
        nbytes = tensor.numel() * tensor.element_size()
        size += WeightsSize(tensor.numel(), nbytes, 0) if tensor.is_floating_point() else WeightsSize(0, 0, nbytes)
    return size


def weights_size(path: Path, stored_bytes_per_float: int = 4) -> WeightsSize:
    """A weights file's tensors: exact for safetensors and plain torch state dicts; otherwise (a pickled model)
    the file's size, read as floats of stored_bytes_per_float bytes each."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return safetensors_size(path)
    size = torch_checkpoint_size(path)
    if size is not None:
        return size
    nbytes = path.stat().st_size
    return WeightsSize(nbytes // stored_bytes_per_float, nbytes, 0)


def estimated_load_bytes(files: Iterable[Path], bytes_per_float: int | None, stored_bytes_per_float: int = 4) -> int | None:
    """What the weights in files take once loaded with floats at bytes_per_float; None when there are no files."""
    files = list(files)
    if not files:
        return None
    total = WeightsSize()
    for path in files:
        total += weights_size(path, stored_bytes_per_float)
    return total.loaded_bytes(bytes_per_float)
