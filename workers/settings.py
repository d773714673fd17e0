"""The pool's one configuration object, read from the environment when built (names are documented in README).

`Settings` holds every knob; groups that belong to one part of the pool are nested (`zoo`, `reid`, `depth`,
`scene`, `nemotron`, `metrics`, `launch`) but keep their flat environment names (THREAT_CONFIDENCE, REID_THRESHOLD,
DEPTH_CALIBRATION, SCENE_BASELINE_SIZE, NEMOTRON_URL, METRICS_PORT_BASE, ...). Constructors take the object (or
the group they need); nothing else reads the environment, and nothing reads it at import time: `get_settings()`
builds it once per process, on first use.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prompt_formatting import DEFAULT_FAR_M, DEFAULT_NEAR_M, parse_depth_calibration
from workers.redis_urls import with_password

CommaList = Annotated[list[str], NoDecode]

MODEL_PATH_SUFFIX = "_MODEL_PATH"
MODEL_FAMILY_SUFFIX = "_MODEL_FAMILY"


def per_model_environment(suffix: str) -> dict[str, str]:
    """<NAME><suffix> variables as {name: value}: THREAT_MODEL_PATH=/w -> {"threat": "/w"}."""
    return {key[: -len(suffix)].lower(): value for key, value in os.environ.items()
            if key.upper().endswith(suffix) and len(key) > len(suffix) and value}


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", case_sensitive=False)


class ZooSettings(BaseSettings):
    """How the model families behave and where each one's weights and implementation come from."""

    model_config = _config()

    threat_confidence: float = Field(0.5, description="Weapon detections below this are dropped")
    pose_confidence: float = Field(0.25, description="Person detections of the pose model below this are ignored")
    florence_max_new_tokens: int = Field(256, ge=1, description="Generation bound per Florence-2 task")
    florence_num_beams: int | None = Field(None, ge=1, description="Beams for Florence-2 generation (checkpoint's when unset)")
    florence_dense_regions: bool = Field(False, description="Add <DENSE_REGION_CAPTION> to the scene tasks")
    clothing_prompts_file: Path | None = Field(None, description="Clothing prompt table (bundled TOML when unset)")
    action_prompts_file: Path | None = Field(None, description="Security actions for X-CLIP (bundled TOML when unset)")
    model_paths: dict[str, Path] = Field(
        default_factory=lambda: per_model_environment(MODEL_PATH_SUFFIX),
        description="<NAME>_MODEL_PATH: where one model's weights live instead of MODELS_DIR/<name>")
    model_families: dict[str, str] = Field(
        default_factory=lambda: per_model_environment(MODEL_FAMILY_SUFFIX),
        description="<NAME>_MODEL_FAMILY: another implementation (module:Class) of one model")
    own_weights: CommaList = Field(
        [], description="Models whose weights are the operator's own (a fine-tune): loaded without checking them against "
                        "the registry's pin, comma list")

    @field_validator("florence_num_beams", "clothing_prompts_file", "action_prompts_file", mode="before")
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("own_weights", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class ReidSettings(BaseSettings):
    """The re-identification gallery: REID_THRESHOLD, REID_TTL_SECONDS."""

    model_config = _config("REID_")

    threshold: float = Field(0.75, ge=-1.0, le=1.0, description="Cosine similarity for a match")
    ttl_seconds: float = Field(30 * 24 * 3600, gt=0, description="Unused identities expire after this")


class DepthSettings(BaseSettings):
    """Approximate metres from relative depth: DEPTH_CALIBRATION per camera, else DEPTH_NEAR_M..DEPTH_FAR_M."""

    model_config = _config("DEPTH_")

    calibration: Annotated[dict[str, tuple[float, float]], NoDecode] = Field(
        default_factory=dict,
        description="Per-camera nearest and farthest visible metres, camera=near_m:far_m,... (front_door=0.8:12)")
    near_m: float = Field(DEFAULT_NEAR_M, gt=0, description="Nearest visible metres of a camera not calibrated")
    far_m: float = Field(DEFAULT_FAR_M, gt=0, description="Farthest visible metres of a camera not calibrated")

    @field_validator("calibration", mode="before")
    @classmethod
    def parse_text(cls, value: object) -> object:
        return parse_depth_calibration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def near_before_far(self) -> DepthSettings:
        if self.near_m > self.far_m:
            raise ValueError(f"DEPTH_NEAR_M ({self.near_m}) must not exceed DEPTH_FAR_M ({self.far_m})")
        return self

    def range_m(self, camera_id: str | None) -> tuple[float, float]:
        """The camera's (near_m, far_m): its calibration, else the default range."""
        return self.calibration.get(camera_id or "", (self.near_m, self.far_m))


class SceneSettings(BaseSettings):
    """The per-camera scene baseline of CLIP frame embeddings in Redis (SCENE_BASELINE_*, SCENE_ANOMALY_THRESHOLD)."""

    model_config = _config("SCENE_")

    baseline_size: int = Field(64, ge=1, description="Frame embeddings kept per camera (the oldest are trimmed)")
    baseline_ttl_seconds: float = Field(
        7 * 24 * 3600, gt=0, description="A camera's baseline is forgotten after this long without a new frame")
    baseline_min_frames: int = Field(10, ge=1, description="No anomaly score until a camera's baseline holds this many")
    baseline_interval_seconds: float = Field(
        60.0, ge=0, description="At most one frame per camera joins its baseline per this many seconds (0: all)")
    anomaly_threshold: float = Field(
        0.25, ge=0.0, le=1.0, description="A scene anomaly score above this is called unusual for the camera")


class CameraPlace(BaseModel):
    """Where one camera is: its time zone, and optionally its latitude and longitude (for the sun's position)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/London)") from exc
        return value

    @model_validator(mode="after")
    def both_coordinates(self) -> CameraPlace:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self


class CameraSettings(BaseSettings):
    """Where cameras are and how their picture is watched: CAMERA_TIMEZONE, CAMERA_LATITUDE/LONGITUDE (every
    camera's default), CAMERA_PLACES (per camera, JSON), CAMERA_QUALITY_* (the tampering check)."""

    model_config = _config("CAMERA_")

    timezone: str = Field("UTC", description="IANA time zone of cameras without their own (CAMERA_PLACES)")
    latitude: float | None = Field(None, ge=-90, le=90, description="Latitude of cameras without their own; "
                                   "with longitude, day/dusk/night come from the sun's position")
    longitude: float | None = Field(None, ge=-180, le=180, description="Longitude of cameras without their own")
    places: dict[str, CameraPlace] = Field(
        default_factory=dict, description='Per camera, JSON: {"front_door": {"timezone": "Europe/London", '
                                          '"latitude": 51.5, "longitude": -0.12}}')
    quality_min_frames: int = Field(
        10, ge=1, description="Frames a camera's picture baseline needs before a sudden change is flagged")
    quality_blur_ratio: float = Field(
        0.25, gt=0, lt=1, description="Sharpness below this share of the camera's usual is flagged as blurred")
    quality_dark_ratio: float = Field(
        0.35, gt=0, lt=1, description="Brightness below this share of the camera's usual is flagged as darkened")
    quality_frozen_seconds: float = Field(
        2.0, ge=0, description="The same picture this much later or more is flagged as a frozen feed")

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        return CameraPlace.known_zone(value) or value

    def place(self, camera_id: str | None) -> CameraPlace:
        """The camera's own place, its missing parts filled from the defaults."""
        own = self.places.get(camera_id or "", CameraPlace())
        located = own.latitude is not None
        return CameraPlace(timezone=own.timezone or self.timezone,
                           latitude=own.latitude if located else self.latitude,
                           longitude=own.longitude if located else self.longitude)


class NemotronSettings(BaseSettings):
    """The optional risk call: NEMOTRON_URL (unset: off), NEMOTRON_MODEL, NEMOTRON_TIMEOUT."""

    model_config = _config("NEMOTRON_")

    url: str | None = Field(None, description="OpenAI-compatible server for the risk call")
    model: str = Field("nemotron", description="Model name sent to that server")
    timeout: float = Field(60.0, gt=0, description="Seconds before a risk call counts as failed")

    @field_validator("url", mode="before")
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def enabled(self) -> bool:
        return self.url is not None


class MetricsSettings(BaseSettings):
    """Prometheus /metrics: METRICS_PORT_BASE for the launcher, METRICS_PORT for one worker, METRICS_ADDR, METRICS_DIR."""

    model_config = _config("METRICS_")

    port_base: int | None = Field(9808, description="Router on the base port, gpu.N on base+1+N, cpu.N on base+101+N")
    port: int | None = Field(None, description="This worker's /metrics port (set by the launcher)")
    addr: str = Field("127.0.0.1", description="Address the /metrics server binds (0.0.0.0 to scrape from other hosts)")
    dir: Path = Field(Path(tempfile.gettempdir()) / "model-zoo-metrics",
                      description="prometheus_client multiprocess files: one folder per pool, a fresh one per worker in it")

    @field_validator("port_base", "port", mode="before")
    @classmethod
    def zero_or_empty_is_off(cls, value: object) -> object:
        return None if value in ("", "0", 0) else value


class LaunchSettings(BaseSettings):
    """How `python -m workers` starts workers."""

    model_config = _config()

    router_max_memory_kb: int = Field(1048576, description="The router worker's children are replaced above this size")
    beat_schedule_file: Path = Field(Path("/tmp/model-zoo-beat-schedule"), description="The sweeper's beat schedule file")
    worker_alive_file: Path | None = Field(
        None, description="A file the worker touches while it consumes (set by the launcher, which restarts a worker "
                          "whose file goes stale while Redis answers)")
    worker_stall_seconds: float = Field(
        60.0, gt=0, description="The launcher restarts a worker that has not shown it consumes for this long while "
                                "Redis answers")
    restart_backoff_max_seconds: float = Field(
        60.0, gt=0, description="The launcher restarts a worker that keeps exiting after 0.5 s, 1 s, 2 s ... up to this")
    visible_device_index: str | None = Field(None, description="CUDA index of a device worker's GPU as it sees it")
    cuda_visible_devices: str | None = Field(None, description="CUDA's own pinning; empty means no GPU for this process")


class Settings(BaseSettings):
    """Every knob the pool reads. Defaults run the whole pool on one machine."""

    model_config = _config()

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Broker, result backend and frame store")
    result_backend_url: str | None = Field(None, description="Celery result backend; defaults to REDIS_URL")
    redis_password: str | None = Field(None, description="Password added to REDIS_URL when it has none")
    models_dir: Path = Field(Path("models"), description="Where model weights live, one entry per model name")
    result_ttl_seconds: int = Field(7 * 24 * 3600, description="TTL of enrichment:<event_id>")
    frame_ttl_seconds: int = Field(900, description="TTL of frame:<event_id>:* (frames are deleted on assembly)")
    unknown_face_retention_seconds: int = Field(
        24 * 3600, ge=0, description="How long an event's face vector is kept (face-recent:<event_id>) so that "
        "`household enrol --event` can use it; 0 keeps none")
    completion_stream_maxlen: int = Field(
        100_000, ge=1, description="Entries the enrichment.completed stream keeps, about (XADD MAXLEN ~): how far back "
                                   "a backend away from its consumer group can catch up")
    scene_models: CommaList = Field(["florence", "clip"], description="Scene models run per event, comma list")
    scene_detection_types: CommaList = Field(["person"], description="Detection types scene models run for")
    scene_share_ttl_seconds: float = Field(
        30.0, ge=0, description="How long a scene model's frame outputs stay shared with later events on the same "
                                "frame (its bytes' digest); 0: not shared, every event runs its scene models")
    scene_share_wait_seconds: float = Field(
        20.0, ge=0, description="How long an event waits for another event's run of a scene model on the same frame "
                                "before running it itself (at most half of MODEL_SOFT_TIME_LIMIT, so it still has time to)")
    min_detection_confidence: float | None = Field(
        0.5, ge=0.0, le=1.0,
        description="Detections whose detector confidence is below this get a short 'below threshold' result and no "
                    "model (the seed's 0.5); empty or off: every detection runs the zoo")
    device_queues: CommaList = Field(["cpu.0"], description="Static placement when no worker has reported yet")
    device_queue: str = Field("cpu.0", description="The queue this device worker consumes (set by the launcher)")
    worker_role: str | None = Field(None, description="device or router (set by the launcher)")
    device: str | None = Field(None, description="Force a device worker's device (cpu); default: cuda when visible")
    cpu_fallback: bool = Field(
        False, description="A gpu.N worker whose GPU cannot be used runs on the CPU instead of stopping with an error")
    memory_share_mb: int | None = Field(None, description="Model memory budget of this worker; default: 90% of VRAM or 4 GiB RAM")
    idle_evict_seconds: float = Field(900.0, description="Non-resident models idle this long are unloaded")
    preload_models: CommaList = Field(
        ["residents"], description="Models a device worker loads when it starts, comma list; `residents`: the resident "
                                   "scene models of SCENE_MODELS whose weights are present, when they fit in half the "
                                   "worker's memory share; empty: none")
    heartbeat_seconds: float = Field(
        2.0, gt=0, description="How often a device worker republishes its state; placement drops a worker silent for "
                               "three heartbeats")
    model_soft_time_limit: float = Field(60.0, description="Soft time limit of one model task (seconds)")
    model_time_limit: float = Field(90.0, description="Hard time limit of one model task; the child is killed")
    task_events: bool = Field(True, description="Workers send task events (Flower needs them); 0 saves their cost")
    task_log_lines: bool = Field(
        False, description="Celery's own 'received' and 'succeeded' log line for every task (the latter repeats the "
                           "task's result, enrichment and all); failures are logged either way")
    celery_speedups: bool = Field(
        True, description="The pool's shortcuts through Celery/kombu internals (tasks/celery_internals), used only on "
                          "the versions they were written for; 0: Celery's stock path on any version")
    affinity_routing: bool = Field(True, description="Prefer a worker that already holds the model; 0 to measure without")
    device_pool: Literal["threads", "prefork"] = Field(
        "threads", description="A device worker's pool (set by the launcher's --pool): threads run an event's models "
                               "side by side; prefork runs one task at a time in one child")
    model_batch_size: int = Field(4, ge=1, description="Micro-batch bound per model (set by the launcher's --batch-size)")
    model_batch_wait_ms: float = Field(
        0.0, ge=0, description="How long a batch waits for company; 0: a request for an idle model runs at once")
    journal_dir: Path = Field(Path(tempfile.gettempdir()) / "model-zoo-journal",
                              description="Where device workers journal model calls in progress (crash accounting)")
    max_image_pixels: int = Field(40_000_000, description="Largest decoded frame (PIL MAX_IMAGE_PIXELS)")
    max_image_bytes: int = Field(16 * 1024 * 1024, description="Largest encoded frame")
    max_frames: int = Field(32, ge=0, le=256, description="Largest frame buffer for action recognition (at most 256)")
    max_event_pixels: int = Field(
        48_000_000, gt=0,
        description="Pixel budget of one event: its frame and every buffered frame together, read from the image "
                    "headers before any frame is decoded")
    max_event_bytes: int = Field(
        32 * 1024 * 1024, gt=0,
        description="Largest message body on the pool's queues (compressed and inflated); a larger one is refused "
                    "before it is decoded")
    pool_signing_key: SecretStr | None = Field(
        None, description="HMAC key every pool process signs its internal messages with, and checks them against "
                          "before decoding (generate one: python -c 'import secrets; print(secrets.token_hex(32))'); "
                          "`python -m workers start` makes one for its workers when unset, router and device refuse "
                          "to start without it")
    task_result_ttl_seconds: int = Field(
        24 * 3600, gt=0, description="TTL of Celery's own task results (celery-task-meta-*); above EVENT_DEADLINE_SECONDS")
    flower_basic_auth: SecretStr | None = Field(
        None, description="user:password (comma-separate several) that `model-zoo flower` requires; unset: it refuses to start")
    image_root: Path | None = Field(None, description="image_path must lie under this directory; unset: image_path refused")
    event_deadline_seconds: float = Field(300.0, description="Sweeper finishes events older than this as partial")
    sweep_interval_seconds: float = Field(30.0, description="How often the sweeper looks for overdue events")
    rescue_interval_seconds: float = Field(
        5.0, gt=0, description="How often beat moves the work of device queues with no live worker to live ones")
    max_deliveries: int = Field(3, description="A model task redelivered more often (its worker died) gives up")
    visibility_timeout_seconds: int = Field(
        3600, description="Unacknowledged tasks of a vanished worker are redelivered after this; above MODEL_TIME_LIMIT"
    )

    zoo: ZooSettings = Field(default_factory=ZooSettings)
    reid: ReidSettings = Field(default_factory=ReidSettings)
    depth: DepthSettings = Field(default_factory=DepthSettings)
    scene: SceneSettings = Field(default_factory=SceneSettings)
    cameras: CameraSettings = Field(default_factory=CameraSettings)
    nemotron: NemotronSettings = Field(default_factory=NemotronSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    launch: LaunchSettings = Field(default_factory=LaunchSettings)

    @field_validator("scene_models", "scene_detection_types", "device_queues", "preload_models", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redis_password", "result_backend_url", "device", "worker_role", "image_root", "flower_basic_auth",
                     "pool_signing_key", mode="before")
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("min_detection_confidence", mode="before")
    @classmethod
    def off_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "off", "none") else value

    @model_validator(mode="after")
    def redelivery_after_time_limit(self) -> Settings:
        if self.visibility_timeout_seconds <= self.model_time_limit:
            raise ValueError(
                "VISIBILITY_TIMEOUT_SECONDS must exceed MODEL_TIME_LIMIT, or tasks still running are delivered twice"
            )
        if self.task_result_ttl_seconds <= self.event_deadline_seconds:
            raise ValueError(
                "TASK_RESULT_TTL_SECONDS must exceed EVENT_DEADLINE_SECONDS: the sweeper reads model records until then"
            )
        return self

    @property
    def broker_url(self) -> str:
        return with_password(self.redis_url, self.redis_password)

    @property
    def backend_url(self) -> str:
        return with_password(self.result_backend_url or self.redis_url, self.redis_password)

    @property
    def worker_state_max_age_seconds(self) -> float:
        """A device worker silent this long (three heartbeats) is taken for dead: placement stops sending it work,
        and the rescue moves its queue's work to live workers."""
        return self.heartbeat_seconds * 3

    @property
    def is_device_worker(self) -> bool:
        return self.worker_role == "device"

    @property
    def pool_id(self) -> str:
        """A short name for this pool (its broker, password left out): files on one host stay apart per pool."""
        import hashlib
        from urllib.parse import urlsplit

        url = urlsplit(self.redis_url)
        where = f"{url.scheme}://{url.hostname}:{url.port or 6379}{url.path or '/0'}"
        return hashlib.sha1(where.encode()).hexdigest()[:10]


__all__ = ["Settings", "get_settings", "with_password"]  # with_password lives in workers.redis_urls

GROUPS = ("zoo", "reid", "depth", "scene", "cameras", "nemotron", "metrics", "launch")
PER_MODEL_FIELDS = {"model_paths": MODEL_PATH_SUFFIX, "model_families": MODEL_FAMILY_SUFFIX}


def environment_names(settings_class: type[BaseSettings] = Settings) -> dict[str, str]:
    """Every environment variable the settings read, with its description (README's table is checked against it).

    Per-model variables are named by their pattern (<NAME>_MODEL_PATH, <NAME>_MODEL_FAMILY).
    """
    prefix = settings_class.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for name, info in settings_class.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            names |= environment_names(kind)
        elif name in PER_MODEL_FIELDS:
            names[f"<NAME>{PER_MODEL_FIELDS[name]}"] = info.description or ""
        else:
            names[f"{prefix}{name}".upper()] = info.description or ""
    return names


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """This process's settings, built from the environment on first use."""
    return Settings()
