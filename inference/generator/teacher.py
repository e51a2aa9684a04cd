"""What the learned generator is taught: the serving aging layers' renderings of a consented photo.

Training only: it calls the serving path, and nothing that serves imports it.
"""

from __future__ import annotations

import numpy as np

from inference.serving.faces import Face, registered_crop
from inference.serving.transform import transform_photo

TEACHER_OFFSETS = (-30.0, -15.0, 15.0, 30.0)  # years from the current age the layers render for the generator


def teacher_pairs(image: np.ndarray, face: Face, current_age: float, size: int,
                  offsets: tuple[float, ...] = TEACHER_OFFSETS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the learned generator is taught from one consented photo: the registered face (size, size, 3),
    the aging layers' rendering of it at a few target ages (K, size, size, 3), and those ages (K,).

    The teacher is the layers, never an age estimator: the generator learns to do what they do, on real faces.
    """
    ages = np.clip(np.array([current_age + o for o in offsets], np.float32), 5.0, 95.0)
    renders = [registered_crop(transform_photo(image, float(a), face=face, current_age=current_age).image,
                               face, size) for a in ages]
    return registered_crop(image, face, size), np.stack(renders), ages
