"""Faces on person events: MTCNN finds them in the head region, an eye-aligned crop is scored and embedded by FaceNet.

One family, two networks: MTCNN (facenet-pytorch's P/R/O-nets, 2 MB, real weights shipped in its wheel) finds
faces and their five landmarks; InceptionResnetV1 (FaceNet, VGGFace2-trained when real, 512-d) embeds the best
face's aligned crop. They are one model because the embedder's input is the detector's output: as two chord tasks
the embedder would need a second stage or its own detector, and MTCNN is too small to be worth a cache entry.

Model directory (MODELS_DIR/face): the embedder's state dict as the one .pt/.pth file at the top level (the real
one is facenet-pytorch's `20180402-114759-vggface2.pt`), and `mtcnn/{pnet,rnet,onet}.pt`; without that folder the
weights shipped inside the facenet_pytorch package are read. Every embedding carries `embedding_model`: the
embedder file's name and the first 12 hex digits of its SHA-256, so vectors of different embedders never meet.

Face quality, in [0, 1], is the geometric mean of three parts (any one at 0 makes it 0):
  size      = clamp((shorter box side - 20 px) / (80 px - 20 px))             20 px: MTCNN's floor; 80 px: plenty
  sharpness = v / (v + 100), v = variance of the 4-neighbour Laplacian over the middle of the aligned grey crop
  frontal   = clamp(1 - |nose offset along the eye line from the eyes' midpoint| / eye distance)
              1 facing the camera, 0.5 with the nose in line with an eye (three-quarter view), 0 in profile
Roll is removed by the alignment and not scored; pitch is not scored (MTCNN's landmarks say little about it).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from workers.finishing import Finishing
from workers.models.base import ModelFamily, ModelInput, clamp_box, find_weights_file

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
Point = tuple[float, float]

EMBEDDING_DIM = 512
EMBEDDING_DIGITS = 4
SCORE_DIGITS = 4
PIXEL_DIGITS = 1
EMBEDDER_SUFFIXES = (".pt", ".pth")
MTCNN_DIR = "mtcnn"
MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
HEAD_PREFIXES = ("logits.",)  # the VGGFace2 identity classifier in the real checkpoint; embeddings never use it
HASH_CHUNK = 1 << 20
MODEL_ID_HEX = 12

# Quality scale (see the module docstring).
MIN_FACE_PX = 20.0
GOOD_FACE_PX = 80.0
SHARPNESS_HALF = 100.0  # Laplacian variance at which sharpness is 0.5
QUALITY_PARTS = ("size", "sharpness", "frontal")
MAX_DETECT_SIDE = 480  # pixels: a larger search region is scaled down before MTCNN


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where the eyes land in the square aligned crop: their midpoint at (0.5, eye_line) and this far apart."""

    size: int = 160  # FaceNet's input side
    eye_distance: float = 0.36  # fraction of the side
    eye_line: float = 0.38  # fraction of the side, from the top


ALIGNMENT = AlignmentTemplate()


@dataclass(frozen=True)
class DetectorSettings:
    """MTCNN's knobs: smallest face searched, per-stage thresholds, pyramid factor; faces below min_score dropped."""

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    min_score: float = 0.9


@dataclass(frozen=True)
class DetectedFace:
    """One face in frame pixels: its box, MTCNN's score and five landmarks (eye, eye, nose, mouth, mouth; as seen)."""

    box: Box
    score: float
    landmarks: tuple[Point, Point, Point, Point, Point]

    def placed(self, scale: float, dx: float, dy: float) -> DetectedFace:
        """The face in another image's pixels: coordinates divided by scale, then shifted by (dx, dy)."""
        x1, y1, x2, y2 = self.box
        points = tuple((x / scale + dx, y / scale + dy) for x, y in self.landmarks)
        box = (x1 / scale + dx, y1 / scale + dy, x2 / scale + dx, y2 / scale + dy)
        return DetectedFace(box, self.score, points)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FaceQuality:
    """The quality figure and its parts, each in [0, 1]."""

    size: float
    sharpness: float
    frontal: float

    @property
    def overall(self) -> float:
        return (self.size * self.sharpness * self.frontal) ** (1.0 / 3.0)


