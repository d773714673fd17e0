"""Where each model's files live under MODELS_DIR (MODELS_DIR/<name>), when a model directory counts as complete,
and how many bytes a model's weights take once loaded, read from the files without loading them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workers.registry import ModelEntry

COMPLETE_MARKER = ".complete"

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
