"""Zero-shot action recognition over a short frame sequence with X-CLIP, scored against security actions."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from PIL import Image

from prompt_formatting.vocabulary import readable_label, words_of
from workers.followups import Ask, event_field
from workers.models.base import InferenceSkipped, ModelInput, clamp_box
from workers.models.hf_family import HuggingFaceFamily
from workers.settings import ZooSettings

ACTIONS_FILE = Path(__file__).with_name("security_actions.toml")
TOP_ACTIONS = 3
SCORE_DIGITS = 4

# Each frame is cut to a square around the event box, this many times the box's longer side, so the
# person stays large while the fence, door or window they act on stays in view. The same region is
# cut from every frame (the box comes from one frame), so movement across the sequence is kept.
CONTEXT_SCALE = 2.0


def load_actions(path: Path | str | None = None) -> tuple[str, ...]:
    """Read the action prompts (the given file, else the bundled TOML) and check their shape."""
    path = Path(path or ACTIONS_FILE)
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


def action_report(actions: tuple[str, ...], probabilities: list[float], frames_used: int) -> dict:
    """The seed's action shape (top_action, confidence, all_scores over every action, highest first) and ours
    beside it (top_actions: the TOP_ACTIONS best as a list; frames_used: distinct frames in the clip)."""
    ranked = rank_actions(actions, probabilities, k=len(actions))
    return {
        "top_action": ranked[0]["action"],
        "confidence": ranked[0]["score"],
        "all_scores": {entry["action"]: entry["score"] for entry in ranked},
        "top_actions": ranked[:TOP_ACTIONS],
        "frames_used": frames_used,
    }


class ActionModel(HuggingFaceFamily):
    """X-CLIP scoring a sampled, person-centred frame sequence against the security action prompts.

    The prompts come from the zoo's action_prompts_file (ACTION_PROMPTS_FILE), else the bundled table.
    """

    processor_class = "XCLIPProcessor"
    model_class = "XCLIPModel"
    loaded_attributes = HuggingFaceFamily.loaded_attributes + ("text_embeds",)  # prompt embeddings, once per load

    def __init__(self, path: str | Path, device: str, zoo: ZooSettings | None = None) -> None:
        super().__init__(path, device, zoo)
        self.actions = load_actions(self.zoo.action_prompts_file)

    @property
    def num_frames(self) -> int:
        return int(self.require_loaded().config.vision_config.num_frames)

    def _load(self) -> None:
        import torch

        super()._load()
        tokens = self.processor.tokenizer(list(self.actions), padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            self.text_embeds = self.model.get_text_features(**tokens).pooler_output

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
        model = self.require_loaded()
        batch, frames, channels, height, width = pixel_values.shape
        vision = model.vision_model(pixel_values=pixel_values.reshape(-1, channels, height, width))
        cls_features = model.visual_projection(vision.pooler_output).view(batch, frames, -1)
        video_embeds = model.mit(cls_features).pooler_output
        img_features = model.prompts_visual_layernorm(vision.last_hidden_state[:, 1:, :])
        img_features = img_features @ model.prompts_visual_projection
        img_features = img_features.view(batch, frames, -1, video_embeds.shape[-1]).mean(dim=1)
        text_embeds = self.text_embeds.unsqueeze(0).expand(batch, -1, -1)
        text_embeds = text_embeds + model.prompts_generator(text_embeds, img_features)
        video_embeds = video_embeds / video_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        return model.logit_scale.exp() * (text_embeds @ video_embeds.unsqueeze(-1)).squeeze(-1)

    def infer(self, inputs: ModelInput) -> dict:
        import torch

        self.require_loaded()
        clip, distinct = self.clip_frames(inputs)
        pixel_values = self.processor(videos=[clip], return_tensors="pt")["pixel_values"]
        if pixel_values.ndim == 4:  # an image (not video) processor: frames came back as a batch of images
            pixel_values = pixel_values.unsqueeze(0)
        with torch.inference_mode():
            probabilities = self.video_logits(self.to_model(pixel_values))[0].float().softmax(dim=-1).cpu().tolist()
        return action_report(self.actions, probabilities, distinct)


# Objects Florence-2 may name that mean someone may be forcing a way in (whole words of its labels).
FORCED_ENTRY_WORDS = frozenset({"crowbar", "prybar", "pry", "bolt", "cutter", "lockpick", "sledgehammer", "hammer"})
NO_FRAMES = "the event has no frames (send frames, or the seed's frames_buffer)"


def evidence_for_action(enrichment: dict[str, Any]) -> list[str]:
    """What in the first models' sections asks for activity recognition, in words (empty: nothing does)."""
    reasons = []
    pose = enrichment.get("pose")
    for person in (pose.get("poses") or [])[:1] if isinstance(pose, dict) else []:
        if isinstance(person, dict) and person.get("suspicious"):
            reasons.append(f"a {person.get('posture', 'suspicious')} posture")
    threat = enrichment.get("threat")
    if isinstance(threat, dict) and threat.get("threats_detected"):
        highest = threat.get("highest_threat")
        kind = highest.get("type") if isinstance(highest, dict) else None
        reasons.append(f"a detected weapon ({readable_label(kind)})" if readable_label(kind) else "a detected weapon")
    florence = (enrichment.get("scene") or {}).get("florence") if isinstance(enrichment.get("scene"), dict) else None
    objects = florence.get("security_objects") if isinstance(florence, dict) else None
    labels = objects.get("labels") if isinstance(objects, dict) else None
    for label in labels if isinstance(labels, list) else []:
        readable = readable_label(label)
        if readable and FORCED_ENTRY_WORDS & set(words_of(readable)):
            reasons.append(f"a forced-entry tool in view ({readable})")
            break
    return reasons


def asked_by_evidence(enrichment: dict[str, Any], event: Any) -> Ask | None:
    """The registry's follow rule: activity recognition when a suspicious posture, a weapon or a forced-entry
    tool was seen (the backend's suspicion score asks for it in the first round already); noted, not run,
    when the event carried no frames."""
    reasons = evidence_for_action(enrichment)
    if not reasons:
        return None
    reason = " and ".join(reasons)
    if not event_field(event, "frame_count", 0):
        return Ask(reason, missing=NO_FRAMES)
    return Ask(reason)
