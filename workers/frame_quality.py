"""How a camera's picture looks, cheaply, from a small thumbnail of the frame: brightness, sharpness, noise,
colour, and a fingerprint; what a per-camera baseline compares to notice a covered, blurred or frozen picture.

Every figure is measured on the frame scaled to THUMB_WIDTH pixels wide (the router's check already decodes a
JPEG at an eighth of its size), so frames of any resolution and format give comparable figures.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image
from pydantic import BaseModel

THUMB_WIDTH = 160
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
# Immerkaer's noise mask (the difference of two Laplacians: it cancels image structure, leaving the noise).
NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


class FrameQuality(BaseModel):
    """One frame's figures: brightness and colourfulness in 0..1, sharpness and noise in grey levels."""

    brightness: float  # mean luma, 0 black .. 1 white
    sharpness: float  # variance of the Laplacian (edges); a blurred or sprayed lens drops it
    noise: float  # estimated noise sigma (Immerkaer 1996), in 0-255 grey levels
    colourfulness: float  # mean saturation, 0 for a grey (infrared night) picture
    fingerprint: str  # digest of the encoded frame (else of its pixels): the same bytes again mean a frozen feed


def thumbnail(image: Image.Image, width: int = THUMB_WIDTH) -> Image.Image:
    """The image scaled to `width` pixels wide (never up), RGB."""
    image = image if image.mode == "RGB" else image.convert("RGB")
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return image


def convolve(grey: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A 3x3 kernel over the image's interior (valid positions only)."""
    height, width = grey.shape
    out = np.zeros((height - 2, width - 2))
    for dy in range(3):
        for dx in range(3):
            if kernel[dy, dx]:
                out += kernel[dy, dx] * grey[dy:dy + height - 2, dx:dx + width - 2]
    return out


def measure(image: Image.Image, encoded: bytes | None = None) -> FrameQuality:
    """The figures of one frame (any size or mode); `encoded`, the frame's bytes as sent, fingerprints it (a live
    camera's sensor noise makes every encoded frame differ; the very same bytes again are a replayed picture)."""
    small = thumbnail(image)
    grey = np.asarray(small.convert("L"), dtype=np.float64)
    saturation = np.asarray(small.convert("HSV"), dtype=np.float64)[..., 1] / 255.0
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        sharpness = noise = 0.0
    else:
        sharpness = float(convolve(grey, LAPLACIAN).var())
        height, width = grey.shape
        noise = float(math.sqrt(math.pi / 2) * np.abs(convolve(grey, NOISE_MASK)).sum() / (6 * (width - 2) * (height - 2)))
    fingerprint = encoded if encoded is not None else image.tobytes()
    return FrameQuality(
        brightness=round(float(grey.mean()) / 255.0, 4), sharpness=round(sharpness, 2), noise=round(noise, 3),
        colourfulness=round(float(saturation.mean()), 4),
        fingerprint=hashlib.blake2b(fingerprint, digest_size=8).hexdigest(),
    )
