"""Frames are read as a viewer shows them: EXIF orientation applied, 16-bit samples scaled, only JPEG/PNG/WebP."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from workers.images import InputError, check_image, decode_image, keep_decode_memory

MAX_PIXELS = 40_000_000


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def sideways_jpeg(orientation: int = 6) -> bytes:
    """A 720x1280 JPEG (portrait as stored) whose EXIF says: turn 90 degrees clockwise to show it (1280x720).

    The stored frame is grey with a red block in its top-left corner; shown upright, the red block sits in the
    top-right corner.
    """
    stored = Image.new("RGB", (720, 1280), (128, 128, 128))
    stored.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(stored, "JPEG", exif=exif.tobytes(), quality=95)


def png_16_bit(samples: np.ndarray, colour: bool = False) -> bytes:
    """A 16-bit PNG written by hand (grey, or RGB when colour), the way a thermal or HDR camera writes one."""
    height, width = samples.shape[:2]
    colour_type = 2 if colour else 0
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_exif_orientation_is_applied_so_boxes_use_displayed_coordinates():
    image = decode_image("image", sideways_jpeg(6), MAX_PIXELS)
    assert image.size == (1280, 720)
    red, grey = image.getpixel((1180, 100)), image.getpixel((100, 100))
    assert red[0] > 200 and red[1] < 60, "the stored top-left corner is shown top-right"
    assert abs(grey[0] - 128) < 20


@pytest.mark.parametrize("orientation, size", [(1, (720, 1280)), (3, (720, 1280)), (8, (1280, 720))])
def test_every_orientation_turns_the_frame(orientation, size):
    assert decode_image("image", sideways_jpeg(orientation), MAX_PIXELS).size == size


def test_unreadable_exif_counts_as_no_orientation():
    stored = Image.new("RGB", (64, 32), (10, 200, 30))
    data = encoded(stored, "JPEG", exif=b"Exif\0\0II*\0\xff\xff\xff\x7f" + b"\0" * 8)
    assert decode_image("image", data, MAX_PIXELS).size == (64, 32)


def test_16_bit_grey_png_is_scaled_not_clipped_to_white():
    gradient = np.linspace(0, 65535, 256 * 64).reshape(64, 256).astype(np.uint16)
    pixels = np.asarray(decode_image("image", png_16_bit(gradient), MAX_PIXELS))
    assert pixels.shape == (64, 256, 3) and pixels.dtype == np.uint8
    assert (pixels == 255).mean() < 0.01, "only the brightest samples are white"
    assert abs(pixels.mean() - 127.5) < 2
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255


def test_16_bit_colour_png_keeps_its_colours():
    samples = np.zeros((16, 16, 3), dtype=np.uint16)
    samples[..., 0], samples[..., 1], samples[..., 2] = 65535, 32768, 0
    pixel = decode_image("image", png_16_bit(samples, colour=True), MAX_PIXELS).getpixel((5, 5))
    assert pixel[0] == 255 and 120 <= pixel[1] <= 130 and pixel[2] == 0


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_8_bit_modes_become_rgb(mode):
    fmt = "JPEG" if mode in ("L", "CMYK", "1") else "PNG"
    image = decode_image("image", encoded(Image.new(mode, (20, 10)), fmt), MAX_PIXELS)
    assert image.mode == "RGB" and image.size == (20, 10)


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "BMP", "PPM", "ICO"])
def test_formats_other_than_jpeg_png_webp_are_refused(fmt):
    with pytest.raises(InputError) as caught:
        decode_image("image", encoded(Image.new("RGB", (16, 16), (1, 2, 3)), fmt), MAX_PIXELS)
    assert caught.value.field == "image" and "JPEG, PNG or WebP" in caught.value.reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_jpeg_png_and_webp_are_read(fmt):
    assert decode_image("image", encoded(Image.new("RGB", (16, 16), (1, 2, 3)), fmt), MAX_PIXELS).size == (16, 16)


# -- check_image: the router's admission check, refusing exactly what decode_image refuses ---------------------
def photo_jpeg(progressive: bool = False) -> bytes:
    rng = np.random.default_rng(3)
    pixels = (rng.random((120, 160, 3)) * 255).astype(np.uint8)  # noise: every block carries data
    return encoded(Image.fromarray(pixels), "JPEG", quality=90, progressive=progressive)


def outcome(function, data: bytes):
    try:
        result = function("image", data, MAX_PIXELS)
    except InputError as exc:
        return "refused", exc.field
    return "accepted", result.size if isinstance(result, Image.Image) else result


def damaged(data: bytes) -> list[bytes]:
    """Truncations at many points and bytes overwritten in the entropy-coded data."""
    cuts = [data[:n] for n in range(0, len(data), max(1, len(data) // 40))]
    flips = []
    for at in range(len(data) // 3, len(data) - 2, max(1, len(data) // 25)):
        flipped = bytearray(data)
        flipped[at:at + 3] = b"\xff\xd9\x00"  # an end-of-image marker in the middle of the scan
        flips.append(bytes(flipped))
    return cuts + flips


@pytest.mark.parametrize("progressive", [False, True])
def test_check_image_refuses_what_decode_image_refuses(progressive):
    outcomes = []
    for data in [photo_jpeg(progressive), *damaged(photo_jpeg(progressive))]:
        expected = outcome(decode_image, data)
        assert outcome(check_image, data) == expected, len(data)
        outcomes.append(expected[0])
    assert outcomes.count("refused") > 30 and outcomes[0] == "accepted", "the corpus has both kinds"


@pytest.mark.parametrize("data", [
    b"", b"not an image", encoded(Image.new("RGB", (16, 16)), "GIF"),
    png_16_bit(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000),
    encoded(Image.new("RGB", (40, 30), (1, 2, 3)), "PNG")[:-30],  # truncated PNG
    encoded(Image.new("RGB", (40, 30), (1, 2, 3)), "WEBP"),
], ids=["empty", "text", "gif", "png16", "png-truncated", "webp"])
def test_check_image_agrees_on_other_formats(data):
    assert outcome(check_image, data) == outcome(decode_image, data)


@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 7, 8])
def test_check_image_gives_the_upright_size(orientation):
    data = sideways_jpeg(orientation)
    assert check_image("image", data, MAX_PIXELS) == decode_image("image", data, MAX_PIXELS).size


def test_check_image_refuses_decompression_bombs():
    data = encoded(Image.new("L", (4000, 3000)), "JPEG")
    with pytest.raises(InputError, match="pixel limit"):
        check_image("image", data, 1_000_000)


def test_a_device_process_reuses_the_memory_of_a_freed_frame_for_the_next_decode():
    """keep_decode_memory: the second frame is decoded into the first one's freed block, not into fresh pages."""

    frame = encoded(Image.new("RGB", (1280, 720), (90, 120, 30)), "JPEG")
    kept_before = Image.core.get_blocks_max()
    try:
        Image.core.set_blocks_max(0)  # Pillow's default: every freed block goes back to the system
        keep_decode_memory()
        decode_image("image", frame, MAX_PIXELS)  # freed at once
        Image.core.reset_stats()
        decode_image("image", frame, MAX_PIXELS)
        stats = Image.core.get_stats()
        assert stats["reused_blocks"] >= 1 and stats["allocated_blocks"] == 0, stats
        keep_decode_memory(2)
        assert Image.core.get_blocks_max() >= 8  # a smaller request never lowers what is kept
    finally:
        Image.core.set_blocks_max(kept_before)
