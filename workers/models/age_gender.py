"""Age and gender from the face (or, without a face box, the top quarter of the person box).

Two checkpoint layouts are read, told apart by the tensors the checkpoint holds (never by guessing):

- dual head (the default, abhilash88/age-gender-prediction): a ViT with an age regressor and a
  female-probability head (see age_gender_vit.py); age comes out in years, gender as male/female.
- image classifier: any AutoModelForImageClassification; labels come from the model's own
  config.id2label and age/gender are parsed out of them when they carry them ("25-32_male",
  "Male 25-32", "female", "60+"), else left null.

Either way the record carries the seed's `age_group` beside our `age` (see age_group_of).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prompt_formatting import describe_age
from prompt_formatting.vocabulary import AGE_GROUP_WORDS as PROMPT_AGE_GROUPS
from workers.followups import Ask
from workers.models.base import ModelInput
from workers.models.hf_family import ImageClassifierFamily

SCORE_DIGITS = 4
TOP_K = 5
MAX_AGE_YEARS = 100

# Words that name a gender in classifier labels (matched as whole words: "female" is not "male").
GENDER_WORDS: dict[str, str] = {
    **dict.fromkeys(("male", "man", "men", "boy", "boys", "masculine", "guy"), "male"),
    **dict.fromkeys(("female", "woman", "women", "girl", "girls", "feminine", "lady"), "female"),
}

# Words that name an age group, longest phrases first, with the group they stand for.
AGE_GROUP_WORDS: dict[str, str] = {
    "young adult": "young adult",
    "middle aged": "middle-aged",
    "baby": "baby",
    "infant": "baby",
    "toddler": "toddler",
    "child": "child",
    "children": "child",
    "kid": "child",
    "teenager": "teenager",
    "teen": "teenager",
    "adolescent": "teenager",
    "adult": "adult",
    "senior": "senior",
    "elderly": "senior",
}

# Age patterns, tried in order on the lower-cased label with "_" read as a space.
AGE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(\d{1,3})\s*(?:-|–|to)\s*(\d{1,3})\b"), "{0}-{1}"),
    (re.compile(r"\b(\d{1,3})\s*\+"), "{0}+"),
    (re.compile(r"\b(?:more than|over|above|older than)\s+(\d{1,3})\b"), "{0}+"),
    (re.compile(r"\b(\d{1,3})\s+(?:and|or)\s+(?:above|over|older)\b"), "{0}+"),
    (re.compile(r"\b(?:under|below|less than|younger than)\s+(\d{1,3})\b"), "<{0}"),
    (re.compile(r"\b(\d{1,3})s\b"), "{0}s"),
    (re.compile(r"\b(\d{1,3})\b"), "{0}"),
)

GENERIC_LABEL = re.compile(r"label\s*\d+")  # transformers' placeholder names carry nothing

# `age` forms that are rewritten as a range for `age_group`: "20s" -> "20-29", "<10" -> "0-9".
DECADE = re.compile(r"(\d{1,3})s")
UNDER = re.compile(r"<(\d{1,3})")


def parse_age_gender(label: str) -> tuple[str | None, str | None]:
    """(age, gender) named by a classifier label, each None when the label does not carry it."""
    text = re.sub(r"[_\s]+", " ", label.strip().lower())
    if GENERIC_LABEL.fullmatch(text):
        return None, None
    words = re.findall(r"[a-z]+", text)
    gender = next((GENDER_WORDS[w] for w in words if w in GENDER_WORDS), None)
    return _age(text), gender


def _age(text: str) -> str | None:
    for pattern, template in AGE_PATTERNS:
        match = pattern.search(text)
        if match:
            return template.format(*match.groups())
    phrase = " ".join(re.findall(r"[a-z]+", text))
    for words, group in AGE_GROUP_WORDS.items():
        if re.search(rf"\b{words}\b", phrase):
            return group
    return None


def age_group_of(age: str | None) -> str | None:
    """The seed's age_group for our `age`: a range or a group word that the prompt reads (describe_age).

    A single age in years is given as its decade ("34" -> "30-39": the estimate is not exact to the year);
    ranges and open ranges stay ("25-32", "60+"); "20s" -> "20-29", "<10" -> "0-9"; group words become the
    prompt's age bands ("young adult", "middle-aged"; "baby", "toddler" -> "child"). None when there is no
    age, or none the prompt could read.
    """
    if age is None:
        return None
    text = age.strip().lower()
    if text.isdigit():
        decade = int(text) // 10 * 10
        text = f"{decade}-{decade + 9}"
    elif DECADE.fullmatch(text):
        decade = int(DECADE.fullmatch(text)[1])
        text = f"{decade}-{decade + 9}"
    elif UNDER.fullmatch(text):
        text = f"0-{max(int(UNDER.fullmatch(text)[1]) - 1, 0)}"
    else:
        text = PROMPT_AGE_GROUPS.get(text, text)
    return text if describe_age(text) is not None else None


def dual_head_result(age_years: float, female_probability: float) -> dict[str, Any]:
    """The demographics record for the dual-head model's two outputs."""
    age = max(0, min(MAX_AGE_YEARS, round(age_years)))
    female = min(max(float(female_probability), 0.0), 1.0)
    ranked = sorted(
        [{"label": "female", "score": round(female, SCORE_DIGITS)},
         {"label": "male", "score": round(1.0 - female, SCORE_DIGITS)}],
        key=lambda entry: entry["score"], reverse=True,
    )
    gender = ranked[0]["label"]
    return {
        "label": f"{gender}, {age} years",
        "confidence": ranked[0]["score"],
        "age_group": age_group_of(str(age)),
        "age": str(age),
        "gender": gender,
        "top_k": ranked,
    }


