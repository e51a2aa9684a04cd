"""Antialiased drawing in face coordinates onto a float canvas: what the portrait is painted with."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

SHIFT = 4  # fixed-point fraction bits for cv2 drawing, so features move sub-pixel smoothly with age


class Painter:
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
                arc: tuple[float, float] = (0.0, 360.0), width: float | None = None) -> Painter:
        """Put a filled ellipse (or an arc of `width`) into scratch."""
        thickness = -1 if width is None else self.width(width)
        cv2.ellipse(self.scratch, self.px(cx, cy), (self.length(ax), self.length(ay)), angle,
                    arc[0], arc[1], 255, thickness, cv2.LINE_AA, SHIFT)
        return self

    def polygon(self, points: np.ndarray) -> Painter:
        """Put a filled polygon ((N, 2) face coordinates) into scratch."""
        pts = np.array([self.px(x, y) for x, y in points], np.int32)
        cv2.fillPoly(self.scratch, [pts], 255, cv2.LINE_AA, SHIFT)
        return self

    def curve(self, points: np.ndarray, width: float) -> Painter:
        """Put an open polyline ((N, 2) face coordinates) of `width` into scratch."""
        pts = np.array([self.px(x, y) for x, y in points], np.int32)
        cv2.polylines(self.scratch, [pts], False, 255, self.width(width), cv2.LINE_AA, SHIFT)
        return self


def quad(
    p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 12
) -> np.ndarray:
    """Points along a quadratic Bezier curve: (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c
