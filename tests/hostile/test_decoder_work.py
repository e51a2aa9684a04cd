"""Files built to burn the decoder's CPU (issue 19.6), generated here rather than committed: each is refused
from its headers, before a pixel is decoded, with a clear 422."""

from __future__ import annotations

from tests.images import many_scans_jpeg
from tests.support import State, assert_error, assert_nothing_left_behind


def test_the_15000_scan_progressive_jpeg_is_refused_before_decoding(upload):
    # Given the outside test's file: a valid progressive greyscale 4800x4800 JPEG with 15,000 scans, about
    # 1 MB, which took 25 s of CPU to decode and was accepted (bench/upload_cpu.py measures it refused)
    data = many_scans_jpeg(side=4800, scans=15_000)
    before = State.take()

    response = upload(data)

    assert_error(response, 422, "image_too_complex")
    assert response.json()["error"]["details"]["max_scans"] == 32
    assert_nothing_left_behind(before)
