"""A reusable Hugging Face image-classification runner, and tiny offline classifiers to test it with.

API (used by the age_gender, vehicle and pet wrappers):

    clf = ImageClassifier.load(path, device)     # AutoImageProcessor + AutoModelForImageClassification, eval mode
    clf.classify(image, top_k=5)
        -> {"label": str, "confidence": float, "top_k": [{"label": str, "score": float}, ...]}
    clf.classify_many(images, top_k=5)          # the same for a batch, in one forward pass
    clf.labels                                   # the model's own config.id2label, in index order
    clf.close()                                  # drop the weights (and the CUDA cache when on a GPU)

    write_tiny_classifier(dest, labels, full_size=False, architecture="vit")
        writes config + random weights + image processor config with save_pretrained, loadable offline.
        architecture: "vit" | "resnet" | "convnext"; full_size=True gives the real base-size architecture
        (ViT-B/16-224, ResNet-18, ConvNeXt-T) with random weights.

Labels always come from the checkpoint's config.id2label; scores are softmax probabilities rounded to 4 dp.
torch and transformers are imported inside functions so importing this module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

SCORE_DIGITS = 4

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


def _rounded(value: float) -> float:
    return round(float(value), SCORE_DIGITS)


@dataclass
class ImageClassifier:
    """A loaded image classifier: its processor, its model in eval mode, and the device it runs on."""

    processor: Any
    model: Any
    device: str

    @classmethod
    def load(cls, path: str | Path, device: str) -> ImageClassifier:
        """Load processor and model from a local directory (never the network) onto device."""
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForImageClassification.from_pretrained(str(path), local_files_only=True)
        model.to(device).eval()
        return cls(processor=processor, model=model, device=device)

    @property
    def labels(self) -> list[str]:
        """The model's own class names, in index order."""
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def probabilities(self, images: list[Image.Image]) -> list[list[float]]:
        """Softmax over the model's classes for each RGB image, in one forward pass."""
        import torch

        batch = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        pixel_values = batch["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixel_values).logits
        return logits.float().softmax(dim=-1).cpu().tolist()

    def classify_many(self, images: list[Image.Image], top_k: int = 5) -> list[dict]:
        """Per image: best label, its confidence and the top_k labels with scores (highest first)."""
        id2label = self.model.config.id2label
        answers = []
        for probs in self.probabilities(images):
            order = sorted(range(len(probs)), key=lambda i: probs[i], reverse=True)[: max(1, top_k)]
            ranked = [{"label": str(id2label[i]), "score": _rounded(probs[i])} for i in order]
            answers.append({"label": ranked[0]["label"], "confidence": ranked[0]["score"], "top_k": ranked})
        return answers

    def classify(self, image: Image.Image, top_k: int = 5) -> dict:
        """Best label, its confidence and the top_k labels with scores (highest first)."""
        return self.classify_many([image], top_k)[0]

    def close(self) -> None:
        """Drop the weights; on a GPU also hand cached blocks back to the driver."""
        self.model = None
        self.processor = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


class CropClassifierModel:
    """A model wrapper classifying the detection's box: label, confidence and top_k from the checkpoint's id2label."""

    top_k = 3

    def __init__(self, path: str, device: str) -> None:
        self.path = path
        self.device = device
        self.classifier: ImageClassifier | None = None

    def load(self) -> None:
        self.classifier = ImageClassifier.load(self.path, self.device)

    def unload(self) -> None:
        if self.classifier is not None:
            self.classifier.close()
        self.classifier = None

    def infer(self, inputs: Any) -> dict:
        return self.infer_batch([inputs])[0]

    def infer_batch(self, batch: list[Any]) -> list[dict]:
        """The crops of a micro-batch through the classifier in one forward pass."""
        if self.classifier is None:
            raise RuntimeError(f"{type(self).__name__}.infer called before load()")
        return self.classifier.classify_many([inputs.person_crop() for inputs in batch], top_k=self.top_k)


def _config(architecture: str, overrides: dict[str, Any], labels: list[str]) -> Any:
    from transformers import ConvNextConfig, ResNetConfig, ViTConfig

    config_classes = {"vit": ViTConfig, "resnet": ResNetConfig, "convnext": ConvNextConfig}
    id2label = {i: label for i, label in enumerate(labels)}
    return config_classes[architecture](
        **overrides, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )


def _image_processor(architecture: str, size: int) -> Any:
    from transformers import ConvNextImageProcessor, ViTImageProcessor

    if architecture == "vit":
        return ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    # ResNet and ConvNeXt checkpoints on the hub ship a ConvNeXt-style processor (resize, centre crop).
    return ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=0.875)


def write_tiny_classifier(
    dest: str | Path, labels: list[str], full_size: bool = False, architecture: str = "vit"
) -> None:
    """Write a randomly initialised image classifier with these labels as a Hugging Face directory."""
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
