"""CPU seconds one upload costs at intake (decode + face search), accepted or refused, against a phone photo.

    .venv/bin/python bench/upload_cpu.py

Issue 19.6's goal: no upload, accepted or refused, costs more than 1 s of CPU. Each row is the process CPU
time (all threads) of `sanitize` with the settings' limits plus the face search when accepted, the median of
three runs, and its ratio to a 12-Mpx phone photo measured in the same run.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

from _setup import django_for_bench
from upload import phone_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def smooth_photo(width: int, height: int, fmt: str = "JPEG", **save) -> bytes:
    """A photo-like image (gradients and sensor noise) of width x height."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None] * np.ones((1, width), np.float32)
    x = np.ones((height, 1), np.float32) * np.linspace(0, 255, width, dtype=np.float32)[None, :]
    noise = rng.normal(0, 6 if fmt == "JPEG" else 0, (height, width, 3)).astype(np.float32)  # PNG: < 10 MiB
    pixels = np.clip(np.stack([(x + y) / 2, y, x], -1) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def main() -> None:
    django_for_bench()
    from django.conf import settings

    from governance.errors import TimeveilError
    from inference.serving.faces import summarize_faces
    from tests.images import many_scans_jpeg, png_bomb
    from webplatform.photos.intake import JpegLimits, sanitize

    limits = dict(max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS,
                  max_side=settings.UPLOAD_MAX_SIDE, jpeg=JpegLimits(
                      max_pixels=settings.UPLOAD_MAX_JPEG_PIXELS, max_scans=settings.UPLOAD_MAX_JPEG_SCANS,
                      max_block_visits=settings.UPLOAD_MAX_JPEG_BLOCK_VISITS))
    # The worst progressive file under the block budget: the 19.6 recipe cut to what the limits let through.
    side = int((settings.UPLOAD_MAX_JPEG_BLOCK_VISITS / settings.UPLOAD_MAX_JPEG_SCANS) ** 0.5 * 8 * 0.99)
    cases = {
        "phone 12 Mpx baseline (reference)": phone_jpeg(),
        "30 Mpx baseline JPEG": smooth_photo(6700, 4500, quality=90),
        "30 Mpx progressive JPEG": smooth_photo(6700, 4500, quality=90, progressive=True),
        "48 Mpx baseline JPEG q80": smooth_photo(8000, 6000, quality=80),
        "24 Mpx PNG": smooth_photo(6000, 4000, fmt="PNG", compress_level=9),
        "24 Mpx WebP": smooth_photo(6000, 4000, fmt="WEBP", quality=80),
        f"{side} px grey, {settings.UPLOAD_MAX_JPEG_SCANS} repeated scans": many_scans_jpeg(
            side=side, scans=settings.UPLOAD_MAX_JPEG_SCANS),
        "19.6 file: 4800 px grey, 15,000 scans": many_scans_jpeg(),
        "PNG bomb 20000x20000": png_bomb(),
    }
    reference = None
    print(f"{'file':44} {'MiB':>6} {'answer':>22} {'CPU s':>7} {'x phone':>8}")
    for name, data in cases.items():
        runs, answer = [], ""
        for _ in range(3):
            start = time.process_time()
            try:
                clean = sanitize(data, **limits)
                summarize_faces(clean.pixels)
                answer = f"accepted {clean.width}x{clean.height}"
            except TimeveilError as exc:
                answer = f"{exc.status} {exc.code}"
            runs.append(time.process_time() - start)
        cpu = statistics.median(runs)
        reference = reference or cpu
        print(f"{name:44} {len(data) / 2**20:6.2f} {answer:>22} {cpu:7.3f} {cpu / reference:8.2f}")


if __name__ == "__main__":
    main()
