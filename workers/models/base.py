"""What every model family shares: its input, how it skips, and the base that owns path, device and loading."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from workers.model_files import estimated_load_bytes
from workers.settings import ZooSettings

# Weight files a family reads, most preferred first: safetensors where present, else torch pickles.
WEIGHT_SUFFIXES: tuple[tuple[str, ...], ...] = ((".safetensors",), (".bin", ".pth", ".pt", ".pth.tar"))
# torch.nn.init functions a module constructor calls to fill its random initial weights.
INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)


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
    shared: dict[str, Any] | None = None  # this model's frame outputs, computed for another event on the same frame

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


def _leave_alone(tensor: Any, *args: Any, **kwargs: Any) -> Any:
    return tensor


@contextmanager
def skip_random_init() -> Iterator[None]:
    """Build modules without filling their weights with random numbers (the checkpoint overwrites them anyway).

    torch.nn.init's functions, and the copies torch's own modules imported (MultiheadAttention's xavier_uniform_),
    leave their tensor as allocated while the block runs. Buffers computed in constructors (causal masks,
    BatchNorm statistics) are unaffected. Everything a checkpoint does not cover is left uninitialised, so load
    with strict=True or fill what is missing. Process-wide while it runs: the cache runs one load at a time,
    and inference never initialises weights.
    """
    import torch  # noqa: F401  (torch.nn.init must be imported before it can be patched)

    patched: list[tuple[Any, str, Any]] = []
    modules = [
        module for name, module in list(sys.modules.items())
        if module is not None and (name == "torch.nn.init" or name.startswith("torch.nn.modules"))
    ]
    try:
        for module in modules:
            for name in INIT_FUNCTIONS:
                original = getattr(module, name, None)
                if callable(original):
                    patched.append((module, name, original))
                    setattr(module, name, _leave_alone)
        yield
    finally:
        for module, name, original in reversed(patched):
            setattr(module, name, original)


def weight_files(path: str | Path, suffix_groups: tuple[tuple[str, ...], ...] = WEIGHT_SUFFIXES) -> list[Path]:
    """The weight files at path: the file itself, else the files of the first suffix group present in the directory."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    for suffixes in suffix_groups:
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
        if found:
            return found
    return []


def found_file(find: Callable[[Path], Path], path: Path) -> list[Path]:
    """[the one weight file find(path) names], or [] when it finds none (FileNotFoundError): a kind whose
    checkpoint is a single file answers ModelFamily.weight_files with this."""
    try:
        return [find(path)]
    except FileNotFoundError:
        return []


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
    stored_bytes_per_float: ClassVar[int] = 4  # how floats are stored in a weights file whose dtypes cannot be read
    half_on_cuda: ClassVar[bool] = False  # a kind (or family) that runs in float16 on a GPU says so
    model: Any

    @classmethod
    def runs_in_half(cls, device: str) -> bool:
        """float16 weights on this device: on a GPU, for kinds and families that allow it."""
        return cls.half_on_cuda and device.startswith("cuda")

    # -- before loading: libraries and size ----------------------------------------------------------------
    @classmethod
    def import_libraries(cls, path: Path) -> None:
        """Import what load() will import, so the first load in a worker does not pay for it (no device is touched)."""
        import torch  # noqa: F401

    @classmethod
    def bytes_per_float(cls, device: str) -> int | None:
        """Bytes per floating-point weight once loaded on device: 2 where it runs in half precision, else 4."""
        return 2 if cls.runs_in_half(device) else 4

    @classmethod
    def weight_files(cls, path: Path) -> list[Path]:
        """The files load() reads its weights from (for sizing); a kind narrows this to its own format."""
        return weight_files(path)

    @classmethod
    def estimate_bytes(cls, path: str | Path, device: str) -> int | None:
        """What the model will hold on device, from its weight files (dtypes and shapes, nothing loaded); None
        when there are none. Buffers and caches a load adds are not counted: the first load measures them."""
        return estimated_load_bytes(cls.weight_files(Path(path)), cls.bytes_per_float(device), cls.stored_bytes_per_float)

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
