"""Synthetic faces assembled for training and tests: identities at several ages, portraits in photos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inference.generator.synthetic.identity import Identity
from inference.generator.synthetic.portrait import render

DETECTOR_JITTER = 0.1  # how much a face detector's crop moves and scales the face (zoom, and half as shift)


@dataclass(frozen=True)
class SyntheticFaces:
    """Identities rendered at several ages each."""

    images: np.ndarray  # (N, A, H, W, 3) uint8 RGB
    ages: np.ndarray  # (N, A) float32 years
    identities: list[Identity]


def make_dataset(n_identities: int, ages: Sequence[float], seed: int, *, size: int = 128,
                 age_jitter: float = 0.0, framing_jitter: float = 0.0) -> SyntheticFaces:
    """Render `n_identities` identities drawn from `seed`, each at every age in `ages`.

    `age_jitter` (years) spreads each age uniformly so a model sees continuous ages; `framing_jitter` moves
    and scales each identity's face in the frame (the same at all its ages) the way a detector's crop varies.
    """
    rng = np.random.default_rng(seed)
    identities = [Identity.from_seed(int(s)) for s in rng.integers(0, 2**31 - 1, n_identities)]
    grid = np.asarray(ages, np.float32)
    all_ages = np.clip(grid + rng.uniform(-age_jitter, age_jitter, (n_identities, len(grid))), 1.0, 100.0)
    images = np.empty((n_identities, len(grid), size, size, 3), np.uint8)
    for i, identity in enumerate(identities):
        zoom = 1.0 + rng.uniform(-framing_jitter, framing_jitter)
        shift = (
            rng.uniform(-framing_jitter, framing_jitter) / 2,
            rng.uniform(-framing_jitter, framing_jitter) / 2,
        )
        for j, age in enumerate(all_ages[i]):
            images[i, j] = render(identity, float(age), size, zoom=zoom, shift=shift)
    return SyntheticFaces(images=images, ages=all_ages.astype(np.float32), identities=identities)


def backdrop(height: int, width: int, seed: int) -> np.ndarray:
    """A blurred 'room' behind the subject: a gradient with a few soft shapes, (H, W, 3) uint8 RGB."""
    rng = np.random.default_rng([seed, 11])
    top, bottom = rng.uniform(0.2, 0.9, 3), rng.uniform(0.1, 0.8, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    room = np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3)).astype(np.float32).copy()
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 10, width // 3)), int(rng.integers(height // 10, height // 3))
        cv2.rectangle(room, (x0, y0), (x0 + w, y0 + h), tuple(float(v) for v in rng.uniform(0.1, 0.9, 3)), -1)
    blurred = cv2.GaussianBlur(room, (0, 0), sigmaX=max(width, height) / 150)
    return np.clip(blurred * 255.0 + 0.5, 0, 255).astype(np.uint8)


def place_in_photo(identity: Identity, age: float, *, photo_size: tuple[int, int] = (480, 640),
                   face_size: int = 200, center: tuple[int, int] | None = None,
                   seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 'photo' (H, W, 3) uint8 RGB with the portrait at `center` (x, y), and its box (x, y, w, h)."""
    height, width = photo_size
    photo = backdrop(height, width, seed)
    cx, cy = center if center is not None else (width // 2, height // 2)
    x0, y0 = cx - face_size // 2, cy - face_size // 2
    if x0 < 0 or y0 < 0 or x0 + face_size > width or y0 + face_size > height:
        raise ValueError(f"a {face_size}px face at {center} does not fit a {width}x{height} photo")
    region = photo[y0:y0 + face_size, x0:x0 + face_size]
    photo[y0:y0 + face_size, x0:x0 + face_size] = render(identity, age, face_size, background=region)
    return photo, (x0, y0, face_size, face_size)
