"""The OSNet kind of family (torchreid): one state-dict file, matched to a network built for it, person crops in.

The network is built straight on the device without its random initialisation and takes the checkpoint's
tensors; it runs in float32 everywhere (x0.25 is 1 MB: half precision would save nothing worth its rounding
in the re-identification gallery's cosine similarities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from workers.models.base import ModelFamily, find_weights_file, found_file, skip_random_init

ARCHITECTURE = "osnet_x0_25"
INPUT_SIZE = (256, 128)  # height, width: the person crop shape OSNet was trained on
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pth", ".pth.tar", ".pt")
# Keys of the identity classifier, whose size depends on the training set; the embedding never uses them.
HEAD_PREFIXES = ("classifier.",)


def weights_file(path: str | Path) -> Path:
    """The state-dict file to read: path itself, or the one .pth/.pth.tar/.pt file inside a directory."""
    return find_weights_file(path, WEIGHT_SUFFIXES, "OSNet weights file")


def unwrap_state_dict(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The bare state dict from a torchreid checkpoint: unwrap {"state_dict": ...}, drop DataParallel's "module."."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint holds {type(state).__name__}, not a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}


def match_state_dict(
    model_state: dict[str, Any], checkpoint_state: dict[str, Any], architecture: str = ARCHITECTURE
) -> dict[str, Any]:
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
            f"not {architecture} weights: {len(missing)} backbone tensors missing {missing[:3]}, "
            f"{len(wrong)} with another shape {wrong[:3]}"
        )
    return {
        k: v for k, v in checkpoint_state.items()
        if k in model_state and tuple(v.shape) == tuple(model_state[k].shape)
    }


def import_torchreid() -> Any:
    """torchreid's model builder; imported here because it is slow."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchreid warns that its Cython evaluation code is missing
        from torchreid.reid.models import build_model

    return build_model


def build_osnet(architecture: str = ARCHITECTURE) -> Any:
    """A fresh OSNet (random weights, no download)."""
    return import_torchreid()(architecture, num_classes=1, pretrained=False)


def build_empty_osnet(architecture: str, device: str) -> Any:
    """An OSNet allocated on device with its weights left unset, for a checkpoint to fill."""
    import torch

    with skip_random_init(), torch.device(device):
        return build_osnet(architecture)


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


class OsnetFamily(ModelFamily):
    """An OSNet in eval mode: person crops in, L2-normalised appearance features out."""

    architecture: ClassVar[str] = ARCHITECTURE

    @classmethod
    def weight_files(cls, path: Path) -> list[Path]:
        return found_file(weights_file, path)

    @classmethod
    def import_libraries(cls, path: Path) -> None:
        import_torchreid()

    def _load(self) -> None:
        import torch

        model = build_empty_osnet(self.architecture, self.device)
        checkpoint = torch.load(weights_file(self.path), map_location="cpu", mmap=True, weights_only=True)
        own = model.state_dict()
        state = match_state_dict(own, unwrap_state_dict(checkpoint), self.architecture)
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            for key in own.keys() - state.keys():  # the identity head, unused for embeddings: zeros, not garbage
                own[key].zero_()
        self.model = model.eval()

    def features(self, images: list[Any]) -> Any:
        """Unit-length features of person crops (float32, on the CPU), in one forward pass."""
        import torch

        model = self.require_loaded()
        with torch.inference_mode():
            features = model(torch.cat([preprocess(image) for image in images]).to(self.device)).float()
        return (features / features.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)).cpu()
