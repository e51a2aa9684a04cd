"""Who a synthetic face is (an Identity, fixed by a seed), and how strongly each sign of age shows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

NOISE_GRID = 64  # resolution of the per-identity texture fields, in face coordinates

# Palettes, RGB in [0, 1].
SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.74, 0.60], [0.84, 0.64, 0.49], [0.72, 0.52, 0.38],
     [0.58, 0.40, 0.28], [0.45, 0.30, 0.21]], dtype=np.float32)
HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.38, 0.24, 0.13], [0.62, 0.47, 0.26],
     [0.80, 0.66, 0.40], [0.55, 0.22, 0.10]], dtype=np.float32)
IRIS_COLOURS = np.array(
    [[0.28, 0.17, 0.09], [0.15, 0.10, 0.06], [0.25, 0.42, 0.60], [0.30, 0.45, 0.30]], dtype=np.float32)
HAIR_STYLES = ("short", "long", "bob", "curly")


def smoothstep(edge0: float, edge1: float, x: float) -> float:
    """0 below edge0, 1 above edge1, a smooth monotonic ramp between (edges may be reversed)."""
    t = min(max((x - edge0) / (edge1 - edge0), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


@dataclass(frozen=True)
class Identity:
    """Everything about a face that does not change with age; lengths are fractions of the image side."""

    seed: int
    face_width: float  # half-width of the face at the cheekbones
    face_length: float  # half-length from the face centre to the chin
    jaw: float  # width of the lower face relative to the cheeks (lower = pointier)
    skin: tuple[float, float, float]
    eye_spacing: float  # half the distance between the eye centres
    eye_size: float  # half-width of one eye
    eye_height: float  # eye line relative to the face centre (negative = up)
    iris: tuple[float, float, float]
    brow_thickness: float
    brow_arch: float
    nose_length: float
    nose_width: float
    mouth_width: float  # half-width of the mouth
    lip_fullness: float
    hair: tuple[float, float, float]
    hair_style: str
    hair_volume: float
    grey_onset: float  # age in years when greying starts
    recession: float  # 0..1, how far the hairline recedes by old age
    backdrop: tuple[float, float, float]
    shirt: tuple[float, float, float]

    @classmethod
    def from_seed(cls, seed: int) -> Identity:
        """Sample an identity; the same seed always gives the same person."""
        rng = np.random.default_rng(seed)

        def pick(palette: np.ndarray, jitter: float) -> tuple[float, float, float]:
            return _rgb(np.clip(palette[rng.integers(len(palette))] + rng.normal(0.0, jitter, 3), 0.0, 1.0))

        return cls(
            seed=seed,
            face_width=rng.uniform(0.235, 0.275),
            face_length=rng.uniform(0.30, 0.34),
            jaw=rng.uniform(0.55, 0.80),
            skin=pick(SKIN_TONES, 0.025),
            eye_spacing=rng.uniform(0.095, 0.112),
            eye_size=rng.uniform(0.040, 0.048),
            eye_height=rng.uniform(-0.045, -0.025),
            iris=pick(IRIS_COLOURS, 0.03),
            brow_thickness=rng.uniform(0.010, 0.016),
            brow_arch=rng.uniform(0.006, 0.018),
            nose_length=rng.uniform(0.11, 0.14),
            nose_width=rng.uniform(0.032, 0.044),
            mouth_width=rng.uniform(0.065, 0.085),
            lip_fullness=rng.uniform(0.013, 0.020),
            hair=pick(HAIR_COLOURS, 0.03),
            hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
            hair_volume=rng.uniform(0.02, 0.05),
            grey_onset=rng.uniform(28.0, 48.0),
            recession=rng.uniform(0.15, 1.0),
            backdrop=_rgb(rng.uniform(0.25, 0.9, 3)),
            shirt=_rgb(rng.uniform(0.05, 0.85, 3)),
        )


@dataclass(frozen=True)
class AgeSigns:
    """How strongly each visible sign of age shows, each in [0, 1] and monotonic in age."""

    youth: float  # 1 for a toddler, 0 from about 18: rounder face, bigger eyes, smaller nose and mouth
    grey: float  # fraction of the greying ramp reached
    recession: float  # how far the hairline has moved back
    wrinkles: float  # forehead lines, crow's feet, nasolabial folds
    sag: float  # drooping eyelids, jowls, mouth corners
    spots: float  # age spots and skin roughness

    @classmethod
    def at(cls, identity: Identity, age: float) -> AgeSigns:
        """The signs of one identity at one age."""
        return cls(
            youth=smoothstep(18.0, 1.0, age),
            grey=smoothstep(identity.grey_onset, identity.grey_onset + 40.0, age),
            recession=identity.recession * smoothstep(22.0, 85.0, age),
            wrinkles=smoothstep(24.0, 85.0, age),
            sag=smoothstep(40.0, 95.0, age),
            spots=smoothstep(45.0, 95.0, age),
        )


@lru_cache(maxsize=256)
def texture_fields(seed: int) -> np.ndarray:
    """Three fixed noise fields per identity in face coordinates: (3, G, G) float32 in [0, 1].

    0: hair greying order (streaky, so grey comes in strands), 1: skin texture, 2: age-spot sites.
    Keeping them fixed per identity means one person greys and spots the same way at every age.
    """
    rng = np.random.default_rng([seed, 7])
    g = NOISE_GRID
    streaks = cv2.resize(rng.random((g // 8, g), dtype=np.float32), (g, g), interpolation=cv2.INTER_LINEAR)
    texture = rng.random((g, g), dtype=np.float32)
    sites = cv2.resize(rng.random((g // 2, g // 2), dtype=np.float32), (g, g), interpolation=cv2.INTER_CUBIC)
    return np.stack([streaks, texture, np.clip(sites, 0.0, 1.0)])
