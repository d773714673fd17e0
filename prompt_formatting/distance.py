"""Approximate metres from Depth Anything's relative depth, with a per-camera near/far calibration."""

from __future__ import annotations

import math

# A camera's nearest and farthest visible distances when it has no calibration of its own: a door or
# driveway camera whose frame runs from about a metre (the step or porch below it) to the street.
DEFAULT_NEAR_M = 1.0
DEFAULT_FAR_M = 20.0


def approximate_distance_m(
    relative_depth: float, near_m: float = DEFAULT_NEAR_M, far_m: float = DEFAULT_FAR_M
) -> float:
    """Approximate distance in metres of a relative depth (0 = the frame's nearest point, 1 = its farthest).

    Depth Anything predicts relative inverse depth (disparity), and the depth model min-max normalises it
    over the frame, so relative depth runs linearly in 1/distance from 1/near_m to 1/far_m:
    1/d = (1 - r) / near_m + r / far_m. Half-way (r = 0.5) is therefore about 1.9 m with the defaults, not
    10 m. The figure is approximate: the model's disparity is right only up to scale and shift, and
    near_m/far_m are the camera's calibration (or the defaults), not a measurement of this frame.
    Relative depths outside [0, 1] are clamped; near_m and far_m must satisfy 0 < near_m <= far_m.
    """
    if not (math.isfinite(near_m) and math.isfinite(far_m) and 0.0 < near_m <= far_m):
        raise ValueError(f"need 0 < near_m <= far_m, got near_m={near_m}, far_m={far_m}")
    if not math.isfinite(relative_depth):
        raise ValueError(f"relative_depth must be a finite number, got {relative_depth}")
    r = min(max(relative_depth, 0.0), 1.0)
    return 1.0 / ((1.0 - r) / near_m + r / far_m)


def parse_depth_calibration(text: str) -> dict[str, tuple[float, float]]:
    """A per-camera calibration setting, "front_door=0.8:12,driveway=2:40", as {camera: (near_m, far_m)}.

    Raises ValueError naming the bad entry, so a wrong setting fails at start-up, not per event.
    """
    calibration: dict[str, tuple[float, float]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        camera, _, span = entry.partition("=")
        near, _, far = span.partition(":")
        try:
            near_m, far_m = float(near), float(far)
        except ValueError:
            raise ValueError(f"depth calibration entry {entry!r} is not camera=near_m:far_m") from None
        if not camera.strip() or not (math.isfinite(near_m) and math.isfinite(far_m) and 0.0 < near_m <= far_m):
            raise ValueError(f"depth calibration entry {entry!r} needs a camera and 0 < near_m <= far_m")
        calibration[camera.strip()] = (near_m, far_m)
    return calibration


def depth_range_m(camera_id: str | None, calibration: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """The camera's (near_m, far_m) from the calibration, else the defaults."""
    return calibration.get(camera_id or "", (DEFAULT_NEAR_M, DEFAULT_FAR_M))
