"""Invariant 1: no plaintext image bytes in the database, storage, cache, logs or temp files."""

from __future__ import annotations

import base64
import io
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection
from PIL import Image

from governance.crypto import MAGIC
from governance.keys import object_decrypt
from webplatform.atomic_storage import PARTIAL_SUFFIX
from webplatform.photos.models import Photo

from .support import named, storage_files, walk_files


def unique_image(fmt: str, size: tuple[int, int] = (160, 120), **save_kwargs) -> bytes:
    """Fresh random noise, so no other test (or earlier run) can have written the same bytes anywhere."""
    pixels = np.random.default_rng().integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


TILE = 32  # bytes (or characters, for text encodings) per tile


class PlaintextDetector:
    """Finds any run of an image's bytes, raw or text-encoded, in a haystack.

    Every form of each image (raw, hex in both cases, base64 at each 3-byte alignment, Python bytes repr)
    is cut into TILE-sized tiles; a haystack is scanned at every offset. Any leaked run of at least
    2 * TILE - 1 bytes (characters) of a form contains a whole tile, wherever it starts.
    """

    def __init__(self, images: list[bytes]) -> None:
        tiles: set[bytes] = set()
        for data in images:
            forms = [data, data.hex().encode(), data.hex().upper().encode(), repr(data)[2:-1].encode()]
            forms += [base64.b64encode(data[shift:]) for shift in range(3)]
            for form in forms:
                tiles.update(form[i : i + TILE] for i in range(0, len(form) - TILE + 1, TILE))
        # Low-variety tiles (runs of padding, repeated table bytes) could match by chance: keep varied ones.
        self.tiles = {tile for tile in tiles if len(set(tile)) > 10}
        assert len(self.tiles) > 100

    def find(self, haystack: bytes) -> int | None:
        """Offset of the first leaked tile in haystack, or None."""
        tiles = self.tiles
        for offset in range(len(haystack) - TILE + 1):
            if haystack[offset : offset + TILE] in tiles:
                return offset
        return None


@dataclass
class Uploaded:
    originals: list[bytes]
    served: list[bytes]
    photos: list[Photo]

    @cached_property
    def detector(self) -> PlaintextDetector:
        return PlaintextDetector(self.originals + self.served)


def assert_absent(haystack: bytes, uploaded: Uploaded, where: str) -> None:
    offset = uploaded.detector.find(haystack)
    assert offset is None, f"plaintext image bytes found in {where} at offset {offset}"


def test_the_detector_finds_short_runs_in_every_encoding():
    # The other tests are only as good as this: a 64-byte leak at any offset, in any encoding, is found.
    image = unique_image("JPEG", quality=95)
    detector = PlaintextDetector([image])
    for start in (200, 1001, len(image) - 300):
        run = image[start : start + 2 * TILE]
        for leaked in (run, run.hex().encode(), run.hex().upper().encode(), repr(run)[2:-1].encode()):
            assert detector.find(b"prefix " + leaked + b" suffix") is not None
        encoded = base64.b64encode(image[start - start % 3 :])[: 4 * TILE]  # base64 of a run, any alignment
        assert detector.find(b"x" + encoded) is not None
    assert detector.find(bytes(range(256)) * 40) is None
    assert detector.find(crypto_blob(image)) is None


def crypto_blob(data: bytes) -> bytes:
    from governance import crypto

    return bytes(crypto.encrypt(bytes(32), data, aad=b"t"))


