"""Seeded procedural faces: one identity rendered at any age, exact ground truth for training and tests.

identity: who a face is and its signs of age; painter: drawing in face coordinates; portrait: the face
painted at one age; dataset: identities at several ages, and portraits placed in photos.
"""

from inference.generator.synthetic.dataset import (
    DETECTOR_JITTER,
    SyntheticFaces,
    backdrop,
    make_dataset,
    place_in_photo,
)
from inference.generator.synthetic.identity import AgeSigns, Identity
from inference.generator.synthetic.portrait import render

__all__ = ["DETECTOR_JITTER", "AgeSigns", "Identity", "SyntheticFaces", "backdrop", "make_dataset",
           "place_in_photo", "render"]