# -- pure geometry and scoring ------------------------------------------------------------------------------
def head_region(bbox: Box, frame_size: tuple[int, int], pad: float = 0.2, min_height_fraction: float = 0.3) -> Box:
    """Where a person box's face can be: the top of the box, as tall as the box is wide (at least 30% of its height,
    at most all of it), padded by `pad` of the box's width left and right and of the region's height above and below,
    clamped to the frame.

    A standing person (box about 3.5 widths tall) gives its top ~30%, a head-and-shoulders close-up its whole box.
    """
    x1, y1, x2, y2 = bbox
    width, height = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    region_height = min(height, max(width, min_height_fraction * height))
    margin_x, margin_y = pad * width, pad * region_height
    frame_w, frame_h = frame_size
    return (max(x1 - margin_x, 0.0), max(y1 - margin_y, 0.0),
            min(x2 + margin_x, float(frame_w)), min(y1 + region_height + margin_y, float(frame_h)))


def union_box(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def eye_frame(landmarks: Sequence[Point]) -> tuple[np.ndarray, np.ndarray, float]:
    """(the eyes' midpoint, the unit vector from the first eye to the second, the eye distance)."""
    left, right = np.asarray(landmarks[0], dtype=np.float64), np.asarray(landmarks[1], dtype=np.float64)
    along = right - left
    distance = float(np.hypot(*along))
    unit = along / distance if distance > 0 else np.array([1.0, 0.0])
    return (left + right) / 2.0, unit, distance


def alignment_coefficients(landmarks: Sequence[Point], template: AlignmentTemplate = ALIGNMENT) -> tuple[float, ...]:
    """PIL's AFFINE coefficients (output pixel -> frame pixel) of the similarity that puts the eyes on the template."""
    middle, unit, distance = eye_frame(landmarks)
    side = float(template.size)
    per_output_pixel = max(distance, 1e-6) / (template.eye_distance * side)  # frame pixels per aligned pixel
    cos, sin = unit[0] * per_output_pixel, unit[1] * per_output_pixel
    out_x, out_y = side / 2.0, template.eye_line * side
    return (cos, -sin, middle[0] - cos * out_x + sin * out_y,
            sin, cos, middle[1] - sin * out_x - cos * out_y)


def align_face(frame: Image.Image, landmarks: Sequence[Point], template: AlignmentTemplate = ALIGNMENT) -> Image.Image:
    """The square face crop with the eyes level and in the template's place (black where the frame ends)."""
    return frame.convert("RGB").transform(
        (template.size, template.size), Image.Transform.AFFINE, alignment_coefficients(landmarks, template),
        resample=Image.Resampling.BILINEAR,
    )


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a 2-D image (blur makes it small)."""
    g = np.asarray(grey, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(laplacian.var())


def sharpness_of(aligned: Image.Image) -> float:
    """Laplacian variance over the middle half of the aligned crop (the face, not the background or black fill)."""
    grey = np.asarray(aligned.convert("L"), dtype=np.float32)
    h, w = grey.shape
    return laplacian_variance(grey[h // 4: h - h // 4, w // 4: w - w // 4])


def frontal_score(landmarks: Sequence[Point]) -> float:
    """1 when the nose sits midway between the eyes (along the eye line), 0.5 in line with an eye, 0 one eye
    distance out (profile)."""
    middle, unit, distance = eye_frame(landmarks)
    if distance <= 0:
        return 0.0
    offset = abs(float(np.dot(np.asarray(landmarks[2], dtype=np.float64) - middle, unit)))
    return float(np.clip(1.0 - offset / distance, 0.0, 1.0))


def face_quality(box: Box, landmarks: Sequence[Point], laplacian_var: float) -> FaceQuality:
    """The quality parts of one face (see the module docstring for the scale)."""
    side = min(box[2] - box[0], box[3] - box[1])
    size = float(np.clip((side - MIN_FACE_PX) / (GOOD_FACE_PX - MIN_FACE_PX), 0.0, 1.0))
    variance = max(float(laplacian_var), 0.0)
    sharpness = variance / (variance + SHARPNESS_HALF)
    return FaceQuality(size=size, sharpness=sharpness, frontal=frontal_score(landmarks))


def face_entry(face: DetectedFace, quality: FaceQuality) -> dict[str, Any]:
    """One face as the result lists it (JSON-ready, rounded)."""
    return {
        "box": [round(float(v), PIXEL_DIGITS) for v in face.box],
        "score": round(float(face.score), SCORE_DIGITS),
        "landmarks": [[round(float(x), PIXEL_DIGITS), round(float(y), PIXEL_DIGITS)] for x, y in face.landmarks],
        "quality": round(quality.overall, SCORE_DIGITS),
        "quality_parts": {part: round(getattr(quality, part), SCORE_DIGITS) for part in QUALITY_PARTS},
    }


# -- weights ------------------------------------------------------------------------------------------------
def embedder_file(path: str | Path) -> Path:
    """The embedder's state dict: path itself, or the one .pt/.pth file at the top of the model directory."""
    return find_weights_file(path, EMBEDDER_SUFFIXES, "face embedder weights file")


def mtcnn_dir(path: str | Path) -> Path:
    """The folder holding pnet.pt, rnet.pt and onet.pt: the model directory's mtcnn/, else the package's own."""
    path = Path(path)
    own = (path if path.is_dir() else path.parent) / MTCNN_DIR
    if all((own / name).is_file() for name in MTCNN_FILES):
        return own
    return shipped_mtcnn_dir()


def shipped_mtcnn_dir() -> Path:
    """The real MTCNN weights inside the installed facenet_pytorch package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    return Path(spec.origin).parent / "data"


def embedder_model_id(path: str | Path) -> str:
    """'<weights file name>:<first 12 hex of its SHA-256>': what every stored face vector is tagged with."""
    file = embedder_file(path)
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return f"{file.name}:{digest.hexdigest()[:MODEL_ID_HEX]}"


def embedder_state(checkpoint: Any, own_keys: set[str]) -> dict[str, Any]:
    """The checkpoint's tensors for the embedder: unwrapped, classifier head dropped, every other tensor present."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict):
        raise TypeError(f"face embedder checkpoint holds {type(state).__name__}, not a state dict")
    state = {key: value for key, value in ((k.removeprefix("module."), v) for k, v in state.items())
             if not key.startswith(HEAD_PREFIXES)}
    missing = sorted(own_keys - state.keys())
    unexpected = sorted(state.keys() - own_keys)
    if missing or unexpected:
        raise ValueError(f"not InceptionResnetV1 weights: {len(missing)} tensors missing {missing[:3]}, "
                         f"{len(unexpected)} unexpected {unexpected[:3]}")
    return state


def build_embedder() -> Any:
    """A fresh InceptionResnetV1 for 512-d embeddings (random weights, nothing downloaded)."""
    from facenet_pytorch import InceptionResnetV1

    return InceptionResnetV1(pretrained=None, classify=False)


def build_mtcnn_nets(device: str) -> tuple[Any, Any, Any]:
    """MTCNN's three networks with no weights read yet."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    return tuple(net(pretrained=False).to(device).eval() for net in (PNet, RNet, ONet))  # type: ignore[return-value]


# -- the networks -------------------------------------------------------------------------------------------
class FaceDetector:
    """MTCNN over PIL images: faces with scores and landmarks, in the image's pixels, best score first."""

    def __init__(self, nets: tuple[Any, Any, Any], device: str, settings: DetectorSettings = DetectorSettings()):
        self.pnet, self.rnet, self.onet = nets
        self.device = device
        self.settings = settings

    @classmethod
    def load(cls, folder: str | Path, device: str, settings: DetectorSettings = DetectorSettings()) -> FaceDetector:
        """The three nets from pnet.pt, rnet.pt and onet.pt in folder."""
        import torch

        nets = build_mtcnn_nets(device)
        for net, name in zip(nets, MTCNN_FILES):
            net.load_state_dict(torch.load(Path(folder) / name, map_location=device, weights_only=True))
        return cls(nets, device, settings)

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        """Every face MTCNN finds at or above min_score."""
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        rgb = image.convert("RGB")
        if min(rgb.size) < self.settings.min_face_size:
            return []
        with torch.inference_mode():
            boxes, points = detect_face(rgb, self.settings.min_face_size, self.pnet, self.rnet, self.onet,
                                        list(self.settings.thresholds), self.settings.factor, self.device)
        found = [
            DetectedFace(tuple(float(v) for v in box[:4]), float(box[4]),  # type: ignore[arg-type]
                         tuple((float(x), float(y)) for x, y in landmarks))  # type: ignore[arg-type]
            for box, landmarks in zip(boxes[0], points[0])
            if float(box[4]) >= self.settings.min_score
        ]
        return sorted(found, key=lambda face: face.score, reverse=True)


def standardise(faces: list[Image.Image]) -> Any:
    """Aligned RGB crops -> Nx3xSxS tensor scaled as FaceNet was trained ((x - 127.5) / 128)."""
    import torch

    pixels = np.stack([np.asarray(face.convert("RGB"), dtype=np.float32) for face in faces])
    return (torch.from_numpy(pixels).permute(0, 3, 1, 2) - 127.5) / 128.0


# -- the family ---------------------------------------------------------------------------------------------
class FaceModel(ModelFamily):
    """Face detection in the head region, quality, alignment, and a tagged 512-d embedding of the best face."""

    loaded_attributes: ClassVar[tuple[str, ...]] = ("model", "detector", "model_id")
    detector_settings: ClassVar[DetectorSettings] = DetectorSettings()
    template: ClassVar[AlignmentTemplate] = ALIGNMENT
    detector: FaceDetector | None
    model_id: str | None

    @classmethod
    def weight_files(cls, path: Path) -> list[Path]:
        try:
            embedder = [embedder_file(path)]
        except FileNotFoundError:
            return []  # no model without its embedder: the shipped MTCNN alone is not this model's weights
        try:
            folder = mtcnn_dir(path)
        except FileNotFoundError:
            return embedder
        return embedder + [folder / name for name in MTCNN_FILES if (folder / name).is_file()]

    @classmethod
    def import_libraries(cls, path: Path) -> None:
        import facenet_pytorch  # noqa: F401

    def _load(self) -> None:
        import torch

        from workers.models.base import skip_random_init

        file = embedder_file(self.path)
        with skip_random_init(), torch.device(self.device):
            model = build_embedder()
        checkpoint = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        model.load_state_dict(embedder_state(checkpoint, set(model.state_dict())), strict=True)
        self.model = model.float().eval()
        self.detector = FaceDetector.load(mtcnn_dir(self.path), self.device, self.detector_settings)
        self.model_id = embedder_model_id(file)

    # -- the steps, each usable alone ---------------------------------------------------------------------
    def detect(self, frame: Image.Image, region: Box | None = None) -> list[DetectedFace]:
        """Faces in region of the frame (the whole frame when None), in frame pixels, best score first.

        A region whose longer side passes MAX_DETECT_SIDE is scaled down first: MTCNN's cost follows the pixels,
        and a face filling a close-up's head region stays far above its 20 px floor.
        """
        if self.detector is None:
            raise RuntimeError("FaceModel is not loaded; call load() first")
        left, top, right, bottom = clamp_box(region or (0, 0, *frame.size), *frame.size)
        crop = frame.crop((left, top, right, bottom))
        scale = min(1.0, MAX_DETECT_SIDE / max(crop.size))
        if scale < 1.0:
            size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
            crop = crop.resize(size, Image.Resampling.BILINEAR)
        return [face.placed(scale, left, top) for face in self.detector.detect(crop)]

    def embed(self, aligned: list[Image.Image]) -> np.ndarray:
        """Unit-length float32 embeddings (N x 512) of aligned face crops, in one forward pass."""
        import torch

        model = self.require_loaded()
        with torch.inference_mode():
            features = model(standardise(aligned).to(self.device)).float()
        return (features / features.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()

    def analyse(self, frame: Image.Image, region: Box | None = None) -> dict[str, Any]:
        """Faces in the region, best quality first, and the best one's embedding tagged with the embedder's id."""
        scored = []
        for face in self.detect(frame, region):
            aligned = align_face(frame, face.landmarks, self.template)
            scored.append((face_quality(face.box, face.landmarks, sharpness_of(aligned)), face, aligned))
        scored.sort(key=lambda item: (item[0].overall * item[1].score, item[1].score), reverse=True)
        faces = [face_entry(face, quality) for quality, face, _ in scored]
        result: dict[str, Any] = {
            "face_visible": bool(faces),
            "face_count": len(faces),
            "faces": faces,
            "best": faces[0] if faces else None,
            "embedding": None,
            "embedding_model": None,
            "dim": EMBEDDING_DIM,
        }
        if scored:
            vector = self.embed([scored[0][2]])[0]
            result["embedding"] = [round(float(x), EMBEDDING_DIGITS) for x in vector]
            result["embedding_model"] = self.model_id
        return result

    def infer(self, inputs: ModelInput) -> dict:
        """The face record of one person detection: searched in the padded head region (and a given face box)."""
        region = head_region(inputs.bbox, inputs.frame.size)
        if inputs.face_bbox is not None:
            region = union_box(region, inputs.face_bbox)
        result = self.analyse(inputs.frame, region)
        return {**result, "region": [round(float(v), PIXEL_DIGITS) for v in region], "source": "mtcnn_head_region"}


def eye_angle_degrees(landmarks: Sequence[Point]) -> float:
    """The eye line's angle from horizontal in degrees (positive: the second eye lower), for tests and logs."""
    _, unit, _ = eye_frame(landmarks)
    return math.degrees(math.atan2(unit[1], unit[0]))


# -- finishing: who is it -----------------------------------------------------------------------------------
def recognise_household(enrichment: dict[str, Any], finishing: Finishing) -> None:
    """The household section of a person event: whether a face was seen and by whom (face detection, or the
    backend's hint when no face model ran), the face matched against the household's enrolled faces, the re-ID
    identity's name. The face vector leaves the enrichment here: it is never stored, prompted or announced."""
    event = finishing.event
    if event is None or event.detection_type != "person":
        return
    face = enrichment.get("face")
    household: dict[str, Any] = enrichment.setdefault("household", {})
    if isinstance(face, dict):
        household["face_visible"] = bool(face.get("face_visible"))
        household["face_visible_source"] = "face detection"
        embedding, model_id = face.pop("embedding", None), face.get("embedding_model")
    else:
        household["face_visible"] = bool(event.face_visible)
        household["face_visible_source"] = "backend hint"
        embedding, model_id = None, None
    store = finishing.household
    if store is None:
        return
    try:
        if embedding and model_id:
            household["face_match"] = store.match_face(embedding, model_id, finishing.local_time)
            if household["face_match"]["outcome"] != "match" and finishing.face_retention_seconds > 0:
                store.remember_face(event.event_id, embedding, model_id, finishing.face_retention_seconds)
        reid_match = (enrichment.get("reid") or {}).get("reid_match") or {}
        identity = reid_match.get("identity")
        member = store.identity_member(identity) if identity else None
    except Exception as exc:
        log.warning("household unavailable: %s", type(exc).__name__)
        finishing.unavailable["household"] = f"error: {type(exc).__name__}"
        return
    if member is not None:
        reid_match["name"] = member.name
        if isinstance(enrichment.get("reid_match"), dict):
            enrichment["reid_match"]["name"] = member.name
        household["identity"] = {"identity": identity, "member": member.public()}
