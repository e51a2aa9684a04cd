"""The face's working window and its regions (skin, hair, eyes, brows, lips), all placed by the face mesh.

Aging works on a window of the photo around face and hair, at most WINDOW.work_unit pixels between the eyes: a
large photo is processed at that scale and only the change is scaled back, so the photo keeps its detail.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.serving.aging_params import HAIR_MASK, LIKENESS, MASKS, WINDOW
from inference.serving.faces import Face, person_mask
from inference.serving.landmarks import (
    BROW_TOP,
    CHEEK_SAMPLES,
    CHIN,
    EYE_OUTER,
    FACE_OVAL,
    FOREHEAD_TOP,
    LEFT_BROW,
    LEFT_EYE_RING,
    LIPS,
    RIGHT_BROW,
    RIGHT_EYE_RING,
)


@dataclass(frozen=True)
class Window:
    """A crop of the photo around face and hair, maybe scaled down, with the mesh and masks in its pixels."""

    x0: int  # where the window sits in the photo (before scaling)
    y0: int
    x1: int
    y1: int
    scale: float  # window pixels per photo pixel (<= 1)
    image: np.ndarray  # (h, w, 3) uint8 RGB
    landmarks: np.ndarray  # (468, 2) float32 in window pixels
    unit: float  # eye distance in window pixels
    face: np.ndarray  # (h, w) float32: inside the face oval (forehead to chin, cheek to cheek)
    skin: np.ndarray  # face minus eyes, brows and lips, feathered inward
    hair: np.ndarray  # head hair from the person mask, above the chin, outside the face
    hair_inner: np.ndarray  # the hair faded in from its own edge: darkening leaves its outermost wisps be
    features: np.ndarray  # eyes, brows and lips: kept as they are
    allowed: np.ndarray  # where anything may change (face or hair), zero on and outside its edge


def _fill(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(points * 4).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=2)
    return mask


def _grow(mask: np.ndarray, pixels: float) -> np.ndarray:
    """Dilate (pixels > 0) or erode (< 0) a mask by a disc."""
    r = max(1, round(abs(pixels)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask, disc) if pixels > 0 else cv2.erode(mask, disc)


def _feather_inside(mask: np.ndarray, width: float) -> np.ndarray:
    """Soften a mask's edge inward: the result is 0 wherever `mask` is, and fades in over `width` pixels."""
    inner = _grow((mask > 0.5).astype(np.float32), -width / 2)
    return cv2.GaussianBlur(inner, (0, 0), sigmaX=max(0.5, width / 4)) * (mask > 0.5)


def make_window(image: np.ndarray, face: Face) -> Window:
    """Cut the window around `face`, scaled to at most WINDOW.work_unit between the eyes, and its masks."""
    unit, margin, m = face.eye_distance, WINDOW.margin, MASKS
    lo, hi = face.landmarks.min(0), face.landmarks.max(0)
    h, w = image.shape[:2]
    x0 = max(0, int(lo[0] - margin[0] * unit))
    y0 = max(0, int(lo[1] - margin[1] * unit))
    x1 = min(w, int(hi[0] + margin[2] * unit) + 1)
    y1 = min(h, int(hi[1] + margin[3] * unit) + 1)
    scale = min(1.0, WINDOW.work_unit / unit)
    crop = image[y0:y1, x0:x1]
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    window = crop if scale == 1.0 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    points = (face.landmarks - np.array([x0, y0], np.float32)) * scale
    shape = window.shape[:2]
    unit *= scale

    face_mask = _fill(shape, points[FACE_OVAL])
    features = np.maximum.reduce([
        _grow(_fill(shape, points[RIGHT_EYE_RING]), m.eye_margin * unit),
        _grow(_fill(shape, points[LEFT_EYE_RING]), m.eye_margin * unit),
        _grow(_fill(shape, points[RIGHT_BROW]), m.brow_margin * unit),
        _grow(_fill(shape, points[LEFT_BROW]), m.brow_margin * unit),
        _grow(_fill(shape, points[LIPS]), m.lip_margin * unit)])
    lab = cv2.cvtColor(window, cv2.COLOR_RGB2LAB).astype(np.float32)
    skin_like = _skin_like(lab, points, unit)
    hair = _hair_mask(image, face, (x0, y0, x1, y1), scale, lab, points, face_mask, skin_like, unit)
    # A fringe over the forehead lies inside the face oval: it is hair there, not skin.
    skin = _feather_inside(np.clip(face_mask - features - (hair > m.fringe_present), 0, 1),
                           m.skin_feather * unit)
    # The feather sits outside the hair's edge, so its outermost strands grey with the rest (no dark rim);
    # the hair mask itself still ends at the hair, so the backdrop beyond is left as it was.
    present = (hair > m.hair_present).astype(np.float32)
    allowed = _feather_inside(np.maximum(face_mask, _grow(present, m.hair_grow * unit)),
                              m.allowed_feather * unit)
    inner = _feather_inside(present, m.hair_inner_feather * unit)
    return Window(x0=x0, y0=y0, x1=x1, y1=y1, scale=scale, image=window, landmarks=points, unit=unit,
                  face=face_mask, skin=skin, hair=hair * allowed, hair_inner=hair * allowed * inner,
                  features=features, allowed=allowed)


def _likeness(lab: np.ndarray, sample: np.ndarray, channels: slice = slice(None)) -> np.ndarray:
    """How close each pixel's colour is to a sample's (h, w) in [0, 1], in the given Lab channels: 1 within
    about 1.25 (floored) standard deviations of its mean, 0 beyond 3.75 (LIKENESS)."""
    k = LIKENESS
    mean = sample.mean(0)[channels]
    std = (sample.std(0) + np.array(k.std_floor, np.float32))[channels]
    return np.clip(k.full - np.sqrt((((lab[..., channels] - mean) / (k.scale * std)) ** 2).sum(-1)), 0.0, 1.0)


