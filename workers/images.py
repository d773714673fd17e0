"""Turning a frame source into trusted pixels: size limits, path confinement, safe decoding."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class InputError(ValueError):
    """A bad frame, named by the event field it came from."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def decode_base64(field: str, text: str, max_bytes: int) -> bytes:
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise InputError(field, f"larger than the {max_bytes} byte limit")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(field, f"not valid base64 ({exc})") from None


def read_confined(field: str, path_text: str, root: Path | None, max_bytes: int) -> bytes:
    """Read an image file that must lie under IMAGE_ROOT (symlinks resolved first)."""
    if root is None:
        raise InputError(field, "image_path is disabled on this server (IMAGE_ROOT is not set)")
    root = root.resolve()
    path = (root / path_text).resolve()
    if not path.is_relative_to(root):
        raise InputError(field, f"outside the allowed directory {root}")
    if not path.is_file():
        raise InputError(field, f"no such file under {root}")
    if path.stat().st_size > max_bytes:
        raise InputError(field, f"larger than the {max_bytes} byte limit")
    return path.read_bytes()


def decode_image(field: str, data: bytes, max_pixels: int) -> Image.Image:
    """Decode fully to RGB, refusing decompression bombs, truncated files and non-images."""
    if not data:
        raise InputError(field, "empty image")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(field, f"{width}x{height} exceeds the {max_pixels} pixel limit")
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even RGB
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(field, f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(field, "not a decodable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(field, f"corrupt or truncated image ({exc})") from None