def classifier_result(classified: dict[str, Any]) -> dict[str, Any]:
    """The demographics record for an image classifier's ranked labels."""
    age, gender = parse_age_gender(classified["label"])
    return {**classified, "age_group": age_group_of(age), "age": age, "gender": gender}


def checkpoint_keys(directory: Path) -> set[str]:
    """Names of the tensors a Hugging Face model directory holds, read without loading them."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            return set(json.loads(index.read_text())["weight_map"])
    if (directory / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(directory / "model.safetensors"), framework="pt") as weights:
            return set(weights.keys())
    if (directory / "pytorch_model.bin").is_file():
        import torch

        return set(torch.load(directory / "pytorch_model.bin", map_location="meta", weights_only=True))
    raise FileNotFoundError(f"no model weights (model.safetensors or pytorch_model.bin) in {directory}")


def is_dual_head(keys: set[str]) -> bool:
    return any(k.startswith("age_head.") for k in keys) and any(k.startswith("gender_head.") for k in keys)


def usable_processor(processor: Any) -> Any:
    """Turn off a centre crop that its config switched on without giving a crop size."""
    if getattr(processor, "do_center_crop", False) and not getattr(processor, "crop_size", None):
        processor.do_center_crop = False
    return processor


class AgeGenderModel(ImageClassifierFamily):
    """Age/gender from a face crop, with the layout (dual head or classifier) read from the checkpoint.

    The classifier layout is the Hugging Face kind's image classifier as is; the dual head swaps in its own model.
    """

    loaded_attributes = ImageClassifierFamily.loaded_attributes + ("layout",)
    layout: str | None  # "dual_head" or "classifier" once loaded

    def _load(self) -> None:
        self.layout = "dual_head" if is_dual_head(checkpoint_keys(self.path)) else "classifier"
        super()._load()

    def load_model(self) -> Any:
        if self.layout == "classifier":
            return super().load_model()
        from workers.models.age_gender_vit import AgeGenderViTModel

        model, info = self.pretrained(AgeGenderViTModel, dtype=self.dtype, output_loading_info=True)
        if info["missing_keys"]:
            raise ValueError(f"age/gender checkpoint lacks {sorted(info['missing_keys'])[:5]}")
        return model

    def load_processor(self) -> Any:
        processor = super().load_processor()
        return usable_processor(processor) if self.layout == "dual_head" else processor

    def predict(self, face: Any) -> dict[str, Any]:
        """Demographics for one face image (without face_source)."""
        if self.layout == "classifier":
            return classifier_result(self.classify(face, top_k=TOP_K))
        age, female = self.forward_images([face])
        return dual_head_result(float(age[0]), float(female[0]))

    def infer(self, inputs: ModelInput) -> dict:
        face_source = "face_bbox" if inputs.face_bbox is not None else "person_top_quarter"
        return {**self.predict(inputs.face_crop()), "face_source": face_source}


def asked_by_face(enrichment: dict[str, Any], event: Any) -> Ask | None:
    """The registry's follow rule: when the backend said no face (so age and gender were not planned) but face
    detection found one, estimate them from the face detection's box, not the top-quarter guess."""
    face = enrichment.get("face")
    best = face.get("best") if isinstance(face, dict) and face.get("face_visible") else None
    if not isinstance(best, dict) or not best.get("box"):
        return None
    return Ask("a face found by face detection", request={"face_bbox": [float(v) for v in best["box"]]})
