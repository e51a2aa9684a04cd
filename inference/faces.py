"""Find the largest face, crop and align it for the generator, and paste the change back feathered."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# The cascades bundled with opencv-python(-headless) 4.x; cv2's type stubs do not declare cv2.data.
FACE_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
EYE_CASCADE = cv2.data.haarcascades + "haarcascade_eye.xml"  # type: ignore[attr-defined]
# Framing, measured on the synthetic faces so that crops look like the training set: the face box spans brows to
# mouth and the crop adds hair and chin; with eyes found, they sit EYE_SPAN apart at height EYE_LINE of the crop.
CROP_SCALE = 1.7  # crop side / face box side
EYE_SPAN = 0.207  # distance between the eye centres / crop side
EYE_LINE = 0.435  # height of the eye line / crop side
EYE_SPAN_IN_BOX = (0.25, 0.5)  # plausible eye distance / face box side; outside it an "eye" is something else
MIN_FACE = 40  # pixels; smaller detections are noise at any upload size
DETECT_SIDE = 1024  # photos are searched at most this large, faces for eyes at most EYE_SEARCH wide:
EYE_SEARCH = 256  # the cascades' cost grows with the pixels, their accuracy does not
MAX_TILT = 25.0  # degrees; an eye pair tilted more than this is a false eye detection
FEATHER = 0.02  # mask blur sigma as a fraction of the crop side

Run = Callable[[np.ndarray, float], np.ndarray]  # (face crop (S, S, 3) uint8, target age) -> same shape


class NoFaceFound(Exception):
    """The photo has no detectable face; the transformation job fails with this reason."""

    reason = "no_face"

    def __init__(self, message: str = "No face was found in the photo.") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class FaceBox:
    """A detection in photo pixels."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Crop:
    """An aligned face crop and where it came from."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    matrix: np.ndarray  # (2, 3) affine from photo pixels to crop pixels


_local = threading.local()  # CascadeClassifier is not safe to share between threads: one per thread


def _cascade(path: str) -> cv2.CascadeClassifier:
    """This thread's classifier for `path`, loaded once."""
    cache: dict[str, cv2.CascadeClassifier] = _local.__dict__.setdefault("cascades", {})
    if path not in cache:
        cache[path] = cv2.CascadeClassifier(path)
        if cache[path].empty():
            raise RuntimeError(f"could not load the cascade {path}: is opencv-python-headless 4.x installed?")
    return cache[path]


