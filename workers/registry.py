"""The model zoo as data: each model's family, where its weights come from, its memory estimate, priority and trigger."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from model_cache.spec import Priority

if TYPE_CHECKING:
    from workers.finishing import Finisher
    from workers.followups import FollowRule

# COCO-style detector labels folded onto the three detection types the zoo plans for.
LABEL_ALIASES: dict[str, str] = {
    **{label: "person" for label in ("person", "people", "pedestrian", "human")},
    **{
        label: "vehicle"
        for label in ("vehicle", "car", "truck", "bus", "motorcycle", "motorbike", "bicycle", "bike", "van", "train", "boat")
    },
    **{
        label: "animal"
        for label in (
            "animal", "dog", "cat", "bird", "horse", "sheep", "cow", "elephant", "bear", "zebra",
            "giraffe", "deer", "fox", "raccoon", "squirrel", "rabbit", "coyote", "skunk", "opossum",
        )
    },
}


def detection_type_of(label: str) -> str | None:
    """Map a detector label to person/vehicle/animal, or None when the zoo has nothing for it."""
    return LABEL_ALIASES.get(label.strip().lower())


# One thread at a time imports model code. A threads-pool device worker loads a model in one thread while its
# warm-up imports another family's libraries in a second: Python's per-module import locks then let one thread
# see a module the other is still initialising (torchvision's, from torchreid's side and open_clip's side:
# "ImportError: cannot import name ... from partially initialized module"). Family lookups, warm-up imports and
# model loads (which import lazily) all hold this lock; it is re-entrant, so a load may look up its class.
MODEL_CODE_LOCK = threading.RLock()

def resolve(reference: str) -> Any:
    """The object a "module:name" reference names; a bare module lives in workers.models."""
    module_name, attribute = reference.split(":")
    module = module_name if "." in module_name else f"workers.models.{module_name}"
    with MODEL_CODE_LOCK:
        return getattr(importlib.import_module(module), attribute)


class Condition(str, Enum):
    """Extra conditions a trigger can carry beyond the detection type."""

    ALWAYS = "always"
    FACE_VISIBLE = "face_visible"
    SUSPICIOUS_WITH_FRAMES = "suspicious_with_frames"


SUSPICIOUS_THRESHOLD = 50.0


@dataclass(frozen=True)
class HubRepo:
    """Weights that are a Hugging Face Hub repository, fetched as a snapshot at `revision` (a commit hash; None: the
    commit the first download found, kept in MODELS_DIR's lock file by scripts/download_models.py)."""

    repo_id: str
    revision: str | None = None

    @property
    def url(self) -> str:
        return f"hf://{self.repo_id}"


@dataclass(frozen=True)
class DirectFile:
    """One weights file outside the Hub, saved as `filename` in the model's directory; `sha256` pins its bytes (None:
    the digest the first download found, kept in MODELS_DIR's lock file by scripts/download_models.py)."""

    url: str
    filename: str
    via: str = "http"  # "http": resumable ranged GET; "gdrive": Google Drive through gdown
    sha256: str | None = None


WeightsSource = HubRepo | DirectFile


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model table."""

    name: str
    family: str  # "module:Class" under workers.models
    source: WeightsSource  # where scripts/download_models.py fetches the real weights from
    estimated_mb: int
    priority: Priority
    detection_types: frozenset[str]
    section: str  # key of the result's enrichment dict this model fills
    condition: Condition = Condition.ALWAYS
    scene: bool = False  # scene models run per event as configured, beside the on-demand plan
    estimate_source: str = "h100"  # where estimated_mb comes from: a key of ESTIMATE_SOURCES
    finish: str | None = None  # "module:function" under workers.models that finishes its section at assembly
    follows: str | None = None  # "module:function": the rule by which the first models' evidence asks for it
    # Keys of its answer that depend on the frame alone: events on one frame share them (run once per frame).
    # "all": the whole answer is the frame's; a tuple: those keys are shared, the family computes the rest per event.
    frame_outputs: tuple[str, ...] | Literal["all"] = ()

    @property
    def shared_per_frame(self) -> bool:
        return bool(self.frame_outputs)

    @property
    def path_env(self) -> str:
        """Environment variable that overrides where this model's weights live."""
        return f"{self.name.upper()}_MODEL_PATH"

    @property
    def family_env(self) -> str:
        """Environment variable that swaps in another implementation ("module:Class"), e.g. for fault injection."""
        return f"{self.name.upper()}_MODEL_FAMILY"

    @property
    def needs_frames(self) -> bool:
        """Whether the model reads the event's frame buffer (only then do workers fetch and decode it)."""
        return self.condition is Condition.SUSPICIOUS_WITH_FRAMES

    def load_class(self, families: Mapping[str, str] | None = None) -> type:
        """The wrapper class: the override in `families` (ZooSettings.model_families) when given, else the table's.

        A dotted module ("tests.fault_models:RaisingModel") is taken as is; a bare one lives in workers.models.
        """
        return resolve((families or {}).get(self.name) or self.family)

    def finisher(self) -> Finisher | None:
        """The function that finishes this model's section of the enrichment at assembly, if it has one."""
        return resolve(self.finish) if self.finish else None

    def follow_rule(self) -> FollowRule | None:
        """The rule by which other models' evidence asks for this one in a second round, if it has one."""
        return resolve(self.follows) if self.follows else None

    def weights_path(self, models_dir: Path, overrides: Mapping[str, Path] | None = None) -> Path:
        """Where the weights are read from: the override (ZooSettings.model_paths) when given, else MODELS_DIR/<name>."""
        override = (overrides or {}).get(self.name)
        return Path(override) if override else Path(models_dir) / self.name

    def applies_to(self, event: Any) -> bool:
        if event.detection_type not in self.detection_types:
            return False
        if self.condition is Condition.FACE_VISIBLE:
            return bool(event.face_visible)
        if self.condition is Condition.SUSPICIOUS_WITH_FRAMES:
            return event.suspicious_score > SUSPICIOUS_THRESHOLD and bool(event.frames)
        return True


PERSON = frozenset({"person"})
VEHICLE = frozenset({"vehicle"})
ANIMAL = frozenset({"animal"})
ANY = PERSON | VEHICLE | ANIMAL

# Where each estimated_mb comes from. The cache charges a model this only until a load measures it, and a device
# worker charges the size of the weights on disk instead when they are present (DeviceRuntime.estimated_mb).
# The seed's guesses (threat 400, pose 300, clothing 800, age_gender 500, vehicle 1500, pet 200, reid 100,
# depth 150, action 1500, florence 1200, clip 800) were up to 30x off.
ESTIMATE_SOURCES: dict[str, str] = {
    "h100": "measured once loaded on one H100 at full size (real architectures, random weights, this project's "
            "loaders and cache: the CUDA allocator's gain over the load), 2026-11-27",
    "weights-fp16": "the full-size weights' tensors at float16, as the family now runs on a GPU "
                    "(workers.model_files, exact to 0.1 MB where the H100 measured the same dtype); the H100 "
                    "measured it in float32 on 2026-11-27: threat 12, pose 13, clothing 573, age_gender 329, "
                    "vehicle 327, pet 43, action 650 MB",
    "weights-fp32": "the full-size weights' tensors at float32, as the family runs them (workers.model_files): "
                    "face = FaceNet InceptionResnetV1 23.5 M parameters (89.7 MB) + MTCNN 1.9 MB",
}
FP16 = "weights-fp16"

MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("threat", "threat:ThreatModel", HubRepo("Subh775/Threat-Detection-YOLOv8n"), 6, Priority.CRITICAL,
               PERSON, "threat", estimate_source=FP16),
    # the release ultralytics 8.4 itself resolves "yolov8n-pose.pt" to
    ModelEntry("pose", "pose:PoseModel",
               DirectFile("https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8n-pose.pt",
                          "yolov8n-pose.pt"),
               7, Priority.HIGH, PERSON, "pose", estimate_source=FP16),
    ModelEntry("clothing", "clothing:ClothingModel", HubRepo("Marqo/marqo-fashionCLIP"), 286, Priority.HIGH, PERSON,
               "clothing", estimate_source=FP16),
    ModelEntry("age_gender", "age_gender:AgeGenderModel", HubRepo("abhilash88/age-gender-prediction"), 165,
               Priority.HIGH, PERSON, "demographics", condition=Condition.FACE_VISIBLE, estimate_source=FP16,
               follows="age_gender:asked_by_face"),
    ModelEntry("vehicle", "vehicle:VehicleModel", HubRepo("lxyuan/vit-base-patch16-224-vehicle-segment-classification"),
               164, Priority.MEDIUM, VEHICLE, "vehicle", estimate_source=FP16, finish="vehicle:name_vehicle_type"),
    ModelEntry("pet", "pet:PetModel", HubRepo("hilmansw/resnet18-catdog-classifier"), 22, Priority.MEDIUM, ANIMAL, "pet",
               estimate_source=FP16, finish="pet:name_pet_type"),
    # torchreid's ImageNet-pretrained OSNet x0.25 (its pretrained_urls entry)
    ModelEntry("reid", "reid:ReidModel",
               DirectFile("https://drive.google.com/uc?id=1rb8UN5ZzPKRc_xvtHlyDh-cSz88YX9hs",
                          "osnet_x0_25_imagenet.pth", via="gdrive"),
               1, Priority.MEDIUM, PERSON, "reid", finish="reid:match_identity"),
    # facenet-pytorch's VGGFace2 embedder (the file its InceptionResnetV1(pretrained="vggface2") downloads); MTCNN's
    # weights ship in the facenet-pytorch wheel. Runs on every person event: face_visible comes from its evidence.
    ModelEntry("face", "face:FaceModel",
               DirectFile("https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
                          "20180402-114759-vggface2.pt"),
               92, Priority.HIGH, PERSON, "face", estimate_source="weights-fp32", finish="face:recognise_household"),
    ModelEntry("depth", "depth:DepthModel",
               HubRepo("depth-anything/Depth-Anything-V2-Small-hf", "5426e4f0f36572d16453bbda7a8389317b1bef99"), 48,
               Priority.LOW, ANY, "depth", finish="depth:add_distance"),
    ModelEntry("action", "action:ActionModel", HubRepo("microsoft/xclip-base-patch16-zero-shot"), 325, Priority.LOW,
               PERSON, "action", condition=Condition.SUSPICIOUS_WITH_FRAMES, estimate_source=FP16,
               follows="action:asked_by_evidence"),
    ModelEntry("florence", "florence:FlorenceModel",
               HubRepo("florence-community/Florence-2-large", "4271c66b88cdbc05735372ec13b2360108de5317"), 1469,
               Priority.RESIDENT, PERSON | VEHICLE, "scene", scene=True, finish="florence:read_plates",
               frame_outputs="all"),
    ModelEntry("clip", "clip:ClipModel", HubRepo("openai/clip-vit-large-patch14", "32bd64288804d66eefd0ccbe215aa642df71cc41"),
               581, Priority.RESIDENT, PERSON | VEHICLE,
               "scene", scene=True, finish="clip:finish_clip",
               frame_outputs=("frame_embedding", "dim", "tags", "weather")),
)

