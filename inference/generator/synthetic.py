"""Seeded procedural faces: one identity rendered at any age, exact ground truth for training and tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SUPERSAMPLE = 2  # draw at 2x and area-downsample: antialiasing on top of cv2.LINE_AA
SHIFT = 4  # fixed-point fraction bits for cv2 drawing, so features move sub-pixel smoothly with age
NOISE_GRID = 64  # resolution of the per-identity texture fields, in face coordinates
DETECTOR_JITTER = 0.1  # how much a face detector's crop moves and scales the face (zoom, and half as shift)

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
GREY = np.array([0.80, 0.80, 0.78], dtype=np.float32)  # fully grey hair
LIPS = np.array([0.72, 0.36, 0.36], dtype=np.float32)


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
def _texture_fields(seed: int) -> np.ndarray:
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


class _Painter:
    """Draws antialiased shapes given in face coordinates onto a float RGB canvas (S, S, 3) in [0, 1]."""

    def __init__(self, canvas: np.ndarray, zoom: float, shift: tuple[float, float]) -> None:
        self.canvas = canvas
        self.size = canvas.shape[0]
        self.zoom = zoom
        self.shift = shift
        self.scratch = np.zeros(canvas.shape[:2], np.uint8)  # (S, S) coverage of the shape being drawn

    def px(self, x: float, y: float) -> tuple[int, int]:
        """Face coordinates (0..1) to fixed-point canvas pixels."""
        s = self.size * (1 << SHIFT)
        return (round(((x - 0.5) * self.zoom + 0.5 + self.shift[0]) * s),
                round(((y - 0.5) * self.zoom + 0.5 + self.shift[1]) * s))

    def length(self, v: float) -> int:
        """A length in face coordinates to fixed-point canvas pixels."""
        return max(1, round(v * self.zoom * self.size * (1 << SHIFT)))

    def width(self, v: float) -> int:
        """A stroke width in face coordinates to whole canvas pixels (cv2 widths have no fraction bits)."""
        return max(1, round(v * self.zoom * self.size))

    def face_to_canvas(self) -> np.ndarray:
        """The 2x3 affine from face coordinates to canvas pixels."""
        s = self.size * self.zoom
        return np.array([[s, 0, (0.5 - 0.5 * self.zoom + self.shift[0]) * self.size],
                         [0, s, (0.5 - 0.5 * self.zoom + self.shift[1]) * self.size]], np.float32)

    def field(self, grid: np.ndarray) -> np.ndarray:
        """Resample a (G, G) face-coordinate field onto the canvas: (S, S) float32."""
        m = self.face_to_canvas()
        m[:, :2] /= grid.shape[0]  # the field's pixel (i, j) sits at face coordinates (j/G, i/G)
        return cv2.warpAffine(grid, m, (self.size, self.size), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REFLECT)

    def _coverage(self) -> tuple[slice, slice, np.ndarray] | None:
        """The bounding box of what was just drawn into scratch and its coverage (h, w, 1) in [0, 1]."""
        x, y, w, h = cv2.boundingRect(self.scratch)
        if w == 0 or h == 0:
            return None
        rows, cols = slice(y, y + h), slice(x, x + w)
        cover = self.scratch[rows, cols].astype(np.float32)[..., None] / 255.0
        self.scratch[rows, cols] = 0
        return rows, cols, cover

    def fill(self, colour: np.ndarray | Sequence[float], alpha: float = 1.0) -> None:
        """Blend `colour` (RGB, or a full (S, S, 3) field) where scratch has coverage."""
        got = self._coverage()
        if got is None or alpha <= 0.0:
            return
        rows, cols, cover = got
        c = np.asarray(colour, np.float32)
        c = c[rows, cols] if c.ndim == 3 else c
        region = self.canvas[rows, cols]
        region += (c - region) * (cover * alpha)

    def shade(self, factor: np.ndarray | float, alpha: float = 1.0) -> None:
        """Multiply the canvas by `factor` ((S, S) field or scalar) where scratch has coverage."""
        got = self._coverage()
        if got is None:
            return
        rows, cols, cover = got
        f = factor[rows, cols][..., None] if isinstance(factor, np.ndarray) else factor
        self.canvas[rows, cols] *= 1.0 + (f - 1.0) * cover * alpha

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0,
                arc: tuple[float, float] = (0.0, 360.0), width: float | None = None) -> _Painter:
        """Put a filled ellipse (or an arc of `width`) into scratch."""
        thickness = -1 if width is None else self.width(width)
        cv2.ellipse(self.scratch, self.px(cx, cy), (self.length(ax), self.length(ay)), angle,
                    arc[0], arc[1], 255, thickness, cv2.LINE_AA, SHIFT)
        return self

    def polygon(self, points: np.ndarray) -> _Painter:
        """Put a filled polygon ((N, 2) face coordinates) into scratch."""
        pts = np.array([self.px(x, y) for x, y in points], np.int32)
        cv2.fillPoly(self.scratch, [pts], 255, cv2.LINE_AA, SHIFT)
        return self

    def curve(self, points: np.ndarray, width: float) -> _Painter:
        """Put an open polyline ((N, 2) face coordinates) of `width` into scratch."""
        pts = np.array([self.px(x, y) for x, y in points], np.int32)
        cv2.polylines(self.scratch, [pts], False, 255, self.width(width), cv2.LINE_AA, SHIFT)
        return self


def _quad(
    p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 12
) -> np.ndarray:
    """Points along a quadratic Bezier curve: (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


@dataclass(frozen=True)
class _Geometry:
    """Where the features of one identity sit at one age, in face coordinates."""

    cx: float
    cy: float
    fw: float  # face half-width
    fh: float  # face half-length (centre to chin)
    jaw: float
    eye_y: float
    eye_dx: float
    eye_w: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lips: float
    brow_y: float
    hairline_y: float


def _geometry(idt: Identity, s: AgeSigns) -> _Geometry:
    """Children have rounder faces, bigger eyes set lower, smaller noses and mouths; old faces sag."""
    cx, cy = 0.5, 0.47
    fh = idt.face_length * (1.0 - 0.10 * s.youth) + 0.012 * s.sag
    fw = idt.face_width * (1.0 + 0.03 * s.youth)
    eye_y = cy + idt.eye_height + 0.035 * s.youth + 0.004 * s.sag
    eye_w = idt.eye_size * (1.0 + 0.22 * s.youth)
    nose_len = idt.nose_length * (1.0 - 0.30 * s.youth) + 0.008 * s.sag
    mouth_y = eye_y + nose_len + 0.055 * (1.0 - 0.25 * s.youth) + 0.006 * s.sag
    return _Geometry(
        cx=cx, cy=cy, fw=fw, fh=fh,
        jaw=idt.jaw + (1.0 - idt.jaw) * (0.55 * s.youth + 0.35 * s.sag),
        eye_y=eye_y, eye_dx=idt.eye_spacing * (1.0 + 0.04 * s.youth), eye_w=eye_w,
        nose_len=nose_len, nose_w=idt.nose_width * (1.0 - 0.25 * s.youth) + 0.004 * s.sag,
        mouth_y=mouth_y, mouth_w=idt.mouth_width * (1.0 - 0.2 * s.youth),
        lips=idt.lip_fullness * (1.0 - 0.45 * s.sag),
        brow_y=eye_y - eye_w * 0.95 - 0.012 + 0.006 * s.sag,
        hairline_y=cy - fh * 0.72 - s.recession * 0.11,
    )


def _face_outline(g: _Geometry) -> np.ndarray:
    """The face contour: an ellipse on top, a jaw that narrows to the chin below: (N, 2)."""
    t = np.linspace(0.0, 2.0 * np.pi, 72, endpoint=False)
    sin, cos = np.sin(t), np.cos(t)
    lower = sin > 0
    narrowing = np.where(lower, 1.0 - (1.0 - g.jaw) * np.abs(sin) ** 1.6, 1.0)
    x = g.cx + g.fw * cos * narrowing
    y = g.cy + np.where(lower, g.fh, g.fh * 1.02) * sin
    return np.stack([x, y], axis=1)


def _hair_field(idt: Identity, s: AgeSigns, p: _Painter) -> np.ndarray:
    """Hair colour per canvas pixel, grey strands spreading with age: (S, S, 3)."""
    order = p.field(_texture_fields(idt.seed)[0])  # (S, S): which strands grey first
    threshold = -0.2 + 1.4 * s.grey
    grey = np.clip((threshold - order) / 0.12 + 0.5, 0.0, 1.0)[..., None]
    hair = np.asarray(idt.hair, np.float32)
    return hair + (GREY - hair) * grey


def _draw_body(idt: Identity, g: _Geometry, p: _Painter, skin: np.ndarray) -> None:
    """Shoulders in the identity's shirt, and the neck."""
    p.ellipse(0.5, 1.08, 0.44, 0.24).fill(idt.shirt)
    p.polygon(np.array([[g.cx - 0.10, g.cy + g.fh * 0.6], [g.cx + 0.10, g.cy + g.fh * 0.6],
                        [g.cx + 0.115, 0.95], [g.cx - 0.115, 0.95]])).fill(skin * 0.82)


def _draw_back_hair(idt: Identity, g: _Geometry, p: _Painter, hair: np.ndarray) -> None:
    """Long and bob styles show hair beside and below the face."""
    if idt.hair_style == "long":  # a curtain down to the shoulders and a rounded top, filled as one shape
        top = g.cy - g.fh * 1.05 - idt.hair_volume
        p.polygon(
            np.array(
                [
                    [g.cx - g.fw - 0.05, g.cy - 0.05],
                    [g.cx + g.fw + 0.05, g.cy - 0.05],
                    [g.cx + g.fw + 0.08, g.cy + g.fh + 0.12],
                    [g.cx - g.fw - 0.08, g.cy + g.fh + 0.12],
                ]
            )
        )
        p.ellipse(g.cx, g.cy - 0.02, g.fw + 0.05 + idt.hair_volume, g.cy - 0.02 - top).fill(hair)
    elif idt.hair_style == "bob":
        p.ellipse(g.cx, g.cy + 0.02, g.fw + 0.045 + idt.hair_volume, g.fh * 0.95 + idt.hair_volume).fill(hair)


def _draw_face(idt: Identity, g: _Geometry, s: AgeSigns, p: _Painter, skin: np.ndarray) -> None:
    """Ears, the face with its shading, skin texture, spots and childhood blush."""
    for side in (-1, 1):
        p.ellipse(g.cx + side * g.fw * 0.97, g.eye_y + 0.035, 0.030, 0.055 + 0.01 * s.sag).fill(skin * 0.9)
    outline = _face_outline(g)
    p.polygon(outline).fill(skin)
    # Light from the front: the face darkens towards its edge, so cheeks read brighter than the eye sockets.
    fields = _texture_fields(idt.seed)
    yy, xx = np.mgrid[0:NOISE_GRID, 0:NOISE_GRID].astype(np.float32) / NOISE_GRID
    r2 = ((xx - g.cx) / g.fw) ** 2 + ((yy - g.cy) / (g.fh * 1.05)) ** 2
    light = 1.0 - 0.22 * np.clip(r2, 0.0, 1.4) ** 1.5
    rough = 1.0 + (fields[1] - 0.5) * (0.04 + 0.10 * s.spots + 0.06 * s.wrinkles)
    p.polygon(outline).shade(p.field(light * rough))
    spots = np.clip((fields[2] - (1.0 - 0.15 * s.spots)) / 0.04, 0.0, 1.0)  # sites cross the bar with age
    p.polygon(outline).shade(p.field(1.0 - 0.22 * spots))
    if s.youth > 0:
        for side in (-1, 1):
            p.ellipse(g.cx + side * g.fw * 0.55, g.eye_y + 0.075, 0.05, 0.035).fill((0.95, 0.45, 0.45),
                                                                                  0.35 * s.youth)


def _draw_eyes(idt: Identity, g: _Geometry, s: AgeSigns, p: _Painter, skin: np.ndarray) -> None:
    """Sockets, eyes with iris and pupil, drooping lids and bags, and brows."""
    brow = np.asarray(idt.hair, np.float32) * (1.0 - 0.4 * s.grey) + GREY * 0.4 * s.grey
    brow = brow * 0.55
    eh = g.eye_w * 0.5  # eye half-height
    for side in (-1, 1):
        ex = g.cx + side * g.eye_dx
        p.ellipse(ex, g.eye_y - 0.004, g.eye_w * 1.45, g.eye_w * 1.05).shade(0.6)  # socket shadow
        p.ellipse(ex, g.eye_y, g.eye_w, eh).fill(skin * 0.4 + 0.45)  # sclera, dimmer in darker faces
        iris_r = eh * 0.95
        p.ellipse(ex, g.eye_y, iris_r, iris_r).fill(idt.iris)
        p.ellipse(ex, g.eye_y, iris_r * 0.5, iris_r * 0.5).fill((0.03, 0.03, 0.03))
        p.ellipse(ex + iris_r * 0.3, g.eye_y - iris_r * 0.35, iris_r * 0.18, iris_r * 0.18).fill(
            (1, 1, 1), 0.8
        )
        # The upper lid droops over the eye with age: a skin band sliding down from above.
        lid = eh * (0.15 + 0.45 * s.sag)
        p.ellipse(ex, g.eye_y - eh * 1.1 + lid, g.eye_w * 1.05, eh * 1.1).fill(skin * 0.93)
        p.ellipse(ex, g.eye_y, g.eye_w, eh, arc=(180, 360), width=0.008).fill((0.1, 0.07, 0.06), 0.9)
        p.ellipse(ex, g.eye_y + eh * 1.15, g.eye_w * 0.85, eh * 0.7, arc=(20, 160),
                  width=0.006).fill(skin * 0.55, 0.8 * s.sag)  # bags under the eyes
        inner, outer = ex - side * g.eye_w * 1.1, ex + side * g.eye_w * 1.15
        arch = _quad((inner, g.brow_y + 0.004), ((inner + outer) / 2, g.brow_y - idt.brow_arch),
                     (outer, g.brow_y + 0.008 + 0.006 * s.sag))
        p.curve(arch, idt.brow_thickness * (1.0 - 0.2 * s.youth)).fill(brow)


def _draw_nose_and_mouth(g: _Geometry, s: AgeSigns, p: _Painter, skin: np.ndarray) -> None:
    """A shadowed nose ridge, nostrils, and lips whose corners drop with age."""
    tip_y = g.eye_y + g.nose_len
    p.curve(
        _quad((g.cx - 0.018, g.eye_y + 0.01), (g.cx - 0.03, tip_y - 0.04), (g.cx - g.nose_w * 0.7, tip_y)),
        0.012,
    ).shade(0.8)
    p.ellipse(g.cx, tip_y - 0.006, g.nose_w * 0.55, g.nose_w * 0.45).fill(skin * 1.05, 0.6)
    for side in (-1, 1):
        p.ellipse(g.cx + side * g.nose_w * 0.42, tip_y + 0.004, g.nose_w * 0.22, g.nose_w * 0.13).fill(
            (0.22, 0.12, 0.10), 0.85)
    drop = 0.012 * s.sag  # mouth corners fall
    left, right = g.cx - g.mouth_w, g.cx + g.mouth_w
    upper = np.concatenate(
        [
            _quad(
                (left, g.mouth_y + drop),
                (g.cx - g.mouth_w * 0.5, g.mouth_y - g.lips * 1.4),
                (g.cx, g.mouth_y - g.lips * 0.8),
                8,
            ),
            _quad(
                (g.cx, g.mouth_y - g.lips * 0.8),
                (g.cx + g.mouth_w * 0.5, g.mouth_y - g.lips * 1.4),
                (right, g.mouth_y + drop),
                8,
            ),
        ]
    )
    middle = _quad((right, g.mouth_y + drop), (g.cx, g.mouth_y - 0.002 - drop), (left, g.mouth_y + drop), 12)
    lower = _quad((right, g.mouth_y + drop), (g.cx, g.mouth_y + g.lips * 2.3), (left, g.mouth_y + drop), 12)
    lip_colour = np.asarray(LIPS, np.float32) * (1.0 - 0.25 * s.sag) + skin * 0.25 * s.sag
    p.polygon(np.concatenate([upper, middle])).fill(lip_colour)
    p.polygon(np.concatenate([middle[::-1], lower])).fill(lip_colour * 1.08)
    p.curve(middle, 0.006).fill((0.25, 0.08, 0.08), 0.9)


def _draw_wrinkles(g: _Geometry, s: AgeSigns, p: _Painter, skin: np.ndarray) -> None:
    """Forehead lines, crow's feet, nasolabial folds and marionette lines, deepening with age."""
    line = skin * 0.55
    w = s.wrinkles
    for i in range(4):  # forehead lines appear one after another
        strength = min(max(w * 4.0 - i * 0.8, 0.0), 1.0) * 0.75
        y = g.brow_y - 0.03 - i * 0.022
        span = g.fw * (0.55 - 0.06 * i)
        p.curve(_quad((g.cx - span, y + 0.004), (g.cx, y - 0.008), (g.cx + span, y + 0.004)), 0.005).fill(
            line, strength)
    for side in (-1, 1):
        corner = g.cx + side * (g.eye_dx + g.eye_w * 1.2)
        for k in (-1, 0, 1):  # crow's feet
            p.curve(np.array([[corner, g.eye_y + k * 0.006],
                              [corner + side * 0.03, g.eye_y + k * 0.016]]), 0.004).fill(line, 0.7 * w)
        tip_y = g.eye_y + g.nose_len
        wing = g.cx + side * g.nose_w * 0.9
        corner_x = g.cx + side * g.mouth_w * 1.15
        p.curve(_quad((wing, tip_y - 0.01), (wing + side * 0.04, g.mouth_y - 0.02),
                      (corner_x, g.mouth_y + 0.02 + 0.015 * s.sag)), 0.007).fill(line, min(1.0, 0.3 + w) * w)
        p.curve(np.array([[g.cx + side * g.mouth_w * 1.05, g.mouth_y + 0.012],
                          [g.cx + side * g.mouth_w * 1.1, g.mouth_y + 0.05]]), 0.005).fill(line, 0.8 * s.sag)


def _hairline(g: _Geometry, x: np.ndarray, recession: float) -> np.ndarray:
    """Hairline height across the forehead: receding leaves an M, the temples going first."""
    dx = np.abs(x - g.cx) / g.fw
    return g.hairline_y - recession * 0.06 * dx**2 + 0.02 * dx**4


def _draw_top_hair(idt: Identity, g: _Geometry, s: AgeSigns, p: _Painter, hair: np.ndarray) -> None:
    """The hair cap from the sideburns over the crown and back along the hairline, with strand shading."""
    vol = idt.hair_volume * (1.0 - 0.4 * s.recession)
    side_y = g.eye_y - 0.045 + (0.06 if idt.hair_style in ("long", "bob") else 0.0)
    top_y = g.cy - g.fh * 1.02 - vol
    t = np.linspace(np.pi, 2.0 * np.pi, 25)  # from the left ear over the top to the right ear
    crown = np.stack([g.cx + (g.fw + vol) * np.cos(t), side_y + (side_y - top_y) * np.sin(t)], axis=1)
    xs = np.linspace(g.cx + g.fw * 0.9, g.cx - g.fw * 0.9, 25)  # the hairline, right to left
    front = np.stack([xs, np.maximum(_hairline(g, xs, s.recession), top_y + 0.03)], axis=1)
    cap = np.concatenate([crown, [[g.cx + g.fw * 0.9, side_y]], front, [[g.cx - g.fw * 0.9, side_y]]])
    p.polygon(cap).fill(hair)
    if idt.hair_style == "curly":
        for a in np.linspace(1.05 * np.pi, 1.95 * np.pi, 9):
            p.ellipse(
                g.cx + (g.fw + vol) * np.cos(a), side_y + (side_y - top_y) * np.sin(a), 0.035, 0.03
            ).fill(hair)
    p.polygon(cap).shade(0.8 + 0.35 * p.field(_texture_fields(idt.seed)[1]))


def render(identity: Identity, age: float, size: int = 128, *, background: np.ndarray | None = None,
           zoom: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Render `identity` at `age` years: (size, size, 3) uint8 RGB.

    `background` (size, size, 3) uint8 is drawn over instead of the identity's backdrop; `zoom` and `shift`
    (fractions of the side) move the whole face in the frame, the same way at every age.
    """
    s = AgeSigns.at(identity, age)
    g = _geometry(identity, s)
    side = size * SUPERSAMPLE
    if background is None:
        ramp = np.linspace(1.05, 0.85, side, dtype=np.float32)[:, None, None]  # (S, 1, 1) top-lit wall
        canvas = np.broadcast_to(np.asarray(identity.backdrop, np.float32) * ramp, (side, side, 3)).copy()
    else:
        canvas = (
            cv2.resize(background, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        )
    p = _Painter(canvas, zoom, shift)
    skin = np.asarray(identity.skin, np.float32) * (1.0 - 0.06 * s.spots) + np.float32(0.04 * s.youth)
    hair = _hair_field(identity, s, p)
    _draw_body(identity, g, p, skin)
    _draw_back_hair(identity, g, p, hair)
    _draw_face(identity, g, s, p, skin)
    _draw_eyes(identity, g, s, p, skin)
    _draw_nose_and_mouth(g, s, p, skin)
    _draw_wrinkles(g, s, p, skin)
    _draw_top_hair(identity, g, s, p, hair)
    small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)


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
