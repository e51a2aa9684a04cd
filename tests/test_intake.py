"""Photo intake through POST /api/v1/photos: hostile files are refused cleanly, accepted ones rebuilt bare."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from PIL import Image

from governance.errors import PayloadTooLarge
from webplatform.photos.intake import sanitize
from webplatform.photos.jpeg_scans import jpeg_work

from .images import (
    COMMENT,
    SCRIPT,
    XMP,
    alpha_png,
    gps_jpeg,
    icc_jpeg,
    image_bytes,
    many_scans_jpeg,
    png_bomb,
    rotated_jpeg,
    zip_payload,
)
from .support import State, assert_error, assert_nothing_left_behind, named


@cache
def big_jpeg() -> bytes:
    return image_bytes("JPEG", size=(256, 256), quality=95)


# Each refused upload: (bytes, file name, status, error code).
REFUSED = {
    "zero_bytes": (lambda: b"", "selfie.jpg", 400, "invalid"),
    "text_named_jpg": (lambda: b"just some text, honestly a photo\n" * 20, "selfie.jpg", 415,
                       "unsupported_media_type"),
    "html_named_jpg": (lambda: b"<!doctype html><html>" + SCRIPT + b"</html>", "selfie.jpg", 415,
                       "unsupported_media_type"),
    "html_then_jpeg": (lambda: b"<html>" + SCRIPT + b"</html>" + image_bytes(), "selfie.jpg", 415,
                       "unsupported_media_type"),
    "zip_then_jpeg": (lambda: zip_payload() + image_bytes(), "selfie.jpg", 415, "unsupported_media_type"),
    "truncated_jpeg": (lambda: big_jpeg()[: len(big_jpeg()) // 2], "selfie.jpg", 400, "corrupt_image"),
    "png_bomb_20000x20000": (png_bomb, "selfie.png", 413, "too_large"),
    "png_over_pixel_cap": (lambda: png_bomb(6_000, 5_000), "selfie.png", 413, "too_large"),
    "gif": (lambda: image_bytes("GIF"), "selfie.gif", 415, "unsupported_media_type"),
    "bmp_named_png": (lambda: image_bytes("BMP"), "selfie.png", 415, "unsupported_media_type"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_upload_is_refused_with_json_and_leaves_nothing(case, upload):
    make, name, status, code = REFUSED[case]
    data = make()
    before = State.take()

    response = upload(data, name=name)

    assert_error(response, status, code)
    assert_nothing_left_behind(before)


def test_bomb_is_tiny_on_disk():
    # The point of the bomb case: a small file that would decode to 400 megapixels.
    data = png_bomb()
    assert len(data) < 100_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_pixel_cap_is_a_setting(upload):
    # Given a normal 64x48 photo and a pixel cap below its 3072 pixels
    before = State.take()
    with override_settings(UPLOAD_MAX_PIXELS=3_000):
        response = upload(image_bytes())
    # Then it is refused as too large, and the error says what the cap is
    error = assert_error(response, 413, "too_large")
    assert error["details"] == {"max_pixels": 3_000}
    assert_nothing_left_behind(before)


def test_pillows_bomb_guard_holds_even_if_the_pixel_cap_is_raised(upload):
    # Given an operator who raised the pixel cap past Pillow's own bomb threshold (about 89 Mpx)
    data = png_bomb(10_000, 10_000)  # 100 Mpx: Pillow warns, and intake makes the warning an error
    before = State.take()
    with override_settings(UPLOAD_MAX_PIXELS=10**9):
        response = upload(data, name="selfie.png")
    assert_error(response, 413, "too_large")
    assert_nothing_left_behind(before)


def test_byte_cap_is_a_setting(upload):
    data = big_jpeg()
    before = State.take()
    with override_settings(UPLOAD_MAX_BYTES=len(data) - 1):
        response = upload(data)
    error = assert_error(response, 413, "too_large")
    assert error["details"] == {"max_bytes": len(data) - 1}
    assert_nothing_left_behind(before)
    # Exactly at the cap is allowed.
    with override_settings(UPLOAD_MAX_BYTES=len(data)):
        assert upload(data).status_code == 201


def test_real_body_over_the_default_cap_is_413(upload, settings):
    # Given a body one byte over the real 10 MB default (a JPEG header, then junk)
    assert settings.UPLOAD_MAX_BYTES == 10 * 1024 * 1024
    data = b"\xff\xd8\xff\xe0" + bytes(settings.UPLOAD_MAX_BYTES - 3)
    before = State.take()
    # When it is uploaded
    response = upload(data)
    # Then the upload handler stops it before it is decoded
    assert_error(response, 413, "too_large")
    assert_nothing_left_behind(before)


def test_sanitize_enforces_the_byte_cap_itself():
    # Defence in depth: even if a caller skipped the upload handler, sanitize refuses oversize input.
    with pytest.raises(PayloadTooLarge):
        sanitize(big_jpeg(), max_bytes=len(big_jpeg()) - 1, max_pixels=10**9)


def test_missing_file_field_is_400(owner):
    before = State.take()
    response = owner.client.post("/api/v1/photos", {"photo": "nothing"}, format="multipart")
    error = assert_error(response, 400, "invalid")
    assert "file" in error["details"]
    assert_nothing_left_behind(before)


def test_json_body_is_415(owner):
    response = owner.client.post("/api/v1/photos", {"file": "aGVsbG8="}, format="json")
    assert_error(response, 415, "unsupported_media_type")


def test_declared_content_type_is_not_trusted(owner):
    # A text body declared as image/jpeg with a .jpg name is still sniffed as not-an-image.
    fake = SimpleUploadedFile("selfie.jpg", b"plain text pretending" * 10, content_type="image/jpeg")
    before = State.take()
    response = owner.client.post("/api/v1/photos", {"file": fake}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_left_behind(before)


JUNK = {
    "jpeg_magic_only": b"\xff\xd8\xff",
    "jpeg_header_garbage": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
    "png_signature_only": b"\x89PNG\r\n\x1a\n",
    "png_bad_crc": b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\x00" * 13 + b"\xde\xad\xbe\xef",
    "riff_webp_garbage": b"RIFF\x00\x01\x00\x00WEBPVP8 " + bytes(range(256)),
    "jpeg_broken_exif": (lambda d: d[:2] + b"\xff\xe1\x00\x20Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff"
                         + b"\x00" * 14
                         + d[2:])(image_bytes()),
    "jpeg_exif_orientation_junk": (lambda d: d[:2] + b"\xff\xe1\x00\x22Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08"
                                   b"\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x63\x00\x00\x00\x00\x00\x00"
                                   + d[2:])(image_bytes()),
}


@pytest.mark.parametrize("case", list(JUNK))
def test_junk_never_causes_a_server_error(case, upload):
    # "No 500 for anything a client can send": junk is either cleaned up and accepted, or a JSON 4xx.
    before = State.take()
    response = upload(JUNK[case])
    if response.status_code == 201:
        return
    assert 400 <= response.status_code < 500, response.content[:300]
    assert_error(response, response.status_code)
    assert_nothing_left_behind(before)


# --- accepted uploads: what is served back -------------------------------------------------------------


def _served(actor, response) -> tuple[bytes, str]:
    assert response.status_code == 201, response.content[:300]
    content = actor.client.get(f"/api/v1/photos/{response.json()['id']}/content")
    assert content.status_code == 200
    return content.content, content["Content-Type"]


def test_polyglot_jpeg_with_zip_is_accepted_but_the_payload_is_gone(owner, upload):
    # Given a valid JPEG with a ZIP (holding an HTML page with a script) appended
    payload = zip_payload()
    data = image_bytes() + payload
    assert Image.open(io.BytesIO(data)).size == (64, 48)  # still a valid JPEG to a decoder

    # When it is uploaded and read back
    served, content_type = _served(owner, upload(data))

    # Then the served copy is a plain re-encoded JPEG: no ZIP, no script, nothing after the image
    assert content_type == "image/jpeg"
    for marker in (b"PK\x03\x04", b"PK\x05\x06", b"index.html", b"<script", b"timeveil-polyglot"):
        assert marker not in served
    assert served.endswith(b"\xff\xd9")


def test_polyglot_with_html_in_a_jpeg_comment_is_stripped(owner):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes())).save(buffer, format="JPEG", comment=b"<html>" + SCRIPT + b"</html>")
    response = owner.client.post(
        "/api/v1/photos", {"file": named(buffer.getvalue(), "x.jpg")}, format="multipart"
    )
    served, _ = _served(owner, response)
    assert b"<script" not in served
    assert b"timeveil-polyglot" not in served


def test_gps_tagged_jpeg_is_served_without_any_metadata(owner, upload):
    # Given a JPEG with EXIF (camera make and a GPS position), an XMP packet and a comment
    data = gps_jpeg()
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(0x8825), "the fixture must really carry GPS"
    assert b"Exif" in data and b"http://ns.adobe.com/xap" in data and COMMENT in data

    # When it is uploaded and read back
    served, content_type = _served(owner, upload(data))

    # Then no EXIF, GPS, XMP, comment, ICC or thumbnail survives, in the parsed image or the raw bytes
    image = Image.open(io.BytesIO(served))
    assert content_type == "image/jpeg"
    assert len(image.getexif()) == 0
    assert not image.getexif().get_ifd(0x8825)
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile", "photoshop", "adobe"):
        assert key not in image.info, key
    assert getattr(image, "app", {}).keys() <= {"APP0"}, image.app  # JFIF only; no APP1 (EXIF/XMP), APP13
    for needle in (
        b"Exif",
        b"GPS",
        b"http://ns.adobe.com/xap",
        XMP[:40],
        COMMENT,
        b"TimeveilTestCam",
        b"Model-X",
    ):
        assert needle not in served, needle


def test_exif_orientation_is_applied(owner, upload):
    # Given 64x48 stored pixels, red left and blue right, tagged "rotate 90 degrees clockwise to display"
    served, _ = _served(owner, upload(rotated_jpeg()))
    image = Image.open(io.BytesIO(served)).convert("RGB")
    # Then the served image is upright: 48x64, red on top, blue at the bottom, and no orientation tag left
    assert image.size == (48, 64)
    top, bottom = image.getpixel((24, 4)), image.getpixel((24, 60))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert 0x0112 not in image.getexif()


def test_png_is_accepted_and_served_as_png(owner, upload):
    served, content_type = _served(owner, upload(image_bytes("PNG"), name="selfie.png"))
    image = Image.open(io.BytesIO(served))
    assert content_type == "image/png"
    assert image.format == "PNG" and image.size == (64, 48) and image.mode == "RGB"


def test_webp_is_accepted_and_served_as_jpeg(owner, upload):
    response = upload(image_bytes("WEBP"), name="selfie.webp")
    served, content_type = _served(owner, response)
    image = Image.open(io.BytesIO(served))
    assert content_type == "image/jpeg"
    assert image.format == "JPEG" and image.size == (64, 48)
    assert response.json()["width"] == 64 and response.json()["height"] == 48


def test_png_alpha_is_flattened_onto_white(owner, upload):
    served, _ = _served(owner, upload(alpha_png(), name="selfie.png"))
    image = Image.open(io.BytesIO(served))
    assert image.mode == "RGB"
    assert image.getpixel((4, 24)) == (255, 255, 255)  # was fully transparent
    assert image.getpixel((60, 24)) == (0, 0, 255)  # was opaque blue


def _encoded(image: Image.Image, fmt: str, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


UNUSUAL_MODES = {
    # name: (bytes factory, expected served RGB at the centre, tolerance)
    "grey_jpeg": (lambda: _encoded(Image.new("L", (32, 32), 128), "JPEG"), (128, 128, 128), 3),
    "cmyk_jpeg": (lambda: _encoded(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), (255, 0, 0), 6),
    "palette_png": (lambda: _encoded(Image.new("RGB", (32, 32), (0, 0, 255)).convert("P"), "PNG"),
                    (0, 0, 255), 0),
    "palette_png_transparent": (lambda: _encoded(Image.new("P", (32, 32), 0), "PNG", transparency=0),
                                (255, 255, 255), 0),
    "grey_16bit_png": (lambda: _encoded(Image.fromarray(np.full((32, 32), 40_000, dtype=np.uint16)), "PNG"),
                       (156, 156, 156), 1),
    "bilevel_png": (lambda: _encoded(Image.new("1", (32, 32), 0), "PNG"), (0, 0, 0), 0),
}


@pytest.mark.parametrize("case", list(UNUSUAL_MODES))
def test_unusual_colour_modes_come_back_as_rgb_with_their_colours(owner, upload, case):
    make, expected, tolerance = UNUSUAL_MODES[case]
    served, _ = _served(owner, upload(make(), name="x.img"))
    image = Image.open(io.BytesIO(served))
    assert image.mode == "RGB"
    pixel = image.getpixel((16, 16))
    assert all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True)), pixel


def test_icc_profile_is_converted_to_srgb_and_dropped(owner, upload):
    # Given a red-looking (200, 40, 40) JPEG whose embedded profile says "red and green are swapped"
    served, _ = _served(owner, upload(icc_jpeg()))
    image = Image.open(io.BytesIO(served)).convert("RGB")
    r, g, b = image.getpixel((16, 16))
    # Then the pixels were converted through the profile (now green in sRGB), and the profile is gone
    assert g > 150 and r < 90 and b < 90, (r, g, b)
    assert "icc_profile" not in Image.open(io.BytesIO(served)).info


def test_a_failure_after_storing_leaves_no_ciphertext_behind(owner, upload, monkeypatch):
    # Given the database write after the ciphertext was stored fails (here: the audit append raises)
    import webplatform.photos.services as services

    def broken_audit(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(services, "audit_append", broken_audit)
    before = State.take()
    # When a valid photo is uploaded
    response = upload(image_bytes())
    # Then the client gets a JSON server error, and neither a row nor the stored ciphertext remains
    assert_error(response, 500, "server_error")
    assert b"audit store down" not in response.content
    assert_nothing_left_behind(before)


# --- decoder work (issue 19.6) and large phone photos (issue 18.10) -------------------------------------

def test_a_jpeg_with_more_scans_than_encoders_write_is_refused(upload):
    # Given a small progressive JPEG whose last scan is repeated to 33 (libjpeg writes 10 for colour)
    before = State.take()
    response = upload(many_scans_jpeg(side=64, scans=33))
    # Then it is refused from its headers with a clear 422, and nothing is stored
    assert_error(response, 422, "image_too_complex")
    assert_nothing_left_behind(before)


def test_a_jpeg_whose_scans_visit_too_many_blocks_is_refused(upload):
    # 12 scans of a 512 px greyscale image visit 12 * 4096 blocks: over a budget of 40,000, under 32 scans
    data = many_scans_jpeg(side=512, scans=12)
    with override_settings(UPLOAD_MAX_JPEG_BLOCK_VISITS=40_000):
        assert_error(upload(data), 422, "image_too_complex")
    with override_settings(UPLOAD_MAX_JPEG_BLOCK_VISITS=50_000):
        assert upload(data).status_code == 201


def test_jpeg_work_counts_scans_and_blocks_from_the_headers():
    # Pillow's progressive colour JPEG (libjpeg's 10 scans), 4:2:0: 4 luma blocks and 2 chroma per MCU
    progressive = image_bytes("JPEG", size=(64, 48), progressive=True)
    work = jpeg_work(progressive, max_scans=32)
    assert work.scans == 10
    assert work.block_visits == sum([48 + 12 * 2, 48, 12, 12, 48, 48, 48 + 12 * 2, 12, 12, 48])
    assert jpeg_work(image_bytes("JPEG"), max_scans=32).scans == 1  # baseline, interleaved
    # A thumbnail is a whole JPEG inside an APP segment: its scans are skipped with the segment
    inner = image_bytes("JPEG", progressive=True)
    outer = image_bytes("JPEG")
    nested = outer[:2] + b"\xff\xe1" + (len(inner) + 2).to_bytes(2, "big") + inner + outer[2:]
    assert jpeg_work(nested, max_scans=32).scans == 1
    # Counting stops once past the limit: a 15,000-scan file costs no more to refuse than a 33-scan one
    assert jpeg_work(many_scans_jpeg(side=16, scans=1000), max_scans=32).scans == 33


def test_a_30_megapixel_phone_photo_is_accepted_at_reduced_scale(upload):
    # Given a 6700x4500 JPEG (30 Mpx, over the 24 Mpx full-decode cap) of a few MB
    buffer = io.BytesIO()
    Image.new("RGB", (6700, 4500), (150, 120, 100)).save(buffer, format="JPEG", quality=90)
    response = upload(buffer.getvalue())
    # Then it is decoded with libjpeg's draft scaling (1/4 here), within 3/4 of UPLOAD_MAX_SIDE
    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (1675, 1125)


def test_a_jpeg_past_the_decompression_bound_is_refused(upload):
    # 8200x6200 is 50.8 Mpx: over UPLOAD_MAX_JPEG_PIXELS (50 Mpx), refused from the header
    buffer = io.BytesIO()
    Image.new("L", (8200, 6200), 128).save(buffer, format="JPEG", quality=50)
    response = upload(buffer.getvalue())
    assert_error(response, 413, "too_large")
    assert response.json()["error"]["details"]["max_pixels"] == 50_000_000


def test_a_too_large_file_on_the_page_is_a_413_page_with_the_user_still_signed_in(owner):
    # Given a signed-in browser (CSRF enforced, as a real one is: the CSRF check reads the form first)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner.user)
    browser.get("/")
    token = browser.cookies["csrftoken"].value
    data = b"\xff\xd8\xff\xe0" + bytes(settings.UPLOAD_MAX_BYTES)
    # When it posts a file past UPLOAD_MAX_BYTES from the upload form
    response = browser.post("/upload", {"file": named(data, "big.jpg"), "csrfmiddlewaretoken": token})
    # Then it gets a 413 page saying the limit, and the header still shows it signed in
    assert response.status_code == 413
    page = response.content.decode()
    assert f"larger than {settings.UPLOAD_MAX_BYTES} bytes" in page
    assert "Sign out" in page and "Sign in" not in page
