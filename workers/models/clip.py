"""CLIP ViT-L/14 scene embeddings (the full frame and the detection crop as unit vectors) and zero-shot scene tags."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from PIL import Image

from prompt_formatting import SCENE_TAG_PROMPTS, WEATHER_PROMPTS
from workers.finishing import Finishing
from workers.models.base import ModelInput
from workers.models.hf_family import HuggingFaceFamily

log = logging.getLogger(__name__)

# Embeddings keep 6 decimals: at 4, a 768-dim unit vector's components (~0.04) would lose ~0.1% each.
EMBEDDING_DECIMALS = 6
SCORE_DIGITS = 4
TAG_TOP_K = 5  # scene tags kept per frame, best first (the prompt prints at most three)
# CLIP's trained temperature (exp(logit_scale), clamped at 100 in training), for a checkpoint without one.
DEFAULT_LOGIT_SCALE = 100.0


def unit_vector(values: list[float], decimals: int = EMBEDDING_DECIMALS) -> list[float]:
    """Scale a vector to length 1 (a zero vector stays zero), rounded for JSON."""
    norm = sum(v * v for v in values) ** 0.5
    if norm == 0.0:
        return [0.0 for _ in values]
    return [round(v / norm, decimals) for v in values]


def embedding_model_id(path: str | Path) -> str:
    """Which CLIP made an embedding: the checkpoint folder's name and 12 hex digits of a SHA-256 over its config and
    its weight files' names and sizes (computed once per load; another checkpoint, or the same one's tiny
    random stand-in, gets another id, so their vectors are never compared)."""
    folder = Path(path)
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return f"clip:{folder.name}:{digest.hexdigest()[:12]}"


def rank_tags(labels: tuple[str, ...], probabilities: list[float], k: int = TAG_TOP_K) -> list[dict]:
    """The k most likely tags with their probabilities, highest first."""
    order = sorted(range(len(labels)), key=lambda i: probabilities[i], reverse=True)[:k]
    return [{"label": labels[i], "score": round(float(probabilities[i]), SCORE_DIGITS)} for i in order]


class ClipModel(HuggingFaceFamily):
    """The image tower of a transformers CLIP checkpoint, with the scene tags' text embeddings.

    The checkpoint is a whole CLIPModel. Only its image tower stays loaded; at load the text tower is read
    once, embeds SCENE_TAG_PROMPTS (prompt_formatting's list, data) and is dropped again, so a loaded model
    holds the image tower plus a tags x projection matrix. Tags are CLIP's zero-shot scores: softmax over the
    tags of the checkpoint's logit scale times the cosine of the frame embedding with each tag.
    """

    processor_class = "AutoImageProcessor"
    half_on_cuda = True
    loaded_attributes = HuggingFaceFamily.loaded_attributes + ("tag_embeds", "weather_embeds", "logit_scale",
                                                               "embedding_model")
    tag_labels: tuple[str, ...] = SCENE_TAG_PROMPTS
    weather_labels: tuple[str, ...] = tuple(label for label, _ in WEATHER_PROMPTS)

    def clip_config(self) -> Any:
        from transformers import AutoConfig

        return self.pretrained(AutoConfig)

    def load_model(self) -> Any:
        from transformers import CLIPVisionModelWithProjection

        config = self.clip_config()
        vision_config = getattr(config, "vision_config", config)
        # The projection width is a top-level CLIPConfig field; the vision tower must project to it too.
        vision_config.projection_dim = getattr(config, "projection_dim", vision_config.projection_dim)

        class ImageTower(CLIPVisionModelWithProjection):
            # The checkpoint is a whole CLIPModel; its text half is skipped on purpose, not reported.
            _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^text_projection\.", r"^logit_scale$"]

        return self.pretrained(ImageTower, config=vision_config, dtype=self.dtype)

    def _load(self) -> None:
        super()._load()
        self.embedding_model = embedding_model_id(self.path)  # once per load, not per event
        texts, self.logit_scale = self.embed_texts(self.tag_labels + tuple(text for _, text in WEATHER_PROMPTS))
        self.tag_embeds, self.weather_embeds = texts[: len(self.tag_labels)], texts[len(self.tag_labels):]

    def embed_texts(self, texts: tuple[str, ...]) -> tuple[Any, float]:
        """Unit text embeddings (float32, on the device) of texts and the checkpoint's logit scale.

        The text tower (with its projection) is loaded for this and dropped before returning.
        """
        import torch
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        config = self.clip_config()
        text_config = config.text_config
        text_config.projection_dim = config.projection_dim

        class TextTower(CLIPTextModelWithProjection):
            # The image half is skipped on purpose; logit_scale is the whole model's, read beside the text tower.
            _keys_to_ignore_on_load_unexpected = [r"^vision_model\.", r"^visual_projection\."]

            def __init__(self, config: Any) -> None:
                super().__init__(config)
                self.logit_scale = torch.nn.Parameter(torch.tensor(0.0))

        tokenizer = self.pretrained(AutoTokenizer)
        tower, info = self.pretrained(TextTower, config=text_config, dtype=self.dtype, output_loading_info=True)
        tower = tower.to(self.device).eval()
        tokens = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            embeds = torch.nn.functional.normalize(tower(**tokens).text_embeds.float(), dim=-1)
            learned = float(tower.logit_scale.float().exp())
        scale = DEFAULT_LOGIT_SCALE if "logit_scale" in info["missing_keys"] else learned
        del tower
        return embeds, scale

    def image_embeds(self, images: list[Image.Image]) -> Any:
        """The images' projected embeddings (float32, not normalised), in one forward pass."""
        return self.forward_images(images).image_embeds.float()

    def embed(self, images: list[Image.Image]) -> list[list[float]]:
        """One L2-normalised embedding per image, computed in a single batch."""
        return [unit_vector(row) for row in self.image_embeds(images).cpu().tolist()]

    def scene_tags(self, frame_embeds: Any, k: int = TAG_TOP_K) -> list[dict]:
        """The k best scene tags of one frame embedding, with their softmax scores over all tags."""
        import torch

        frame = torch.nn.functional.normalize(frame_embeds.reshape(1, -1), dim=-1)
        probabilities = (self.logit_scale * frame @ self.tag_embeds.T)[0].softmax(dim=-1).cpu().tolist()
        return rank_tags(self.tag_labels, probabilities, k)

    def weather(self, frame_embeds: Any) -> dict:
        """CLIP's zero-shot weather and visibility over WEATHER_PROMPTS: the best condition, its score, all ranked."""
        import torch

        frame = torch.nn.functional.normalize(frame_embeds.reshape(1, -1), dim=-1)
        probabilities = (self.logit_scale * frame @ self.weather_embeds.T)[0].softmax(dim=-1).cpu().tolist()
        ranked = rank_tags(self.weather_labels, probabilities, len(self.weather_labels))
        return {"label": ranked[0]["label"], "score": ranked[0]["score"], "ranked": ranked}

    def infer(self, inputs: ModelInput) -> dict:
        embedding_model = self.embedding_model
        if inputs.shared is not None:  # the frame's outputs came from another event on this frame: the crop alone
            (crop_embedding,) = (unit_vector(row) for row in self.image_embeds([inputs.person_crop()]).cpu().tolist())
            return dict(inputs.shared) | {"crop_embedding": crop_embedding, "embedding_model": embedding_model}
        embeds = self.image_embeds([inputs.frame, inputs.person_crop()])
        frame_embedding, crop_embedding = (unit_vector(row) for row in embeds.cpu().tolist())
        return {
            "frame_embedding": frame_embedding,
            "crop_embedding": crop_embedding,
            "dim": len(frame_embedding),
            "tags": self.scene_tags(embeds[0]),
            "weather": self.weather(embeds[0]),
            "embedding_model": embedding_model,
        }


def score_scene(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """CLIP's scene anomaly against the camera's baseline (the frame then joins it); a failing baseline is
    recorded as unavailable "scene_baseline"."""
    clip = enrichment.get("scene", {}).get("clip")
    if finishing.baseline is None or not isinstance(clip, dict) or not clip.get("frame_embedding"):
        return
    try:
        clip["anomaly"] = finishing.baseline.score_and_learn(clip["frame_embedding"], finishing.camera_id)
    except Exception as exc:
        log.warning("scene baseline unavailable: %s", exc)
        finishing.unavailable["scene_baseline"] = f"error: {exc}"


def recognise_vehicle_look(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """A vehicle whose plate was not read, or not registered: its crop's CLIP embedding against the registered
    vehicles' looks (`model-zoo household add-vehicle ... --event`), as household.vehicle_look (match / no_match /
    no_gallery / re_enroll, the vehicle). The plate, when it names a registered vehicle, comes first."""
    event = finishing.event
    clip = (enrichment.get("scene") or {}).get("clip")
    if finishing.household is None or event is None or event.detection_type != "vehicle" or not isinstance(clip, dict):
        return
    if not clip.get("crop_embedding") or not clip.get("embedding_model"):
        return
    household = enrichment.setdefault("household", {})
    if (household.get("plate") or {}).get("registered") is True:
        return
    try:
        household["vehicle_look"] = finishing.household.match_vehicle_embedding(clip["crop_embedding"],
                                                                                clip["embedding_model"])
    except Exception as exc:
        log.warning("household vehicles unavailable: %s", type(exc).__name__)
        finishing.unavailable["household"] = f"error: {type(exc).__name__}"


def finish_clip(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """CLIP's finisher: the scene's anomaly for this camera, and a vehicle recognised by its look."""
    score_scene(enrichment, finishing)
    recognise_vehicle_look(enrichment, finishing)
