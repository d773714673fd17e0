"""Zero-shot action recognition over a short frame sequence with X-CLIP, scored against security actions."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from PIL import Image

from workers.models.base import ModelInput, InferenceSkipped, clamp_box

ACTIONS_FILE = Path(__file__).with_name("security_actions.toml")
ACTIONS_ENV = "ACTION_PROMPTS_FILE"
TOP_ACTIONS = 3
SCORE_DIGITS = 4

# Each frame is cut to a square around the event box, this many times the box's longer side, so the
# person stays large while the fence, door or window they act on stays in view. The same region is
# cut from every frame (the box comes from one frame), so movement across the sequence is kept.
CONTEXT_SCALE = 2.0

# CLIP's normalisation, as X-CLIP's own preprocessor config uses.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The tiny model: small enough to build and run in well under a second on a CPU.
TINY_CONFIG: dict[str, Any] = {
    "text_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 77,
    },
    "vision_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "mit_hidden_size": 32, "mit_intermediate_size": 64, "mit_num_hidden_layers": 1, "mit_num_attention_heads": 2,
        "image_size": 32, "patch_size": 8, "num_frames": 4,
    },
    "projection_dim": 32, "prompt_layers": 1, "prompt_num_attention_heads": 2,
}
TINY_IMAGE_SIZE = 32

# microsoft/xclip-base-patch16-zero-shot: ViT-B/16 vision tower over 32 frames, CLIP text tower.
FULL_CONFIG: dict[str, Any] = {
    "text_config": {},
    "vision_config": {"patch_size": 16, "num_frames": 32},
    "projection_dim": 512,
}
FULL_IMAGE_SIZE = 224


def load_actions(path: Path | str | None = None) -> tuple[str, ...]:
    """Read the action prompts (ACTION_PROMPTS_FILE, else the bundled TOML) and check their shape."""
    path = Path(path or os.environ.get(ACTIONS_ENV) or ACTIONS_FILE)
    actions = tomllib.loads(path.read_text(encoding="utf-8")).get("actions")
    if not isinstance(actions, list) or not actions or not all(isinstance(a, str) and a.strip() for a in actions):
        raise ValueError(f"{path}: 'actions' must be a non-empty list of non-empty strings")
    if len(set(actions)) != len(actions):
        raise ValueError(f"{path}: 'actions' has duplicates")
    return tuple(actions)


def sample_frame_indices(available: int, wanted: int) -> list[int]:
    """Pick `wanted` frame indices spread evenly over `available` frames: segment centres, repeating when short."""
    if available < 1 or wanted < 1:
        raise ValueError(f"need at least one frame available and wanted, got {available} and {wanted}")
    return [min(available - 1, int((i + 0.5) * available / wanted)) for i in range(wanted)]


def context_box(
    bbox: tuple[float, float, float, float],
    source_size: tuple[int, int],
    frame_size: tuple[int, int],
    scale: float = CONTEXT_SCALE,
) -> tuple[int, int, int, int]:
    """The square around bbox (given in source_size pixels) that each frame of frame_size is cut to."""
    sx, sy = frame_size[0] / source_size[0], frame_size[1] / source_size[1]
    x1, y1, x2, y2 = bbox[0] * sx, bbox[1] * sy, bbox[2] * sx, bbox[3] * sy
    half = max(x2 - x1, y2 - y1) * scale / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return clamp_box((cx - half, cy - half, cx + half, cy + half), *frame_size)


def rank_actions(actions: tuple[str, ...], probabilities: list[float], k: int = TOP_ACTIONS) -> list[dict]:
    """The k most likely actions with their probabilities, highest first."""
    order = sorted(range(len(actions)), key=lambda i: probabilities[i], reverse=True)[:k]
    return [{"action": actions[i], "score": round(float(probabilities[i]), SCORE_DIGITS)} for i in order]


class ActionModel:
    """X-CLIP scoring a sampled, person-centred frame sequence against the security action prompts."""

    def __init__(self, path: str, device: str) -> None:
        self.path = Path(path)
        self.device = device
        self.actions = load_actions()
        self._model: Any = None
        self._processor: Any = None
        self._text_embeds: Any = None  # projected prompt embeddings, computed once per load

    @property
    def num_frames(self) -> int:
        return int(self._model.config.vision_config.num_frames)

    def load(self) -> None:
        import torch
        from transformers import XCLIPModel, XCLIPProcessor

        self._processor = XCLIPProcessor.from_pretrained(str(self.path), local_files_only=True)
        self._model = XCLIPModel.from_pretrained(str(self.path), local_files_only=True).to(self.device).eval()
        tokens = self._processor.tokenizer(list(self.actions), padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            self._text_embeds = self._model.get_text_features(**tokens).pooler_output

    def unload(self) -> None:
        self._model = self._processor = self._text_embeds = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def clip_frames(self, inputs: ModelInput) -> tuple[list[Image.Image], int]:
        """The frames X-CLIP sees (exactly num_frames, cut to the context box) and how many distinct ones."""
        if not inputs.frames:
            raise InferenceSkipped("no frames given: action recognition needs the event's frame sequence")
        indices = sample_frame_indices(len(inputs.frames), self.num_frames)
        clip = []
        for i in indices:
            frame = inputs.frames[i].convert("RGB")
            clip.append(frame.crop(context_box(inputs.bbox, inputs.frame.size, frame.size)))
        return clip, len(set(indices))

    def video_logits(self, pixel_values: Any) -> Any:
        """XCLIPModel.forward's video side, scored against the cached prompt embeddings.

        X-CLIP conditions its text embeddings on the video (prompts_generator), so only the text
        tower's output is cached; the video-specific prompt step runs per call, as in forward().
        """
        model = self._model
        batch, frames, channels, height, width = pixel_values.shape
        vision = model.vision_model(pixel_values=pixel_values.reshape(-1, channels, height, width))
        cls_features = model.visual_projection(vision.pooler_output).view(batch, frames, -1)
        video_embeds = model.mit(cls_features).pooler_output
        img_features = model.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :])
        img_features = img_features @ model.prompts_visual_projection
        img_features = img_features.view(batch, frames, -1, video_embeds.shape[-1]).mean(dim=1)
        text_embeds = self._text_embeds.unsqueeze(0).expand(batch, -1, -1)
        text_embeds = text_embeds + model.prompts_generator(text_embeds, img_features)
        video_embeds = video_embeds / video_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        return model.logit_scale.exp() * (text_embeds @ video_embeds.unsqueeze(-1)).squeeze(-1)

    def infer(self, inputs: ModelInput) -> dict:
        import torch

        clip, distinct = self.clip_frames(inputs)
        pixel_values = self._processor(videos=[clip], return_tensors="pt")["pixel_values"]
        if pixel_values.ndim == 4:  # an image (not video) processor: frames came back as a batch of images
            pixel_values = pixel_values.unsqueeze(0)
        pixel_values = pixel_values.to(self.device, dtype=self._model.dtype)
        with torch.inference_mode():
            probabilities = self.video_logits(pixel_values)[0].float().softmax(dim=-1).cpu().tolist()
        ranked = rank_actions(self.actions, probabilities)
        return {
            "top_action": ranked[0]["action"],
            "confidence": ranked[0]["score"],
            "top_actions": ranked,
            "frames_used": distinct,
        }


def _word_merges(texts: list[str]) -> list[tuple[str, str]]:
    """BPE merges that spell every word of texts left to right, ending on the end-of-word symbol."""
    merges: list[tuple[str, str]] = []
    for text in texts:
        for word in text.lower().split():
            symbols = list(word[:-1]) + [word[-1] + "</w>"]
            while len(symbols) > 1:
                pair = (symbols[0], symbols[1])
                if pair not in merges:
                    merges.append(pair)
                symbols = [symbols[0] + symbols[1]] + symbols[2:]
    return merges


def tiny_clip_tokenizer(texts: list[str]) -> Any:
    """A CLIP BPE tokenizer built offline: byte alphabet, whole-word merges for texts, CLIP's special tokens.

    The special tokens take the highest ids, as in CLIP, because X-CLIP's text tower pools at argmax(input_ids).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = _word_merges(texts)
    tokens = alphabet + [symbol + "</w>" for symbol in alphabet]
    tokens += [a + b for a, b in merges if a + b not in tokens]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def write_tiny(dest: Path, full_size: bool = False) -> None:
    """Write a randomly initialised X-CLIP with its processor (tokenizer + video preprocessor) into dest.

    full_size=True gives the real xclip-base-patch16-zero-shot architecture; both use a small
    offline-built tokenizer (the real one ships CLIP's 49k-token vocabulary).
    """
    import torch
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_clip_tokenizer(list(load_actions(ACTIONS_FILE)))
    spec = FULL_CONFIG if full_size else TINY_CONFIG
    size = FULL_IMAGE_SIZE if full_size else TINY_IMAGE_SIZE
    text_config = {**spec["text_config"], "vocab_size": len(tokenizer)}
    config = XCLIPConfig(
        text_config=text_config, vision_config=dict(spec["vision_config"], image_size=size),
        **{k: v for k, v in spec.items() if k not in ("text_config", "vision_config")},
    )
    torch.manual_seed(0)
    XCLIPModel(config).save_pretrained(dest)
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