def _check(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError("expected an RGB image as a uint8 array of shape (H, W, 3)")


def _shrunk(gray: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """`gray` scaled down so its longer side is at most `side`, and the scale used."""
    scale = min(1.0, side / max(gray.shape))
    if scale == 1.0:
        return gray, scale
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def detect_faces(image: np.ndarray) -> list[FaceBox]:
    """All frontal faces in an RGB uint8 image (H, W, 3), largest first."""
    _check(image)
    gray, scale = _shrunk(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), DETECT_SIDE)
    found = _cascade(FACE_CASCADE).detectMultiScale(gray, scaleFactor=1.05, minNeighbors=3,
                                                    minSize=(MIN_FACE, MIN_FACE))
    boxes = [FaceBox(*(round(v / scale) for v in (x, y, w, h))) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: b.w * b.h, reverse=True)


def largest_face(image: np.ndarray) -> FaceBox:
    """The largest face, or NoFaceFound."""
    faces = detect_faces(image)
    if not faces:
        raise NoFaceFound()
    return faces[0]


def locate_eyes(image: np.ndarray, box: FaceBox) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Centres of the eye on the image's left and on its right, in photo pixels; None unless plausible."""
    top = image[box.y:box.y + int(box.h * 0.6), box.x:box.x + box.w]
    gray, scale = _shrunk(cv2.cvtColor(top, cv2.COLOR_RGB2GRAY), EYE_SEARCH)
    width = round(box.w * scale)
    eyes = _cascade(EYE_CASCADE).detectMultiScale(gray, scaleFactor=1.05, minNeighbors=3,
                                                  minSize=(width // 10, width // 10), maxSize=(width // 3, width // 3))
    found = [((x + w / 2) / scale, (y + h / 2) / scale, w) for x, y, w, h in eyes]
    left = [e for e in found if e[0] < box.w / 2]
    right = [e for e in found if e[0] >= box.w / 2]
    if not left or not right:
        return None
    (lx, ly, _), (rx, ry, _) = max(left, key=lambda e: e[2]), max(right, key=lambda e: e[2])
    tilt = math.degrees(math.atan2(ry - ly, rx - lx))
    span = math.hypot(rx - lx, ry - ly) / box.w
    if abs(tilt) > MAX_TILT or not EYE_SPAN_IN_BOX[0] <= span <= EYE_SPAN_IN_BOX[1]:
        return None  # a nostril or an eyebrow taken for an eye: a plain square crop is safer
    return (box.x + lx, box.y + ly), (box.x + rx, box.y + ry)


def crop_face(image: np.ndarray, box: FaceBox, size: int, *, align: bool = True) -> Crop:
    """A (size, size) crop framed like the training faces: level eyes at a fixed place if found, else the box."""
    _check(image)
    eyes = locate_eyes(image, box) if align else None
    if eyes is None:
        tilt, side, (cx, cy) = 0.0, box.w * CROP_SCALE, (box.x + box.w / 2, box.y + box.h / 2)
    else:
        (lx, ly), (rx, ry) = eyes
        angle = math.atan2(ry - ly, rx - lx)
        tilt, side = math.degrees(angle), math.hypot(rx - lx, ry - ly) / EYE_SPAN
        # The crop centre lies below the eye midpoint along the face's own vertical axis (-sin, cos).
        drop = (0.5 - EYE_LINE) * side
        cx, cy = (lx + rx) / 2 - math.sin(angle) * drop, (ly + ry) / 2 + math.cos(angle) * drop
    # Photo -> crop: rotate by the tilt about the face centre, scale the side to `size`, centre it.
    matrix = cv2.getRotationMatrix2D((cx, cy), tilt, size / side)
    matrix[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
    # Sample from a pyramid level near the crop's scale so large faces are not aliased.
    levels = max(0, int(math.log2(side / size)))
    source = image
    for _ in range(levels):
        source = cv2.pyrDown(source)
    sampled = matrix.copy()
    sampled[:, :2] *= 2**levels  # level-k pixels -> photo pixels -> crop pixels
    face = cv2.warpAffine(source, sampled, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Crop(image=face, matrix=matrix)


def feather_mask(size: int) -> np.ndarray:
    """Where the generator may change the crop: a disc over face and hair, blurred, zero at the border.

    (size, size) float32 in [0, 1].
    """
    ellipse = np.zeros((size, size), np.float32)  # 3 sigmas clear of the top edge, more of the others
    cv2.ellipse(ellipse, (size // 2, round(size * 0.48)), (round(size * 0.42), round(size * 0.40)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(ellipse, (0, 0), sigmaX=FEATHER * size)
    edge = max(1, size // 64)
    mask[:edge], mask[-edge:], mask[:, :edge], mask[:, -edge:] = 0, 0, 0, 0
    return mask


def paste_back(image: np.ndarray, crop: Crop, generated: np.ndarray) -> np.ndarray:
    """Add the generator's change (generated - crop) to the photo under the feathered mask.

    Only the change is mapped back, so a large photo keeps its own detail wherever the model changed nothing;
    pixels outside the mask are returned bit-identical.
    """
    size = crop.image.shape[0]
    delta = generated.astype(np.float32) - crop.image.astype(np.float32)  # (S, S, 3)
    inverse = cv2.invertAffineTransform(crop.matrix)  # crop pixels -> photo pixels
    corners = cv2.transform(np.array([[[0, 0], [size, 0], [0, size], [size, size]]], np.float32), inverse)[0]
    height, width = image.shape[:2]
    x0, y0 = (max(0, int(math.floor(v))) for v in corners.min(axis=0))
    x1, y1 = min(width, int(math.ceil(corners[:, 0].max())) + 1), min(height, int(math.ceil(corners[:, 1].max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return image.copy()
    to_roi = crop.matrix.copy()
    to_roi[:, 2] += to_roi[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixels -> crop pixels
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    roi_size = (x1 - x0, y1 - y0)
    change = cv2.warpAffine(delta, to_roi, roi_size, flags=flags, borderValue=(0.0, 0.0, 0.0))
    weight = cv2.warpAffine(feather_mask(size), to_roi, roi_size, flags=flags, borderValue=0.0)[..., None]
    out = image.copy()
    region = out[y0:y1, x0:x1]
    blended = np.clip(region.astype(np.float32) + weight * change + 0.5, 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(weight > 0, blended, region)
    return out


def transform_photo(image: np.ndarray, target_age: float, run: Run, *, size: int = 128) -> np.ndarray:
    """Age the largest face in an RGB photo (H, W, 3) uint8 to `target_age`; NoFaceFound if there is none.

    `run` maps a (size, size, 3) uint8 face crop and the age to the generated crop: the engine's run_one.
    """
    crop = crop_face(image, largest_face(image), size)
    generated = run(crop.image, float(target_age))
    if generated.shape != crop.image.shape or generated.dtype != np.uint8:
        raise ValueError(f"run returned {generated.dtype} {generated.shape}, expected uint8 {crop.image.shape}")
    return paste_back(image, crop, generated)