@pytest.fixture
def uploaded(owner, caplog) -> tuple[Uploaded, set[Path]]:
    """Upload a JPEG, a PNG and a WebP and read each back, with DEBUG logging and SQL logging on."""
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")  # Django's own logger stops at INFO by default
    connection.force_debug_cursor = True  # log every SQL statement with its parameters
    try:
        originals = [
            unique_image("JPEG", quality=95),
            unique_image("PNG"),
            unique_image("WEBP", lossless=True),
        ]
        served, photos = [], []
        for index, data in enumerate(originals):
            response = owner.client.post("/api/v1/photos", {"file": named(data, f"p{index}.img")},
                                         format="multipart")
            assert response.status_code == 201, response.content
            content = owner.client.get(f"/api/v1/photos/{response.json()['id']}/content")
            assert content.status_code == 200
            served.append(content.content)
            photos.append(Photo.objects.get(pk=response.json()["id"]))
    finally:
        connection.force_debug_cursor = False
    # Plaintext spills (Django's TemporaryUploadedFile, tempfile.*) land at the top of the temp dir: every
    # new entry there, and everything under a new directory, is checked.
    new_tmp: set[Path] = set()
    for name in set(os.listdir(tempfile.gettempdir())) - tmp_before:
        path = Path(tempfile.gettempdir()) / name
        new_tmp |= walk_files(path) if path.is_dir() else {path}
    return Uploaded(originals=originals, served=served, photos=photos), new_tmp


def test_no_plaintext_in_any_database_table(uploaded):
    # Given three uploaded photos
    result, _ = uploaded
    # When every column of every row of every table is dumped
    chunks: list[bytes] = []
    tables = connection.introspection.table_names()
    assert "photos_photo" in tables and "governance_auditevent" in tables
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode("utf-8", "surrogateescape"))
    dump = b"\x00".join(chunks)
    # The dump is real: it holds the photo rows we just made
    assert all(str(photo.id).encode() in dump or photo.id.hex.encode() in dump for photo in result.photos)
    # Then no window of any original or served image appears, raw or encoded
    assert_absent(dump, result, "the database")


def test_no_plaintext_in_storage_or_var_dir(uploaded):
    result, _ = uploaded
    names = {photo.storage_name for photo in result.photos}
    objects = storage_files()
    assert {str(p.relative_to(settings.STORAGES["objects"]["OPTIONS"]["location"])) for p in objects} >= names
    for path in walk_files(settings.VAR_DIR):  # the object store, the keyring, any database file
        assert_absent(path.read_bytes(), result, str(path))


def test_no_plaintext_in_new_temp_files(uploaded):
    result, new_tmp = uploaded
    for path in new_tmp:
        try:
            data = path.read_bytes()
        except OSError:
            continue  # vanished or unreadable: not ours
        assert_absent(data, result, f"temp file {path}")


def test_no_plaintext_in_the_cache(uploaded):
    result, _ = uploaded
    cache = caches["default"]
    if isinstance(cache, LocMemCache):
        entries = dict(cache._cache)  # key -> pickled value
        assert entries  # live: the throttles wrote to it during the uploads, so the check is not vacuous
        dump = b"\x00".join([k.encode() for k in entries] + [bytes(v) for v in entries.values()])
    elif settings.CACHES["default"]["BACKEND"] == "diskcache.DjangoCache":  # the embedded default's files
        assert len(cache._cache) > 0  # type: ignore[attr-defined]  # live, as above
        dump = b"\x00".join(p.read_bytes() for p in walk_files(settings.CACHES["default"]["LOCATION"]))
    else:
        pytest.skip("inspects the local-memory or the embedded file cache")
    assert_absent(dump, result, "the cache")


def test_no_plaintext_in_logs(uploaded, caplog):
    result, _ = uploaded
    records = caplog.get_records("setup") + caplog.records  # the uploads ran in the fixture
    assert any(r.name == "django.db.backends" and "photos_photo" in r.getMessage() for r in records), \
        "SQL logging was not captured"
    text = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.__dict__!r}" for record in records
    ).encode("utf-8", "surrogateescape")
    assert_absent(text, result, "the logs")


