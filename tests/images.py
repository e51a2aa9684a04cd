"""Hostile and unusual image files built in memory: bombs, polyglots, GPS EXIF, rotations, ICC profiles."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from PIL import ExifTags, Image

XMP = (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
       b"<rdf:Description xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmp:CreatorTool='TimeveilTestCam'/>"
       b"</rdf:RDF></x:xmpmeta>")
COMMENT = b"shot at 221B Baker Street by TimeveilTestCam"
SCRIPT = b"<script>alert('timeveil-polyglot')</script>"


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 120, 90), **save_kwargs
) -> bytes:
    """A small noisy image (noise so a slice of its bytes is distinctive)."""
    import numpy as np

    rng = np.random.default_rng(7)
    pixels = (rng.integers(0, 255, (size[1], size[0], 3)) // 2 + np.array(color) // 2).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real 1-bit PNG of width x height zero pixels: a few KB on disk, hundreds of MB decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_step = 500
    parts = [compressor.compress(row * rows_per_step) for _ in range(height // rows_per_step)]
    parts.append(compressor.compress(row * (height % rows_per_step)))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def gps_jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG carrying EXIF (camera, GPS position), an XMP packet and a comment."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TimeveilTestCam"
    exif[ExifTags.Base.Model] = "Model-X"
    exif[ExifTags.Base.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (51.0, 31.0, 25.0),
        ExifTags.GPS.GPSLongitudeRef: "W", ExifTags.GPS.GPSLongitude: (0.0, 9.0, 29.0),
    }
    return _noise_jpeg(size, exif=exif, xmp=XMP, comment=COMMENT)


def _noise_jpeg(size: tuple[int, int], **save_kwargs) -> bytes:
    source = Image.open(io.BytesIO(image_bytes("PNG", size=size)))
    buffer = io.BytesIO()
    source.convert("RGB").save(buffer, format="JPEG", quality=90, **save_kwargs)
    return buffer.getvalue()


def two_tone(
    size: tuple[int, int], left: tuple[int, ...], right: tuple[int, ...], mode: str = "RGB"
) -> Image.Image:
    """An image whose left half is one colour and right half another (to check rotation / alpha)."""
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def rotated_jpeg() -> bytes:
    """64x48 stored pixels, red left / blue right, EXIF Orientation=6 (shown turned 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    buffer = io.BytesIO()
    two_tone((64, 48), (255, 0, 0), (0, 0, 255)).save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def alpha_png() -> bytes:
    """64x48 RGBA PNG: left half fully transparent black, right half opaque blue."""
    buffer = io.BytesIO()
    two_tone((64, 48), (0, 0, 0, 0), (0, 0, 255, 255), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def icc_red_green_swapped() -> bytes:
    """A valid ICC v2 RGB matrix/TRC profile whose red and green primaries are swapped relative to sRGB.

    Pixels tagged with it that are red in the file are green once converted to sRGB, so a test can tell
    a real colour conversion from ignoring (or merely stripping) the profile.
    """
    # sRGB, D50
    red, green, blue = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)

    def curve(gamma: float) -> bytes:
        return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"

    text = b"Timeveil test: red/green swapped\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*green)),
        (b"gXYZ", xyz(*red)),
        (b"bXYZ", xyz(*blue)),
        (b"rTRC", curve(2.2)),
        (b"gTRC", curve(2.2)),
        (b"bTRC", curve(2.2)),
    ]
    table_size = 4 + 12 * len(tags)
    entries, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        entries += signature + struct.pack(">II", 128 + table_size + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + entries + data


def icc_jpeg() -> bytes:
    """A solid (200, 40, 40) JPEG tagged with the red/green-swapped profile."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, format="JPEG", quality=95,
                                                   icc_profile=icc_red_green_swapped())
    return buffer.getvalue()


def zip_payload() -> bytes:
    """A ZIP archive holding an HTML page with a script: the tail of a JPEG+ZIP polyglot."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("index.html", b"<html><body>" + SCRIPT + b"</body></html>")
    return buffer.getvalue()


def face_jpeg(seed: int = 4, age: float = 30) -> bytes:
    """A photo with one synthetic face that the real detector finds (about 88 px wide near (240, 180))."""
    from inference.generator.synthetic import Identity, place_in_photo

    photo, _ = place_in_photo(Identity.from_seed(seed), age, photo_size=(360, 480), face_size=200, seed=seed)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def many_scans_jpeg(side: int = 4800, scans: int = 15_000) -> bytes:
    """A valid progressive greyscale JPEG whose last scan (with its Huffman table) is repeated to `scans`.

    The recipe of issue 19.6: at 4800 px and 15,000 scans it is about 800 KB and took 25 s of CPU to decode,
    as the decoder walks every block once per scan.
    """
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, format="JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    assert data.endswith(b"\xff\xd9")
    last_sos = data.rfind(b"\xff\xda")
    # The table the last scan uses sits right before it (libjpeg writes one DHT per progressive scan).
    last_dht = data.rfind(b"\xff\xc4", 0, last_sos)
    scan = data[last_dht:-2]
    existing = data.count(b"\xff\xda")
    return data[:-2] + scan * (scans - existing) + b"\xff\xd9"
