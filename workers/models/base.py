"""What every model family shares: its input, how it skips, and the base that owns path, device and loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from workers.settings import ZooSettings


class InferenceSkipped(Exception):
    """Raised by infer() when the model has nothing to do for this input (e.g. no frames)."""


def clamp_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Round a pixel box inward to the image, always at least one pixel wide and high."""
    x1, y1, x2, y2 = box
    left = min(max(int(x1), 0), width - 1)
    top = min(max(int(y1), 0), height - 1)
    right = max(min(int(round(x2)), width), left + 1)
    bottom = max(min(int(round(y2)), height), top + 1)
    return left, top, right, bottom


@dataclass
class ModelInput:
    """One detection as a model sees it: the decoded frame, its boxes, optional frame buffer."""

    frame: Image.Image
    bbox: tuple[float, float, float, float]
    detection_type: str = "person"
    face_bbox: tuple[float, float, float, float] | None = None
    frames: list[Image.Image] = field(default_factory=list)

    def person_crop(self) -> Image.Image:
        """The detection's box cut from the frame (named for persons, used for any object)."""
        return self.frame.crop(clamp_box(self.bbox, *self.frame.size))

    def face_crop(self) -> Image.Image:
        """The face box when given, else the top quarter of the detection box."""
        if self.face_bbox is not None:
            return self.frame.crop(clamp_box(self.face_bbox, *self.frame.size))
        x1, y1, x2, y2 = self.bbox
        return self.frame.crop(clamp_box((x1, y1, x2, y1 + (y2 - y1) / 4), *self.frame.size))


def find_weights_file(
    path: str | Path, suffixes: tuple[str, ...], what: str, preferred: tuple[str, ...] = (), nested: bool = False
) -> Path:
    """The one weights file at path: the file itself, or the only file with one of these suffixes in the directory.

    With `nested`, subfolders are searched when the top level holds none; among several candidates, a name
    in `preferred` (first match wins) decides.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no {what} at {path}")

    def matching(files: Any) -> list[Path]:
        return sorted(p for p in files if p.name.endswith(suffixes) and p.is_file())

    candidates = matching(path.iterdir())
    if not candidates and nested:
        candidates = matching(path.rglob("*"))
    if len(candidates) == 1:
        return candidates[0]
    for name in preferred:
        chosen = [c for c in candidates if c.name == name]
        if len(chosen) == 1:
            return chosen[0]
    found = ", ".join(str(c.relative_to(path)) for c in candidates) or "none"
    raise FileNotFoundError(f"expected exactly one {'/'.join(suffixes)} {what} in {path}, found: {found}")


class ModelFamily:
    """The face every model family shows the pool: construct (no GPU), load(), infer(), unload().

    The constructor only records where the weights are, the device and the zoo settings; load() reads the
    weights onto the device (subclasses fill in `_load`) and unload() drops everything `_load` set
    (`loaded_attributes`) and hands cached device memory back. Batching is declared: a family with
    `batchable = True` implements infer_batch(list[ModelInput]) -> list[dict] and its infer(x) is
    infer_batch([x])[0]; other families implement infer(). infer() returns a JSON-serialisable dict, or
    raises InferenceSkipped with a reason.
    """

    batchable: ClassVar[bool] = False
    loaded_attributes: ClassVar[tuple[str, ...]] = ("model",)  # what _load() sets and unload() drops
    model: Any

    def __init__(self, path: str | Path, device: str, zoo: ZooSettings | None = None) -> None:
        self.path = Path(path)
        self.device = device
        self.zoo = zoo if zoo is not None else ZooSettings()
        self._drop()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def require_loaded(self) -> Any:
        """The loaded model; the one place a family used before load() (or after unload()) says so."""
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not loaded; call load() first")
        return self.model

    def load(self) -> None:
        """Read the weights onto the device; a load that fails leaves nothing half-loaded behind."""
        try:
            self._load()
        except BaseException:
            self.unload()
            raise

    def _load(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not say how it loads")

    def unload(self) -> None:
        """Drop the weights (and whatever else load() set); on a GPU also hand cached blocks back to the driver."""
        self._drop()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _drop(self) -> None:
        for name in self.loaded_attributes:
            setattr(self, name, None)

    def infer(self, inputs: ModelInput) -> dict:
        """One detection's answer: a batchable family answers it as a batch of one."""
        return self.infer_batch([inputs])[0]

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """A micro-batch's answers in one pass; only families declaring `batchable = True` implement it."""
        raise NotImplementedError(f"{type(self).__name__} is not batchable")