def _skin_like(lab: np.ndarray, points: np.ndarray, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """How close each pixel is to the cheeks' colour (h, w) in [0, 1]: in Lab, and in hue alone (a, b).

    Lab tells bare skin (a forehead above the mesh, ears, neck) from hair around the head; inside the face
    oval shade darkens skin under a fringe, so there hue alone decides, and only hair of another hue counts.
    """
    samples = []
    for index in CHEEK_SAMPLES:  # the cheeks are bare skin on nearly every face: no fringe, beard rarely
        x, y = np.round(points[index]).astype(int)
        r = max(2, round(LIKENESS.cheek_sample * unit))
        samples.append(lab[max(0, y - r):y + r, max(0, x - r):x + r].reshape(-1, 3))
    sample = np.concatenate(samples)
    if len(sample) < LIKENESS.min_samples:
        none = np.zeros(lab.shape[:2], np.float32)
        return none, none
    return _likeness(lab, sample), _likeness(lab, sample, slice(1, 3))


def _hair_mask(image: np.ndarray, face: Face, box: tuple[int, int, int, int], scale: float, lab: np.ndarray,
               points: np.ndarray, face_mask: np.ndarray, skin_like: tuple[np.ndarray, np.ndarray],
               unit: float) -> np.ndarray:
    """Person mask minus the face, above the chin, near the head: the hair (and, honestly, any hat)."""
    x0, y0, x1, y1 = box
    shape, k = lab.shape[:2], HAIR_MASK
    prob, (px, py) = person_mask(image, face)
    full = np.zeros((y1 - y0, x1 - x0), np.float32)
    # Paste the segmentation (photo pixels from (px, py)) into the window's photo-pixel frame.
    sx0, sy0 = max(x0, px), max(y0, py)
    sx1, sy1 = min(x1, px + prob.shape[1]), min(y1, py + prob.shape[0])
    if sx0 < sx1 and sy0 < sy1:
        full[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = prob[sy0 - py:sy1 - py, sx0 - px:sx1 - px]
    person = full if scale == 1.0 else cv2.resize(full, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    # Outside the face oval, or inside it above the brows (a fringe); never the eyes, nose or mouth.
    like_skin, like_skin_hue = skin_like
    brows = float(points[BROW_TOP][:, 1].min())
    outside = 1.0 - _grow(face_mask, k.oval_grow * unit)
    crown = _like_crown(lab, points, person, like_skin, unit)
    # Inside the oval shade darkens skin, so hue decides there; hair coloured like the crown counts too (a
    # fringe whose hue is close to skin's, as fair hair's is).
    fringe_hair = 1.0 - like_skin_hue if crown is None else np.maximum(1.0 - like_skin_hue, crown)
    fringe_top = brows - k.fringe_above_brows * unit
    fringe = (1.0 - outside) * (np.arange(shape[0]) < fringe_top)[:, None] * fringe_hair
    away = cv2.distanceTransform((face_mask < 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    near = (away < k.reach * unit).astype(np.float32)
    # "Above the chin" along the face's own vertical: project on the eyes-to-chin direction.
    eyes = (points[EYE_OUTER[0]] + points[EYE_OUTER[1]]) / 2
    down = points[CHIN] - eyes
    down /= np.linalg.norm(down) + 1e-6
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    depth = (xs - eyes[0]) * down[0] + (ys - eyes[1]) * down[1]
    chin = float((points[CHIN] - eyes) @ down)
    above = np.clip((k.chin * chin - depth) / (k.chin_fade * unit), 0.0, 1.0)  # fades out above the chin
    head = (person > k.probability).astype(np.float32) * near * above
    # Ears and neck sit beside and below the face: only there must hair also look like the crown's (above the
    # brows a mixed edge pixel against the backdrop would fail the test and leave a rim of unchanged strands).
    rows = np.arange(shape[0], dtype=np.float32)
    beside = np.clip((rows - brows) / (k.beside_fade * unit), 0.0, 1.0)[:, None]
    by_colour = 1.0 if crown is None else 1.0 - beside * (1.0 - crown)
    hair = head * np.maximum(outside, fringe) * (1.0 - like_skin) * by_colour
    return cv2.GaussianBlur(hair, (0, 0), sigmaX=max(k.blur_min, k.blur * unit))


def _like_crown(lab: np.ndarray, points: np.ndarray, person: np.ndarray, like_skin: np.ndarray,
                unit: float) -> np.ndarray | None:
    """Whether each pixel is coloured more like the hair on the crown than like skin (h, w) in [0, 1].

    A shaded ear or neck is not skin-coloured in Lab, yet is no hair: its hue is the skin's. The crown (a band
    above the top of the forehead) shows the hair's own colour on nearly every head with hair; where it shows
    too little (bald, a hat cut off by the frame) there is no answer (None).
    """
    top, k = points[FOREHEAD_TOP], HAIR_MASK
    x0, x1 = int(top[:, 0].min()), int(top[:, 0].max()) + 1
    y1 = int(top[:, 1].min() - k.crown_gap * unit)
    y0 = max(0, int(y1 - k.crown_height * unit))
    band = (slice(y0, max(y0, y1)), slice(max(0, x0), max(0, x1)))
    crown = (person[band] > k.probability) & (like_skin[band] < k.crown_not_skin)
    if crown.sum() < k.crown_min_pixels:
        return None
    like_hair = _likeness(lab, lab[band][crown])
    return np.clip(0.5 + k.crown_contrast * (like_hair - like_skin), 0.0, 1.0)  # even odds where alike