REGISTRY: dict[str, ModelEntry] = {entry.name: entry for entry in MODELS}


def plan_models(event: Any, scene_models: Iterable[str] = ()) -> list[str]:
    """Models to run for an event, most important first.

    The on-demand plan follows the trigger table; scene models (florence, clip) join it only
    when named in scene_models and the event's type is one they serve.
    """
    wanted = set(scene_models)
    unknown = wanted - {e.name for e in MODELS if e.scene}
    if unknown:
        raise ValueError(f"not scene models: {sorted(unknown)}")
    chosen = [e for e in MODELS if e.applies_to(event) and (not e.scene or e.name in wanted)]
    return [e.name for e in sorted(chosen, key=lambda e: -int(e.priority))]


def estimated_bytes() -> dict[str, int]:
    """Every model's registry estimate in bytes (what placement charges a worker before it reports)."""
    return {entry.name: entry.estimated_mb * 1024 * 1024 for entry in MODELS}


def followup_candidates(event: Any, planned: Iterable[str]) -> list[str]:
    """Models the first round's evidence may ask for: those with a follow rule, for this detection type, not
    already planned; most important first."""
    chosen = set(planned)
    candidates = [e for e in MODELS if e.follows and event.detection_type in e.detection_types and e.name not in chosen]
    return [e.name for e in sorted(candidates, key=lambda e: -int(e.priority))]
