"""One identity painted at one age: where its features sit, and the face drawn layer by layer."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.generator.synthetic.identity import NOISE_GRID, AgeSigns, Identity, texture_fields
from inference.generator.synthetic.painter import Painter, quad

SUPERSAMPLE = 2  # draw at 2x and area-downsample: antialiasing on top of cv2.LINE_AA
GREY = np.array([0.80, 0.80, 0.78], dtype=np.float32)  # fully grey hair
LIP_COLOUR = np.array([0.72, 0.36, 0.36], dtype=np.float32)


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


def _hair_field(idt: Identity, s: AgeSigns, p: Painter) -> np.ndarray:
    """Hair colour per canvas pixel, grey strands spreading with age: (S, S, 3)."""
    order = p.field(texture_fields(idt.seed)[0])  # (S, S): which strands grey first
    threshold = -0.2 + 1.4 * s.grey
    grey = np.clip((threshold - order) / 0.12 + 0.5, 0.0, 1.0)[..., None]
    hair = np.asarray(idt.hair, np.float32)
    return hair + (GREY - hair) * grey


def _draw_body(idt: Identity, g: _Geometry, p: Painter, skin: np.ndarray) -> None:
    """Shoulders in the identity's shirt, and the neck."""
    p.ellipse(0.5, 1.08, 0.44, 0.24).fill(idt.shirt)
    p.polygon(np.array([[g.cx - 0.10, g.cy + g.fh * 0.6], [g.cx + 0.10, g.cy + g.fh * 0.6],
                        [g.cx + 0.115, 0.95], [g.cx - 0.115, 0.95]])).fill(skin * 0.82)


def _draw_back_hair(idt: Identity, g: _Geometry, p: Painter, hair: np.ndarray) -> None:
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


def _draw_face(idt: Identity, g: _Geometry, s: AgeSigns, p: Painter, skin: np.ndarray) -> None:
    """Ears, the face with its shading, skin texture, spots and childhood blush."""
    for side in (-1, 1):
        p.ellipse(g.cx + side * g.fw * 0.97, g.eye_y + 0.035, 0.030, 0.055 + 0.01 * s.sag).fill(skin * 0.9)
    outline = _face_outline(g)
    p.polygon(outline).fill(skin)
    # Light from the front: the face darkens towards its edge, so cheeks read brighter than the eye sockets.
    fields = texture_fields(idt.seed)
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


def _draw_eyes(idt: Identity, g: _Geometry, s: AgeSigns, p: Painter, skin: np.ndarray) -> None:
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
        arch = quad((inner, g.brow_y + 0.004), ((inner + outer) / 2, g.brow_y - idt.brow_arch),
                     (outer, g.brow_y + 0.008 + 0.006 * s.sag))
        p.curve(arch, idt.brow_thickness * (1.0 - 0.2 * s.youth)).fill(brow)


def _draw_nose_and_mouth(g: _Geometry, s: AgeSigns, p: Painter, skin: np.ndarray) -> None:
    """A shadowed nose ridge, nostrils, and lips whose corners drop with age."""
    tip_y = g.eye_y + g.nose_len
    p.curve(
        quad((g.cx - 0.018, g.eye_y + 0.01), (g.cx - 0.03, tip_y - 0.04), (g.cx - g.nose_w * 0.7, tip_y)),
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
            quad(
                (left, g.mouth_y + drop),
                (g.cx - g.mouth_w * 0.5, g.mouth_y - g.lips * 1.4),
                (g.cx, g.mouth_y - g.lips * 0.8),
                8,
            ),
            quad(
                (g.cx, g.mouth_y - g.lips * 0.8),
                (g.cx + g.mouth_w * 0.5, g.mouth_y - g.lips * 1.4),
                (right, g.mouth_y + drop),
                8,
            ),
        ]
    )
    middle = quad((right, g.mouth_y + drop), (g.cx, g.mouth_y - 0.002 - drop), (left, g.mouth_y + drop), 12)
    lower = quad((right, g.mouth_y + drop), (g.cx, g.mouth_y + g.lips * 2.3), (left, g.mouth_y + drop), 12)
    lip_colour = np.asarray(LIP_COLOUR, np.float32) * (1.0 - 0.25 * s.sag) + skin * 0.25 * s.sag
    p.polygon(np.concatenate([upper, middle])).fill(lip_colour)
    p.polygon(np.concatenate([middle[::-1], lower])).fill(lip_colour * 1.08)
    p.curve(middle, 0.006).fill((0.25, 0.08, 0.08), 0.9)


def _draw_wrinkles(g: _Geometry, s: AgeSigns, p: Painter, skin: np.ndarray) -> None:
    """Forehead lines, crow's feet, nasolabial folds and marionette lines, deepening with age."""
    line = skin * 0.55
    w = s.wrinkles
    for i in range(4):  # forehead lines appear one after another
        strength = min(max(w * 4.0 - i * 0.8, 0.0), 1.0) * 0.75
        y = g.brow_y - 0.03 - i * 0.022
        span = g.fw * (0.55 - 0.06 * i)
        p.curve(quad((g.cx - span, y + 0.004), (g.cx, y - 0.008), (g.cx + span, y + 0.004)), 0.005).fill(
            line, strength)
    for side in (-1, 1):
        corner = g.cx + side * (g.eye_dx + g.eye_w * 1.2)
        for k in (-1, 0, 1):  # crow's feet
            p.curve(np.array([[corner, g.eye_y + k * 0.006],
                              [corner + side * 0.03, g.eye_y + k * 0.016]]), 0.004).fill(line, 0.7 * w)
        tip_y = g.eye_y + g.nose_len
        wing = g.cx + side * g.nose_w * 0.9
        corner_x = g.cx + side * g.mouth_w * 1.15
        p.curve(quad((wing, tip_y - 0.01), (wing + side * 0.04, g.mouth_y - 0.02),
                      (corner_x, g.mouth_y + 0.02 + 0.015 * s.sag)), 0.007).fill(line, min(1.0, 0.3 + w) * w)
        p.curve(np.array([[g.cx + side * g.mouth_w * 1.05, g.mouth_y + 0.012],
                          [g.cx + side * g.mouth_w * 1.1, g.mouth_y + 0.05]]), 0.005).fill(line, 0.8 * s.sag)


def _hairline(g: _Geometry, x: np.ndarray, recession: float) -> np.ndarray:
    """Hairline height across the forehead: receding leaves an M, the temples going first."""
    dx = np.abs(x - g.cx) / g.fw
    return g.hairline_y - recession * 0.06 * dx**2 + 0.02 * dx**4


def _draw_top_hair(idt: Identity, g: _Geometry, s: AgeSigns, p: Painter, hair: np.ndarray) -> None:
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
    p.polygon(cap).shade(0.8 + 0.35 * p.field(texture_fields(idt.seed)[1]))


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
    p = Painter(canvas, zoom, shift)
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
