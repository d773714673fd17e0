"""Turning a frame source into trusted pixels: size limits, path confinement, safe decoding."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

log = logging.getLogger(__name__)

# The formats the README promises, by their plugins' own signature checks; every other decoder (TIFF, GIF, BMP,
# PSD, ...) is never even tried. Decoders are called directly, not through Image.open: ultralytics replaces
# Image.open in any process that imports it with one that pip-installs a HEIF plugin on an unknown file.
DECODERS = (
    (JpegImagePlugin._accept, JpegImagePlugin.jpeg_factory),
    (PngImagePlugin._accept, PngImagePlugin.PngImageFile),
    (WebPImagePlugin._accept, WebPImagePlugin.WebPImageFile),
)
# Modes whose samples do not fit 8 bits: scaled down to 8 bits, never clipped (a 16-bit PNG would turn white).
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


# Pillow gives a decoded image's memory back to the system when the image is freed, so a process that decodes a
# frame per event faults fresh pages in for every frame (a 1280x720 frame is 3.7 MB). Keeping a few freed blocks
# (16 MB each, Pillow's default block size) for the next decode cut a device worker's decode CPU from 2.6 to
# 1.9 ms per frame under scripts/bench.py --noop; it holds at most that much RAM idle.
DECODE_BLOCKS_KEPT = 8


def keep_decode_memory(blocks: int = DECODE_BLOCKS_KEPT) -> None:
    """Let Pillow keep up to `blocks` freed image blocks for reuse in this process (never lowers a larger setting,
    such as PILLOW_BLOCKS_MAX from the environment)."""
    Image.core.set_blocks_max(max(Image.core.get_blocks_max(), blocks))


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
    try:
        root = root.resolve()
        path = (root / path_text).resolve()
        if not path.is_relative_to(root):
            raise InputError(field, f"outside the allowed directory {root}")
        if not path.is_file():
            raise InputError(field, f"no such file under {root}")
        if path.stat().st_size > max_bytes:
            raise InputError(field, f"larger than the {max_bytes} byte limit")
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)  # the file may have grown since stat()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, no permission
        raise InputError(field, f"cannot be read ({type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise InputError(field, f"larger than the {max_bytes} byte limit")
    return data


def decode_image(field: str, data: bytes, max_pixels: int) -> Image.Image:
    """Decode fully to 8-bit RGB as a viewer shows it (EXIF orientation applied), refusing decompression bombs,
    truncated files, non-images and formats other than JPEG, PNG and WebP."""
    image, _ = _decoded(field, data, max_pixels, reduced=False)
    return to_rgb(upright(image))


def check_image(field: str, data: bytes, max_pixels: int) -> tuple[int, int]:
    """What decode_image refuses, refused the same way, at a fraction of its cost; the size it would return.

    Every byte of the stream is still decoded (a truncated or corrupt image fails here as it would there), but a
    JPEG at an eighth of its size (libjpeg's DCT scaling skips most of the work: the router's admission check of
    a 1280x720 frame went from about 4 ms to 1 ms); PNG and WebP have no such mode and decode in full.
    """
    return inspect_image(field, data, max_pixels)[0]


def inspect_image(field: str, data: bytes, max_pixels: int) -> tuple[tuple[int, int], Image.Image]:
    """check_image's answer and the image it decoded (a JPEG at an eighth of its size; other formats in full),
    upright, for cheap looks at the picture (workers.frame_quality)."""
    image, size = _decoded(field, data, max_pixels, reduced=True)
    shown = upright_size(image, size)
    return shown, upright(image)


def _decoded(field: str, data: bytes, max_pixels: int, reduced: bool) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image (at reduced scale when asked and the format allows) and its full stored size."""
    if not data:
        raise InputError(field, "empty image")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = open_accepted(field, data)
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(field, f"{width}x{height} exceeds the {max_pixels} pixel limit")
            if reduced:
                image.draft(None, (max(1, width // 8), max(1, height // 8)))  # JPEG only; others ignore it
            image.load()
            return image, (width, height)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(field, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(field, f"corrupt or truncated image ({exc})") from None
    except Exception as exc:  # decoders meet hostile bytes: whatever they raise, the image is the input's fault
        raise InputError(field, f"unreadable image ({type(exc).__name__})") from None


def header_size(field: str, data: bytes, max_pixels: int) -> tuple[int, int]:
    """The stored width and height from the image's header alone (nothing decoded); refuses what decoding would:
    empty data, formats other than JPEG, PNG and WebP, a header that cannot be read, more than `max_pixels`."""
    if not data:
        raise InputError(field, "empty image")
    try:
        width, height = open_accepted(field, data).size
    except InputError:
        raise
    except Exception as exc:  # a header parser meets hostile bytes: whatever it raises, the image is the input's fault
        raise InputError(field, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    if width * height > max_pixels:
        raise InputError(field, f"{width}x{height} exceeds the {max_pixels} pixel limit")
    return width, height


def open_accepted(field: str, data: bytes) -> Image.Image:
    """Open JPEG, PNG or WebP bytes lazily (header only) with that format's own decoder; anything else is refused."""
    for accepts, decoder in DECODERS:
        if accepts(data[:16]) is True:
            return decoder(io.BytesIO(data))
    raise InputError(field, "not a JPEG, PNG or WebP image")


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says (a phone's portrait JPEG stored sideways), so boxes given in
    the coordinates a viewer shows match the pixels; unreadable EXIF counts as no orientation. In place: the
    image was just decoded, and a copy of an upright frame is all exif_transpose would otherwise add."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # EXIF parsers raise many kinds on hostile metadata; the pixels are still good
        log.info("ignoring unreadable EXIF orientation: %s", exc)
    return image


# EXIF orientations that turn the image a quarter (the shown width is the stored height).
QUARTER_TURNS = {5, 6, 7, 8}


def upright_size(image: Image.Image, stored: tuple[int, int]) -> tuple[int, int]:
    """The size upright() would give an image stored at `stored`; unreadable EXIF counts as no orientation."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except Exception as exc:
        log.info("ignoring unreadable EXIF orientation: %s", exc)
        orientation = None
    return (stored[1], stored[0]) if orientation in QUARTER_TURNS else stored


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit, 32-bit and float samples scaled into 0-255 (convert() alone would clip them)."""
    if image.mode in WIDE_MODES:
        image = Image.fromarray(to_8_bits(np.asarray(image)))  # 2-D uint8: mode L
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even RGB


def to_8_bits(samples: np.ndarray) -> np.ndarray:
    """16-bit samples scaled by 255/65535; samples outside 0-65535 (32-bit or float modes) by their own range."""
    samples = samples.astype(np.float64)
    low, high = float(samples.min(initial=0.0)), float(samples.max(initial=0.0))
    if low >= 0 and high <= 65535:
        scaled = samples * (255.0 / 65535.0)
    else:
        scaled = (samples - low) * (255.0 / ((high - low) or 1.0))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
