"""A JPEG's decoding work read from its markers before any pixel is decoded: its scans, the blocks they visit.

A progressive JPEG's decoder visits every 8x8 block of a scan's components once per scan, so a small file
that repeats a scan thousands of times costs minutes of CPU (a 1 MB, 15,000-scan greyscale 4800x4800 file
took 25 s; Pillow releases the GIL while it decodes, so no request timeout fires). Pillow has no hook to
bound this, so intake refuses such a file first. Only segment headers are read; entropy-coded data is
skipped to its next marker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_SOS, _EOI = 0xDA, 0xD9
# Markers with no length field: TEM, restart markers RST0..7, SOI, EOI.
_STANDALONE = {0x01, 0xD8, _EOI, *range(0xD0, 0xD8)}
# Start-of-frame markers (C4 is DHT, C8 reserved, CC is DAC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class JpegWork:
    """What decoding will cost: scans, and 8x8 blocks visited summed over the scans (an upper bound)."""

    scans: int
    block_visits: int


def jpeg_work(data: bytes, *, max_scans: int) -> JpegWork:
    """Walk the JPEG's main stream (from after SOI); stops counting once scans pass max_scans."""
    scans = visits = 0
    blocks: dict[int, int] = {}  # component id -> blocks (MCU-padded), from the frame header
    pos, end = 2, len(data)
    while pos + 3 < end and scans <= max_scans:
        if data[pos] != 0xFF:
            pos = _next_marker(data, pos)  # stray bytes between segments: the decoder resyncs the same way
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segment = data[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker in _SOF and not blocks:
            blocks = _component_blocks(segment)
        elif marker == _SOS:
            scans += 1
            count = segment[0] if segment else 0
            visits += sum(blocks.get(segment[1 + 2 * i], 0) for i in range(count) if 1 + 2 * i < len(segment))
            pos = _next_marker(data, pos)
    return JpegWork(scans=scans, block_visits=visits)


def _component_blocks(frame: bytes) -> dict[int, int]:
    """Blocks per component from a frame header: (precision, height, width, count, (id, HV, table)*)."""
    if len(frame) < 6:
        return {}
    height, width, count = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    parts = [frame[6 + 3 * i:9 + 3 * i] for i in range(count) if len(frame) >= 9 + 3 * i]
    h_max = max((p[1] >> 4 for p in parts), default=1) or 1
    v_max = max((p[1] & 15 for p in parts), default=1) or 1
    mcus = math.ceil(width / (8 * h_max)) * math.ceil(height / (8 * v_max))
    return {p[0]: mcus * (p[1] >> 4) * (p[1] & 15) for p in parts}


def _next_marker(data: bytes, pos: int) -> int:
    """The offset of the next marker in entropy-coded data (FF 00 is a stuffed byte, FF D0-D7 a restart)."""
    end = len(data)
    while (pos := data.find(b"\xff", pos)) != -1 and pos + 1 < end:
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:  # fill bytes before a marker
            pos += 1
        else:
            return pos
    return end
