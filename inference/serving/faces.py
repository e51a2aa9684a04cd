"""Real face geometry: BlazeFace detection, the 468-point face mesh and a person mask, from shipped TFLite.

Photos are RGB uint8 arrays (H, W, 3); every coordinate returned is in photo pixels, x then y. The face that
will change is the detector's most confident one, never the largest box: a shuttle is large, not a face.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from inference.serving import assets
from inference.serving.landmarks import EYE_OUTER, LEFT_EYE_RING, LIPS, RIGHT_EYE_RING

DETECT_SIDE = 128  # BlazeFace short-range input
MESH_SIDE = 192  # face mesh input
SEGMENT_SIDE = 256  # selfie segmentation input
MIN_SCORE = 0.6  # detector confidence to call something a face (the review saw 0.92 on a face, 0.46 on a cup)
MIN_MESH_SCORE = 0.5  # the mesh's own face-presence flag, a second opinion on every detection
NMS_IOU = 0.3
MESH_ROI_SCALE = 1.5  # the mesh reads a square 1.5x the face's extent, as mediapipe's graph feeds it
MIN_FACE_PX = 24  # a face narrower than this in the photo carries too little to change
MAX_FACES = 8  # detections the mesh checks (a group photo counts as "more than one" either way)
MAX_WINDOWS = 12  # detector passes a photo may take (about 5 ms each here)
# A photo longer than this many times its short side is also searched in squares along its long side
TILE_ASPECT = 1.3
FINE_TIER_MIN_SIDE = 800  # px of short side from which half-size windows are searched when nothing is found
PERSON_REACH = 3.2  # the person mask's window, in face heights: room for hair without losing its strands
# The registered frame, as fractions of its side: right and left eye centres level at 40% height, 30% of the
# side apart, the mouth below them (what the learned generator and DP fine-tuning see)
REGISTERED_FRAME = np.array([[0.35, 0.40], [0.65, 0.40], [0.5, 0.72]], np.float32)


class NoFaceFound(Exception):
    """The photo has no face the detector and the mesh both accept."""

    def __init__(self, message: str = "No face was found in the photo.") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class FaceBox:
    """A detection box in photo pixels."""

    x: int
    y: int
    w: int
    h: int

    def to_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class Detection:
    score: float
    box: FaceBox
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose tip, mouth, right ear, left ear (subject's)


@dataclass(frozen=True)
class Face:
    """One face with its mesh: what the masks, the age reading and the aging are placed by."""

    detection: Detection
    landmarks: np.ndarray  # (468, 2) float32 photo pixels, mediapipe's canonical mesh order
    faces_in_photo: int  # how many faces the detector accepted in the whole photo

    @property
    def eye_distance(self) -> float:
        """Distance between the eye centres in photo pixels: the face's own unit of length."""
        right, left = self.landmarks[RIGHT_EYE_RING].mean(0), self.landmarks[LEFT_EYE_RING].mean(0)
        return float(np.hypot(*(left - right)))


