"""Originals are kept at most UPLOAD_MAX_SIDE pixels a side: large photos are downscaled at intake.

A JPEG is decoded at the largest 1/2, 1/4 or 1/8 scale that keeps at least 3/4 of the maximum side (libjpeg's
DCT scaling is far cheaper than a full decode and a resize), then resized only if it is still too large.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.images import image_bytes
from webplatform.photos.intake import sanitize


def phone_jpeg(size: tuple[int, int] = (4032, 3024), orientation: int = 1) -> bytes:
    """A 12-Mpx JPEG with smooth content (a gradient with a square), like a phone photo's detail level."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    pixels = np.broadcast_to((x * 0.6 + y * 0.4), (height, width, 3)).astype(np.uint8).copy()
    pixels[height // 4: height // 2, width // 4: width // 2] = (250, 30, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_12_megapixel_upload_is_kept_at_half_size_under_the_2048_pixel_cap(owner, upload, settings):
    assert settings.UPLOAD_MAX_SIDE == 2048
    response = upload(phone_jpeg())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"]) == (2016, 1512)
    served = decoded(owner.client.get(f"/api/v1/photos/{body['id']}/content").content)
    assert served.size == (2016, 1512)
    # The content survived the scaled decode: the red square is where it was, the gradient too
    pixels = np.asarray(served.convert("RGB")).astype(int)
    assert tuple(pixels[567, 756]) == pytest.approx((250, 30, 30), abs=12)
    assert pixels[1480, 1990].sum() > pixels[20, 20].sum() + 200


def test_a_photo_too_large_even_at_half_scale_is_resized_to_the_cap(owner, upload):
    body = upload(phone_jpeg(size=(5000, 3000))).json()
    assert (body["width"], body["height"]) == (2048, 1229)


def test_a_turned_phone_photo_is_downscaled_and_upright(owner, upload):
    body = upload(phone_jpeg(orientation=6)).json()  # EXIF: rotate 90 degrees to display
    assert (body["width"], body["height"]) == (1512, 2016)


def test_the_maximum_side_is_a_setting(owner, upload, settings):
    settings.UPLOAD_MAX_SIDE = 1000
    body = upload(phone_jpeg(size=(3000, 2000))).json()
    assert (body["width"], body["height"]) == (750, 500)  # a quarter-scale decode: within [3/4 cap, cap]
    png = sanitize(image_bytes(fmt="PNG", size=(3000, 2000)), max_bytes=10**8, max_pixels=10**8,
                   max_side=settings.UPLOAD_MAX_SIDE)
    assert (png.width, png.height) == (1000, 667)  # no scaled decode for PNG: resized to the cap


def test_small_photos_and_pngs_under_the_limit_keep_their_size():
    clean = sanitize(image_bytes(size=(640, 480)), max_bytes=10**7, max_pixels=10**8, max_side=2048)
    assert (clean.width, clean.height) == (640, 480)
    png = sanitize(image_bytes(fmt="PNG", size=(2500, 400)), max_bytes=10**8, max_pixels=10**8, max_side=2048)
    assert (png.width, png.height, png.content_type) == (2048, 328, "image/png")