def test_ciphertext_on_disk_does_not_contain_the_image(owner, upload):
    # Given an uploaded photo and its served (sanitised) bytes
    original = unique_image("JPEG", quality=95)
    response = upload(original)
    assert response.status_code == 201
    photo = Photo.objects.get(pk=response.json()["id"])
    served = owner.client.get(f"/api/v1/photos/{photo.id}/content").content

    # When its stored object is read straight from disk
    path = Path(settings.STORAGES["objects"]["OPTIONS"]["location"]) / photo.storage_name
    blob = path.read_bytes()

    # Then it is Timeveil's AES-GCM frame, none of the image shows through, and it really is this photo
    assert blob.startswith(MAGIC)
    assert len(blob) == photo.size_bytes == len(served) + len(MAGIC) + 12 + 16
    assert b"\xff\xd8\xff" not in blob[:64] and b"JFIF" not in blob
    assert PlaintextDetector([served, original]).find(blob) is None
    decrypted = object_decrypt(owner_id=owner.pk, kind="photo", object_id=photo.id, blob=blob)
    assert bytes(decrypted) == served


# --- no plaintext spill to disk, even for uploads past Django's in-memory threshold ------------------------

_recording: list[tuple[str, int]] | None = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _audit_hook(event: str, args: tuple) -> None:
    if _recording is not None and event == "open" and len(args) >= 3 and isinstance(args[2], int):
        if args[2] & _WRITE_FLAGS and isinstance(args[0], (str, bytes, os.PathLike)):
            _recording.append((os.fsdecode(args[0]), args[2]))


_hook_installed = False


def _files_written_during(action) -> list[str]:
    """Every path opened for writing while `action` runs (a Python audit hook sees each open)."""
    global _recording, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit_hook)  # cannot be removed; inert unless recording
        _hook_installed = True
    _recording = []
    try:
        action()
        return [path for path, _ in _recording]
    finally:
        _recording = None


def test_a_large_upload_writes_nothing_but_ciphertext_to_disk(owner, settings):
    # Given a 3 MB photo: past Django's default 2.5 MB in-memory limit, where it would spool to /tmp
    data = unique_image("PNG", size=(1024, 1024), compress_level=0)
    assert len(data) > 2_621_440
    responses = []

    # When it is uploaded
    written = _files_written_during(
        lambda: responses.append(owner.client.post("/api/v1/photos", {"file": named(data, "big.png")},
                                                   format="multipart")))

    # Then it was accepted, and the only file written is its ciphertext in the object store: written under a
    # temporary name beside it (webplatform/atomic_storage.py), linked into place, and the temporary gone
    assert responses[0].status_code == 201, responses[0].content[:300]
    objects_root = os.path.realpath(settings.STORAGES["objects"]["OPTIONS"]["location"])
    photo = Photo.objects.get(pk=responses[0].json()["id"])
    final = os.path.join(objects_root, photo.storage_name)
    assert len(written) == 1
    temporary = os.path.realpath(written[0])
    assert temporary.startswith(final + ".") and temporary.endswith(PARTIAL_SUFFIX)
    assert os.path.exists(final) and not os.path.exists(temporary)


def test_the_upload_handler_stops_reading_past_the_cap(settings):
    from django.core.files.uploadhandler import StopFutureHandlers

    from governance.errors import PayloadTooLarge
    from webplatform.photos.upload import CappedMemoryUploadHandler

    settings.UPLOAD_MAX_BYTES = 1000
    handler = CappedMemoryUploadHandler()
    handler.handle_raw_input(None, {}, 5000, b"boundary")
    with pytest.raises(StopFutureHandlers):  # "I keep this file in memory; no other handler needed"
        handler.new_file("file", "a.jpg", "image/jpeg", 5000)
    assert handler.receive_data_chunk(b"x" * 600, 0) is None  # kept in memory, nothing passed on
    with pytest.raises(PayloadTooLarge):
        handler.receive_data_chunk(b"x" * 401, 600)


def test_an_oversized_upload_is_refused_without_touching_disk(owner, settings):
    # Given a body just past the real byte cap (where Django's default handlers would spool it to /tmp)
    data = b"\xff\xd8\xff\xe0" + os.urandom(settings.UPLOAD_MAX_BYTES)
    responses = []
    # When it is uploaded
    written = _files_written_during(
        lambda: responses.append(owner.client.post("/api/v1/photos", {"file": named(data, "big.jpg")},
                                                   format="multipart")))
    # Then it is refused and not one file was opened for writing
    assert responses[0].status_code == 413
    assert written == []