def _anchors() -> np.ndarray:
    """BlazeFace short-range anchor centres (896, 2) in [0, 1]: strides 8 and 16, 2 and 6 anchors a cell."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = DETECT_SIDE // stride
        for y in range(cells):
            for x in range(cells):
                centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
    return np.array(centres, np.float32)


ANCHORS = _anchors()
_local = threading.local()  # cv2.dnn nets are not safe to share between threads: one set per thread


def _net(asset: assets.Asset) -> cv2.dnn.Net:
    nets: dict[str, cv2.dnn.Net] = _local.__dict__.setdefault("nets", {})
    if asset.name not in nets:
        with assets.NET_IMPORT_LOCK:
            nets[asset.name] = cv2.dnn.readNetFromTFLite(assets.path(asset))
    return nets[asset.name]


def _forward(asset: assets.Asset, x: np.ndarray) -> list[np.ndarray]:
    """Run a shipped TFLite net on one (S, S, 3) float32 image: its outputs in declared order."""
    net = _net(asset)
    net.setInput(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    return list(net.forward(net.getUnconnectedOutLayersNames()))


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is an RGB uint8 array (H, W, 3)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3):
        raise ValueError("expected an RGB image as a uint8 array of shape (H, W, 3)")


def _tiles(h: int, w: int) -> list[list[tuple[int, int, int]]]:
    """Square windows (x, y, side) to search, in tiers: the whole photo letterboxed and squares along a long
    side; then, in a large photo, half-size squares with overlap. A face small against the whole photo is
    large enough in some window for the short-range detector (it wants faces of a fifth of its input or
    more); the finer tier is searched only when the coarse one finds nothing, so a selfie costs 1 to 3 passes.
    """
    short, long = min(h, w), max(h, w)
    tiers = [[(0, 0, long)] + (_squares(h, w, short) if long > TILE_ASPECT * short else [])]
    if short >= FINE_TIER_MIN_SIDE:
        tiers.append(_squares(h, w, short // 2))
    return [list(dict.fromkeys(tier))[:MAX_WINDOWS] for tier in tiers]


def _squares(h: int, w: int, side: int) -> list[tuple[int, int, int]]:
    """Windows of `side` covering the photo, overlapping by half."""
    step = max(1, side // 2)
    return [(min(x, max(0, w - side)), min(y, max(0, h - side)), side)
            for y in range(0, max(1, h - side + step), step) for x in range(0, max(1, w - side + step), step)]


Hit = tuple[list[float], float, np.ndarray]  # a raw detection: box (x, y, w, h), score, keypoints (6, 2)


def _detect_in(small: np.ndarray, scale: float, x0: int, y0: int) -> list[Hit]:
    """BlazeFace on one DETECT_SIDE window of a photo resized by `scale`, whose corner is at photo (x0, y0)
    (zero-padded past the photo's edge): (box, score, keypoints) in photo pixels."""
    sx, sy = round(x0 * scale), round(y0 * scale)
    crop = small[sy:sy + DETECT_SIDE, sx:sx + DETECT_SIDE]
    square = np.zeros((DETECT_SIDE, DETECT_SIDE, 3), np.float32)
    square[:crop.shape[0], :crop.shape[1]] = crop
    scores, raw = _forward(assets.FACE_DETECTOR, square / 127.5 - 1.0)  # (1, 896, 1), (1, 896, 16)
    scores = 1.0 / (1.0 + np.exp(-np.clip(scores[0, :, 0], -80.0, 80.0)))
    keep = np.flatnonzero(scores >= MIN_SCORE)
    reg = raw[0, keep] / DETECT_SIDE  # offsets in units of the input side
    centre = ANCHORS[keep] + reg[:, 0:2]
    extent = reg[:, 2:4]
    points = ANCHORS[keep, None, :] + reg[:, 4:16].reshape(-1, 6, 2)
    side = DETECT_SIDE / scale  # the window's side in photo pixels
    ox, oy = sx / scale, sy / scale  # the window's corner as cropped, in photo pixels
    origin = np.array([ox, oy], np.float32)
    return [([float((c[0] - e[0] / 2) * side + ox), float((c[1] - e[1] / 2) * side + oy),
              float(e[0] * side), float(e[1] * side)], float(scores[k]), p * side + origin)
            for c, e, p, k in zip(centre, extent, points, keep, strict=True)]


def detect_faces(image: np.ndarray) -> list[Detection]:
    """Every face BlazeFace accepts in the photo, most confident first."""
    check_image(image)
    h, w = image.shape[:2]
    tiers = _tiles(h, w)
    # Shrink once by a power of two (INTER_AREA's fast integer path, 3 ms for 3 Mpx against 13 for an odd
    # factor), then once per window size from that: a window's crop of it holds the pixels a resize of the
    # window itself would, and a large photo's 15 windows no longer pay a full-photo resize each.
    smallest = min(side for tier in tiers for _, _, side in tier)
    factor = 1 << max(0, int(math.log2(max(1.0, smallest / DETECT_SIDE))))
    base = image if factor == 1 else cv2.resize(image[:h - h % factor, :w - w % factor],
                                                (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    resized: dict[int, tuple[np.ndarray, float]] = {}

    def shrunk(side: int) -> tuple[np.ndarray, float]:
        if side not in resized:
            scale = DETECT_SIDE / side
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            resized[side] = (cv2.resize(base, size, interpolation=cv2.INTER_AREA), scale)
        return resized[side]

    found: list[Hit] = []
    for tier in tiers:
        found = [hit for x, y, side in tier for hit in _detect_in(*shrunk(side), x, y)]
        if found:
            break
    if not found:
        return []
    boxes, scores = [f[0] for f in found], [f[1] for f in found]
    chosen = cv2.dnn.NMSBoxes(boxes, scores, MIN_SCORE, NMS_IOU)  # one detection per face across windows
    faces = []
    for i in np.array(chosen).reshape(-1):
        x, y, bw, bh = boxes[i]
        if min(bw, bh) < MIN_FACE_PX:
            continue
        faces.append(Detection(score=scores[i], box=FaceBox(round(x), round(y), round(bw), round(bh)),
                               keypoints=found[i][2]))
    return sorted(faces, key=lambda d: d.score, reverse=True)


def _roi_matrix(centre: np.ndarray, side: float, angle: float, out: int) -> np.ndarray:
    """Affine (2, 3) from photo pixels to an `out`-pixel square of `side` photo pixels, rotated by `angle`."""
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), math.degrees(angle), out / side)
    matrix[:, 2] += np.array([out / 2 - centre[0], out / 2 - centre[1]])
    return matrix


def _mesh_pass(image: np.ndarray, centre: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float]:
    """One mesh inference on a rotated square ROI: landmarks (468, 2) in photo pixels and the face flag."""
    matrix = _roi_matrix(centre, side, angle, MESH_SIDE)
    crop = cv2.warpAffine(image, matrix, (MESH_SIDE, MESH_SIDE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT).astype(np.float32) / 255.0
    flag, mesh = _forward(assets.FACE_MESH, crop)  # (1, 1, 1, 1) logit, (1, 1404, 1, 1)
    points = mesh.reshape(468, 3)[:, :2]
    inverse = cv2.invertAffineTransform(matrix)
    photo = points @ inverse[:, :2].T + inverse[:, 2]
    return photo.astype(np.float32), float(1.0 / (1.0 + math.exp(-float(flag.reshape(-1)[0]))))


def fit_mesh(image: np.ndarray, detection: Detection) -> tuple[np.ndarray, float]:
    """The 468-point mesh of a detected face and the mesh's face-presence score.

    The first pass reads a square around the detection, levelled by its eye keypoints; the second re-centres
    on the first mesh (as mediapipe's tracking does), which tightens it on tilted and off-centre faces.
    """
    right, left = detection.keypoints[0], detection.keypoints[1]
    angle = math.atan2(left[1] - right[1], left[0] - right[0])
    box = detection.box
    centre = np.array([box.x + box.w / 2, box.y + box.h / 2], np.float32)
    landmarks, score = _mesh_pass(image, centre, max(box.w, box.h) * MESH_ROI_SCALE, angle)
    eyes = landmarks[EYE_OUTER[1]] - landmarks[EYE_OUTER[0]]
    angle = math.atan2(eyes[1], eyes[0])
    rotated = landmarks @ np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    extent = rotated.max(0) - rotated.min(0)
    centre = (landmarks.max(0) + landmarks.min(0)) / 2
    return _mesh_pass(image, centre, float(max(extent)) * MESH_ROI_SCALE, angle)


def find_face(image: np.ndarray) -> Face:
    """The most confident face with its mesh, or NoFaceFound; it counts only faces the mesh confirms."""
    confirmed = []
    for detection in detect_faces(image)[:MAX_FACES]:
        landmarks, score = fit_mesh(image, detection)
        if score >= MIN_MESH_SCORE:
            confirmed.append((detection, landmarks))
    if not confirmed:
        raise NoFaceFound()
    detection, landmarks = confirmed[0]
    return Face(detection=detection, landmarks=landmarks, faces_in_photo=len(confirmed))


def person_mask(image: np.ndarray, face: Face, *,
                reach: float = PERSON_REACH) -> tuple[np.ndarray, tuple[int, int]]:
    """Person probability (h, w) float32 on a square `reach` face-heights wide around the face; its origin.

    Segmenting a window around the face (not the whole photo at 256 px) keeps hair strands resolved.
    """
    lo, hi = face.landmarks.min(0), face.landmarks.max(0)
    centre, side = (lo + hi) / 2, float(max(hi - lo)) * reach
    h, w = image.shape[:2]
    x0, y0 = max(0, int(centre[0] - side / 2)), max(0, int(centre[1] - side / 2))
    x1, y1 = min(w, int(centre[0] + side / 2)), min(h, int(centre[1] + side / 2))
    window = image[y0:y1, x0:x1]
    x = cv2.resize(window, (SEGMENT_SIDE, SEGMENT_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    x /= 255.0
    (prob,) = _forward(assets.PERSON_SEGMENTER, x)  # (1, 1, 256, 256) in [0, 1]
    mask = cv2.resize(prob[0, 0], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return np.clip(mask, 0.0, 1.0), (x0, y0)


@dataclass(frozen=True)
class FaceSummary:
    """What an upload records about its faces: how many, and which one will change."""

    count: int
    box: FaceBox | None
    score: float | None


def summarize_faces(image: np.ndarray) -> FaceSummary:
    """Count the faces in a photo and name the one a transformation will change (none: count 0)."""
    try:
        face = find_face(image)
    except NoFaceFound:
        return FaceSummary(count=0, box=None, score=None)
    return FaceSummary(count=face.faces_in_photo, box=face.detection.box, score=face.detection.score)


def registered_crop(image: np.ndarray, face: Face, size: int) -> np.ndarray:
    """The face in the fixed REGISTERED_FRAME (size, size, 3), whatever the photo."""
    right, left = face.landmarks[RIGHT_EYE_RING].mean(0), face.landmarks[LEFT_EYE_RING].mean(0)
    mouth = face.landmarks[LIPS].mean(0)
    source = np.array([right, left, mouth], np.float32)
    target = REGISTERED_FRAME * size
    matrix, _ = cv2.estimateAffinePartial2D(source, target)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
