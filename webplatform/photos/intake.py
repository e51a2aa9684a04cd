"""Image intake: sniff the type from content, cap bytes and pixels, decode, orient, sRGB, strip, re-encode."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from governance.errors import (
    CorruptImage,
    ImageTooComplex,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)

from .jpeg_scans import jpeg_work

# Magic numbers: the declared name and Content-Type are never trusted.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
)
_OUTPUT = {"JPEG": ("JPEG", "image/jpeg"), "WEBP": ("JPEG", "image/jpeg"), "PNG": ("PNG", "image/png")}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
ORIENTATION = 0x0112  # the EXIF tag


@dataclass(frozen=True)
class JpegLimits:
    """What one JPEG may cost to decode, read from its headers first (docs/security.md says why each)."""

    # A JPEG 1.5 x max_side or wider decodes at 1/2..1/8 scale (DCT scaling), so its header may name this
    # many pixels (None: the common cap). A progressive one still holds its coefficients while decoding.
    max_pixels: int | None = None
    max_scans: int = 32  # libjpeg writes 10 scans for colour and 18 for CMYK; cameras write 1
    max_block_visits: int = 10_000_000  # 8x8 blocks visited summed over the scans: at most ~0.5 s of CPU


@dataclass(frozen=True)
class CleanImage:
    """A re-encoded image with no metadata at all, ready to encrypt."""

    data: bytes
    content_type: str
    width: int
    height: int
    # (height, width, 3) uint8 RGB, in memory only: the face search reads it, not a re-decode
    pixels: np.ndarray


def sniff(data: bytes) -> str | None:
    """The image format named by the file's first bytes (JPEG, PNG, WEBP), or None."""
    for signature, fmt in _SIGNATURES:
        if data.startswith(signature):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def sanitize(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int | None = None,
             jpeg: JpegLimits = JpegLimits()) -> CleanImage:
    """Validate and rebuild an uploaded image so only its pixels survive, at most max_side px a side."""
    if not data:
        raise InvalidInput("The file is empty.", details={"file": ["empty"]})
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The file is {len(data)} bytes; the limit is {max_bytes}.",
                              details={"max_bytes": max_bytes})
    fmt = sniff(data)
    if fmt is None:
        raise UnsupportedMediaType(details={"accepted": ["image/jpeg", "image/png", "image/webp"]})
    if fmt == "JPEG":
        _jpeg_work_check(data, jpeg)
    image = _decode(data, fmt, max_pixels, max_side, jpeg.max_pixels)
    if max_side and max(image.size) > max_side:
        # The model never needs more, and fewer pixels kept is less personal data held.
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if image.getexif().get(ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)  # a copy only when the photo actually needs turning
    return _reencode(_to_srgb(image), fmt)


def _jpeg_work_check(data: bytes, limits: JpegLimits) -> None:
    """Refuse a JPEG whose scans would cost the decoder more than any real camera's or encoder's file."""
    work = jpeg_work(data, max_scans=limits.max_scans)
    if work.scans > limits.max_scans or work.block_visits > limits.max_block_visits:
        raise ImageTooComplex(
            f"The JPEG has {work.scans} scans visiting {work.block_visits} blocks in all; the limits are "
            f"{limits.max_scans} scans and {limits.max_block_visits} blocks. Save it again as a plain JPEG.",
            details={"max_scans": limits.max_scans, "max_block_visits": limits.max_block_visits})


def _decode(data: bytes, fmt: str, max_pixels: int, max_side: int | None = None,
            jpeg_max_pixels: int | None = None) -> Image.Image:
    # Pillow's own bomb check warns at MAX_IMAGE_PIXELS; make that an error, and check our cap from the
    # header before a single pixel is decompressed.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            # Drafted at 1/2 scale or less (below), a JPEG holds a quarter of its pixels once decoded.
            drafted = fmt == "JPEG" and max_side and max(width, height) >= 1.5 * max_side
            if drafted and jpeg_max_pixels:
                max_pixels = max(max_pixels, jpeg_max_pixels)
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"The image is {width}x{height} pixels; the limit is {max_pixels} pixels.",
                    details={"max_pixels": max_pixels},
                )
            image.seek(0)  # animated WebP / APNG: the first frame only
            if fmt == "JPEG" and max_side and max(width, height) > max_side:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling), keeping at least 3/4 of max_side:
                # a 4032 px phone photo decodes at 2016 px in a third of the time, with no resize after.
                scale = 0.75 * max_side / max(width, height)
                image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge("The image decompresses to too many pixels.") from exc
        except UnidentifiedImageError as exc:
            raise UnsupportedMediaType("The file looks like an image but cannot be decoded.") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImage() from exc
    return image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert to 8-bit RGB in sRGB, honouring an embedded ICC profile, flattening alpha onto white."""
    icc = image.info.get("icc_profile")
    if image.mode.startswith("I"):
        # 16-bit greyscale PNG: scale to 8 bits; a plain convert clips everything above 255 to white.
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image.convert("RGB"), source, _SRGB, outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: treat the pixels as sRGB, which is what browsers do too
    return image if image.mode == "RGB" else image.convert("RGB")


def _reencode(image: Image.Image, fmt: str) -> CleanImage:
    # Only pixels are written: the info dict (EXIF, GPS, XMP, IPTC, ICC, comments, thumbnails) is emptied and
    # the encoders are told to write no EXIF or profile; bytes appended to the original (polyglot payloads)
    # never reach the encoder at all. Clearing beats copying the pixels into a fresh image (10 ms at 3 Mpx).
    image.info = {}
    out_format, content_type = _OUTPUT[fmt]
    buffer = io.BytesIO()
    if out_format == "JPEG":
        image.save(buffer, format="JPEG", quality=90, exif=b"", icc_profile=None, optimize=False)
    else:
        image.save(buffer, format="PNG", compress_level=3, exif=b"", icc_profile=None)
    return CleanImage(
        data=buffer.getvalue(),
        content_type=content_type,
        width=image.width,
        height=image.height,
        pixels=np.asarray(image),
    )
