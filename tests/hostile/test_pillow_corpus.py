"""Pillow's own test images (odd, truncated, fuzzer-found files) through the upload API: never a 5xx, no
metadata served back. `make test-hostile` downloads the corpus from Pillow's sdist; skipped otherwise."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.support import named

CORPUS = Path(os.environ.get("HOSTILE_IMAGES", "/nonexistent"))
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file()) if CORPUS.is_dir() else []
if not FILES:
    pytest.skip(
        "set HOSTILE_IMAGES to Pillow's Tests/images (make test-hostile does)", allow_module_level=True
    )

ANSWERS = {201, 400, 413, 415, 422}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_a_hostile_image_gets_a_clear_answer_and_no_metadata_back(owner, path):
    response = owner.client.post("/api/v1/photos", {"file": named(path.read_bytes(), path.name)},
                                 format="multipart")
    assert response.status_code in ANSWERS, (response.status_code, response.content[:300])
    if response.status_code != 201:
        assert set(response.json()["error"]) == {"code", "message", "details"}
        return
    served = owner.client.get(f"/api/v1/photos/{response.json()['id']}/content")
    assert served.status_code == 200
    image = Image.open(io.BytesIO(b"".join(served.streaming_content) if served.streaming else served.content))
    assert len(image.getexif()) == 0
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile", "photoshop", "adobe"):
        assert key not in image.info, key
