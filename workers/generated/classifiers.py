"""Random-weight Hugging Face image models: classifiers (vehicle, pet, any labels) and the dual-head age/gender ViT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Tiny architectures: a few hundred kB, built in well under a second.
TINY_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vit": {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "image_size": 32, "patch_size": 8,
    },
    "resnet": {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"},
    "convnext": {"num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1], "image_size": 32},
}

# Real base-size architectures (random weights): ViT-B/16 at 224, ResNet-18, ConvNeXt-T.
FULL_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vit": {},
    "resnet": {"embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2], "layer_type": "basic"},
    "convnext": {},
}

TINY_IMAGE_SIZE = 32
FULL_IMAGE_SIZE = 224

# The seed's vehicle-segment classes (MIO-TCD style); the real checkpoint's config.id2label is what
# inference reports, this list only names the classes of generated models.
VEHICLE_SEGMENT_CLASSES: tuple[str, ...] = (
    "articulated_truck", "background", "bicycle", "bus", "car", "motorcycle", "non_motorized_vehicle",
    "pedestrian", "pickup_truck", "single_unit_truck", "work_van",
)
VEHICLE_ARCHITECTURE = "vit"  # the default checkpoint is a ViT-B/16 fine-tune

PET_CLASSES: tuple[str, ...] = ("cat", "dog")
PET_ARCHITECTURE = "resnet"  # a ResNet-18 fine-tune, as in the seed (~200 MB budget)

# The default age/gender model's layout (dual head), the one its loader must read for
# abhilash88/age-gender-prediction; the real model's processor config comes with its snapshot.
AGE_GENDER_TINY_VIT: dict[str, Any] = TINY_ARCHITECTURES["vit"]
AGE_GENDER_FULL_VIT: dict[str, Any] = {}  # ViTConfig defaults: ViT-B/16 at 224 px, as in the published checkpoint


def _config(architecture: str, overrides: dict[str, Any], labels: list[str]) -> Any:
    from transformers import ConvNextConfig, ResNetConfig, ViTConfig

    config_classes = {"vit": ViTConfig, "resnet": ResNetConfig, "convnext": ConvNextConfig}
    id2label = {i: label for i, label in enumerate(labels)}
    return config_classes[architecture](
        **overrides, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )


def _vit_image_processor(size: int) -> Any:
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _image_processor(architecture: str, size: int) -> Any:
    from transformers import ConvNextImageProcessor

    if architecture == "vit":
        return _vit_image_processor(size)
    # ResNet and ConvNeXt checkpoints on the hub ship a ConvNeXt-style processor (resize, centre crop).
    return ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=0.875)


def write_tiny_classifier(
    dest: str | Path, labels: list[str], full_size: bool = False, architecture: str = "vit"
) -> None:
    """Write a randomly initialised image classifier with these labels as a Hugging Face directory.

    architecture: "vit" | "resnet" | "convnext"; full_size=True gives the real base-size architecture
    (ViT-B/16-224, ResNet-18, ConvNeXt-T) with random weights.
    """
    import torch
    from transformers import AutoModelForImageClassification

    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; pick one of {sorted(TINY_ARCHITECTURES)}")
    if not labels:
        raise ValueError("a classifier needs at least one label")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    overrides = FULL_ARCHITECTURES[architecture] if full_size else TINY_ARCHITECTURES[architecture]
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(_config(architecture, overrides, labels))
    model.save_pretrained(dest)
    _image_processor(architecture, FULL_IMAGE_SIZE if full_size else TINY_IMAGE_SIZE).save_pretrained(dest)


def write_vehicle(dest: Path, full_size: bool = False) -> None:
    """A classifier over the vehicle-segment classes."""
    write_tiny_classifier(dest, list(VEHICLE_SEGMENT_CLASSES), full_size=full_size, architecture=VEHICLE_ARCHITECTURE)


def write_pet(dest: Path, full_size: bool = False) -> None:
    """A cat/dog classifier."""
    write_tiny_classifier(dest, list(PET_CLASSES), full_size=full_size, architecture=PET_ARCHITECTURE)


def write_age_gender(dest: Path, full_size: bool = False) -> None:
    """A dual-head age/gender ViT (age regressor + female-probability head) and its image processor."""
    import torch
    from transformers import ViTConfig

    from workers.models.age_gender_vit import AgeGenderViTModel

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(**(AGE_GENDER_FULL_VIT if full_size else AGE_GENDER_TINY_VIT))
    torch.manual_seed(0)
    AgeGenderViTModel(config).save_pretrained(dest)
    _vit_image_processor(config.image_size).save_pretrained(dest)
