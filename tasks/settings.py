"""Server settings, read from the environment once per process (names are documented in README)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob the pool reads. Defaults run the whole pool on one machine."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Broker, result backend and frame store")
    result_backend_url: str | None = Field(None, description="Celery result backend; defaults to REDIS_URL")
    models_dir: Path = Field(Path("models"), description="Where model weights live, one entry per model name")
    result_ttl_seconds: int = Field(7 * 24 * 3600, description="TTL of enrichment:<event_id>")
    frame_ttl_seconds: int = Field(900, description="TTL of frame:<event_id>:* (frames are deleted on assembly)")
    scene_models: CommaList = Field(["florence", "clip"], description="Scene models run per event, comma list")
    scene_detection_types: CommaList = Field(["person"], description="Detection types scene models run for")
    device_queues: CommaList = Field(["cpu.0"], description="Static placement when no worker has reported yet")
    device_queue: str = Field("cpu.0", description="The queue this device worker consumes (set by the launcher)")
    memory_share_mb: int | None = Field(None, description="Model memory budget of this worker; default: 90% of VRAM or 4 GiB RAM")
    idle_evict_seconds: float = Field(1800.0, description="Non-resident models idle this long are unloaded")
    heartbeat_seconds: float = Field(10.0, description="How often a device worker republishes its cache state")
    model_soft_time_limit: float = Field(60.0, description="Soft time limit of one model task (seconds)")
    model_time_limit: float = Field(90.0, description="Hard time limit of one model task; the child is killed")
    task_events: bool = Field(True, description="Workers send task events (Flower needs them); 0 saves their cost")
    affinity_routing: bool = Field(True, description="Prefer a worker that already holds the model; 0 to measure without")
    model_batch_size: int = Field(1, ge=1, description="Micro-batch bound per model (set by the launcher's --batch-size; >1 needs a threads pool)")
    model_batch_wait_ms: float = Field(5.0, ge=0, description="How long the first request waits for others to join its batch")
    max_image_pixels: int = Field(40_000_000, description="Largest decoded frame (PIL MAX_IMAGE_PIXELS)")
    max_image_bytes: int = Field(16 * 1024 * 1024, description="Largest encoded frame")
    max_frames: int = Field(32, description="Largest frame buffer for action recognition")
    image_root: Path | None = Field(None, description="image_path must lie under this directory; unset: image_path refused")
    event_deadline_seconds: float = Field(300.0, description="Sweeper finishes events older than this as partial")
    sweep_interval_seconds: float = Field(30.0, description="How often the sweeper looks for overdue events")
    max_deliveries: int = Field(3, description="A model task redelivered more often (its worker died) gives up")
    visibility_timeout_seconds: int = Field(
        3600, description="Unacknowledged tasks of a vanished worker are redelivered after this; above MODEL_TIME_LIMIT"
    )
    redis_password: str | None = Field(None, description="Password added to REDIS_URL when it has none")

    @field_validator("scene_models", "scene_detection_types", "device_queues", mode="before")
    @classmethod
    def split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def redelivery_after_time_limit(self) -> "Settings":
        if self.visibility_timeout_seconds <= self.model_time_limit:
            raise ValueError(
                "VISIBILITY_TIMEOUT_SECONDS must exceed MODEL_TIME_LIMIT, or tasks still running are delivered twice"
            )
        return self

    @property
    def broker_url(self) -> str:
        return with_password(self.redis_url, self.redis_password)

    @property
    def backend_url(self) -> str:
        return with_password(self.result_backend_url or self.redis_url, self.redis_password)


def with_password(url: str, password: str | None) -> str:
    """Insert a password into a redis:// or rediss:// URL that carries none."""
    if not password or "@" in url.split("//", 1)[-1]:
        return url
    scheme, rest = url.split("//", 1)
    return f"{scheme}//:{password}@{rest}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
