"""A photo in, the same photo with its face aged out: geometry, current age, aging layers, paste-back.

Only the change is pasted back, at the photo's own resolution, and only inside the face-and-hair mask:
pixels outside it come back bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.serving.aging import age_window
from inference.serving.apparent_age import estimate_age
from inference.serving.faces import Face, check_image, find_face
from inference.serving.regions import Window, make_window


@dataclass(frozen=True)
class Transformed:
    image: np.ndarray  # (H, W, 3) uint8, the whole photo
    face: Face
    current_age: float  # the estimator's reading of the input face


def transform_photo(image: np.ndarray, target_age: float, *, face: Face | None = None,
                    current_age: float | None = None) -> Transformed:
    """Age the most confident face in an RGB photo to `target_age` years; NoFaceFound if there is none."""
    check_image(image)
    if not np.isfinite(target_age):
        raise ValueError(f"target_age must be a finite number of years, got {target_age!r}")
    face = face or find_face(image)
    current = estimate_age(image, face) if current_age is None else current_age
    window = make_window(image, face)
    aged = age_window(window, current, float(target_age))
    return Transformed(image=paste_back(image, window, aged), face=face, current_age=current)


def paste_back(image: np.ndarray, window: Window, aged: np.ndarray) -> np.ndarray:
    """Add (aged - window) to the photo at full resolution inside the allowed mask; the rest stays as is."""
    delta = (aged - window.image.astype(np.float32)) * window.allowed[..., None]
    allowed = window.allowed
    size = (window.x1 - window.x0, window.y1 - window.y0)
    if window.scale != 1.0:  # the change was made at the working scale: bring it (not the image) back up
        delta = cv2.resize(delta, size, interpolation=cv2.INTER_CUBIC)
        allowed = cv2.resize(allowed, size, interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    region = out[window.y0:window.y1, window.x0:window.x1]
    changed = np.clip(region.astype(np.float32) + delta + 0.5, 0, 255).astype(np.uint8)
    out[window.y0:window.y1, window.x0:window.x1] = np.where((allowed > 0)[..., None], changed, region)
    return out
