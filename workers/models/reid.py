"""Person re-identification embeddings from OSNet x0.25 (torchreid): 512 floats, L2-normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.models.base import ModelInput

ARCHITECTURE = "osnet_x0_25"
EMBEDDING_DIM = 512
INPUT_SIZE = (256, 128)  # height, width: the person crop shape OSNet was trained on
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pth", ".pth.tar", ".pt")
WEIGHTS_FILE = "osnet_x0_25.pth"
EMBEDDING_DIGITS = 4
# Keys of the identity classifier, whose size depends on the training set; the embedding never uses them.
HEAD_PREFIXES = ("classifier.",)


def weights_file(path: str | Path) -> Path:
    """The state-dict file to read: path itself, or the one .pth/.pth.tar/.pt file inside a directory."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no OSNet weights at {path}")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if len(found) != 1:
        names = [p.name for p in found] or "none"
        raise FileNotFoundError(f"expected exactly one {'/'.join(WEIGHT_SUFFIXES)} file in {path}, found {names}")
    return found[0]


def unwrap_state_dict(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The bare state dict from a torchreid checkpoint: unwrap {"state_dict": ...}, drop DataParallel's "module."."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint holds {type(state).__name__}, not a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}


def match_state_dict(model_state: dict[str, Any], checkpoint_state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint tensors to load: every backbone tensor must be there with the right shape; heads may differ."""
    def is_head(key: str) -> bool:
        return key.startswith(HEAD_PREFIXES)

    missing = [k for k in model_state if not is_head(k) and k not in checkpoint_state]
    wrong = [
        f"{k} {tuple(checkpoint_state[k].shape)} != {tuple(v.shape)}"
        for k, v in model_state.items()
        if not is_head(k) and k in checkpoint_state and tuple(checkpoint_state[k].shape) != tuple(v.shape)
    ]
    if missing or wrong:
        raise ValueError(
            f"not {ARCHITECTURE} weights: {len(missing)} backbone tensors missing {missing[:3]}, "
            f"{len(wrong)} with another shape {wrong[:3]}"
        )
    return {
        k: v for k, v in checkpoint_state.items()
        if k in model_state and tuple(v.shape) == tuple(model_state[k].shape)
    }


def build_osnet() -> Any:
    """A fresh OSNet x0.25 (random weights, no download); torchreid is imported here because it is slow."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchreid warns that its Cython evaluation code is missing
        from torchreid.reid.models import build_model

    return build_model(ARCHITECTURE, num_classes=1, pretrained=False)


def preprocess(image: Any) -> Any:
    """Person crop -> 1x3x256x128 tensor, ImageNet-normalised."""
    import numpy as np
    import torch
    from PIL import Image

    resized = image.convert("RGB").resize((INPUT_SIZE[1], INPUT_SIZE[0]), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((pixels - mean) / std).unsqueeze(0)


class ReidModel:
    """OSNet x0.25 in eval mode: person crop in, unit-length 512-d appearance embedding out."""

    def __init__(self, path: str, device: str) -> None:
        self.path = Path(path)
        self.device = device
        self._model: Any = None

    def load(self) -> None:
        import torch

        model = build_osnet()
        checkpoint = torch.load(weights_file(self.path), map_location="cpu", weights_only=True)
        state = match_state_dict(model.state_dict(), unwrap_state_dict(checkpoint))
        model.load_state_dict(state, strict=False)
        self._model = model.to(self.device).eval()

    def unload(self) -> None:
        self._model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def embed(self, image: Any) -> list[float]:
        """Unit-length embedding of one person crop."""
        return self.embed_many([image])[0]

    def embed_many(self, images: list[Any]) -> list[list[float]]:
        """Unit-length embeddings of person crops, in one forward pass."""
        import torch

        with torch.inference_mode():
            features = self._model(torch.cat([preprocess(image) for image in images]).to(self.device)).float()
        features = features / features.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)
        return [[round(float(x), EMBEDDING_DIGITS) for x in row] for row in features.cpu().tolist()]

    def infer(self, inputs: ModelInput) -> dict:
        return self.infer_batch([inputs])[0]

    def infer_batch(self, batch: list[ModelInput]) -> list[dict]:
        """Embeddings for each detection's crop, in one forward pass."""
        return [{"embedding": e, "dim": len(e)} for e in self.embed_many([inputs.person_crop() for inputs in batch])]


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Save a randomly initialised OSNet x0.25 state dict; it is ~1 MB, so tiny and full size are the same."""
    import torch

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_osnet().state_dict(), dest / WEIGHTS_FILE)
