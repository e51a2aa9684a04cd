"""Mesh-placed aging layers: folds and lines where faces form them, skin, spots, grey hair, sagging; and back.

Everything here is deterministic and placed by the face mesh, so it lands on a real face whatever the photo.
Each layer's strength follows a curve of age (how much of it a face of that age shows), and a face is
moved from its current age's amount to its target's: a 70-year-old asked for 75 changes a little, a
30-year-old a lot. Younger targets remove: smoother, even skin, no lines, darker hair, fuller cheeks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.serving.landmarks import (
    BROW_INNER,
    BROW_OUTER,
    BROW_TOP,
    CHEEK,
    CHEEKBONE,
    CHIN,
    CHIN_SIDE,
    EYE_OUTER,
    FOREHEAD_TOP,
    JOWL,
    LEFT_EYE_RING,
    LIPS,
    LOWER_LID,
    MOUTH_CORNER,
    NOSE_TIP,
    NOSE_WING,
    RIGHT_EYE_RING,
    UPPER_LIP,
)
from inference.serving.regions import Window

VERSION = "aging-layers-v3"  # recorded on every result: the layers are code, so the version is bumped by hand


def smoothstep(lo: float, hi: float, x: float) -> float:
    t = min(1.0, max(0.0, (x - lo) / (hi - lo)))
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class AgeLook:
    """How much of each sign of age a face of some age shows, each in [0, 1]."""

    lines: float  # wrinkles and folds
    texture: float  # crepey, uneven, less luminous skin
    spots: float  # age spots
    grey: float  # grey hair
    sag: float  # jowls, lower cheeks, mouth corners, outer brows

    @classmethod
    def at(cls, age: float) -> AgeLook:
        return cls(lines=smoothstep(25.0, 80.0, age), texture=smoothstep(30.0, 85.0, age),
                   spots=smoothstep(45.0, 85.0, age), grey=smoothstep(38.0, 78.0, age),
                   sag=smoothstep(38.0, 85.0, age))


@dataclass(frozen=True)
class Change:
    """What to add (older) and what to take away (younger), from current age to target age."""

    add: AgeLook
    remove: AgeLook
    youth: float  # skin smoothing for younger targets, in [0, 1]
    childlike: float  # teenage proportions for targets under 22, in [0, 1]
    # The share of its grey the hair loses, in [0, 1]: by share, not by the curves' amounts, as a face greyer
    # than its age's average (a 46-year-old with salt-and-pepper hair) still has none at 25.
    ungrey: float

    @classmethod
    def between(cls, current: float, target: float) -> Change:
        now, then = AgeLook.at(current), AgeLook.at(target)
        pairs = list(zip(vars(now).values(), vars(then).values(), strict=True))
        add = AgeLook(*(max(0.0, b - a) for a, b in pairs))
        remove = AgeLook(*(max(0.0, a - b) for a, b in pairs))
        youth = min(1.0, max(0.0, (current - target) / 25.0))
        childlike = min(1.0, max(0.0, (22.0 - target) / 10.0)) * min(1.0, max(0.0, (current - target) / 10.0))
        ungrey = remove.grey / now.grey if now.grey > 0 else 0.0
        return cls(add=add, remove=remove, youth=youth, childlike=childlike, ungrey=ungrey)


def age_window(win: Window, current: float, target: float) -> np.ndarray:
    """The window's image aged from `current` to `target` years: float32 (h, w, 3) in [0, 255].

    Only pixels under `win.allowed` differ from the input; callers paste back the change.
    """
    change = Change.between(current, target)
    image = win.image.astype(np.float32)
    out = _warp(image, win, change)
    if change.youth > 0:
        out = _smooth_skin(out, win, change.youth)
    out = _lines(out, win, change.add.lines)
    out = _skin(out, win, change)
    out = _hair(out, win, change)
    allowed = win.allowed[..., None]
    return image + allowed * (out - image)


def _curve(points: np.ndarray, samples: int = 24) -> np.ndarray:
    """A smooth polyline through `points` (K, 2): Catmull-Rom sampled `samples` times per segment."""
    p = np.concatenate([points[:1], points, points[-1:]])
    out = []
    for i in range(1, len(p) - 2):
        t = np.linspace(0, 1, samples, endpoint=False)[:, None]
        a, b, c, d = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * b) + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2
                          + (-a + 3 * b - 3 * c + d) * t**3))
    out.append(points[-1:])
    return np.concatenate(out)


def _stroke(canvas: np.ndarray, points: np.ndarray, depth: float, width: float) -> None:
    """Draw a line of `depth` into the fold map, tapering at both ends like a real crease."""
    line = _curve(points)
    n = len(line)
    taper = np.sin(np.linspace(0, np.pi, n)) ** 0.7
    for i in range(n - 1):
        a, b = np.round(line[i] * 4).astype(int), np.round(line[i + 1] * 4).astype(int)
        cv2.line(canvas, tuple(a), tuple(b), float(depth * taper[i]), max(1, round(width * taper[i])),
                 lineType=cv2.LINE_AA, shift=2)


def _fold_maps(win: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin creases, broad shadows and puffs (each (h, w) in [0, 1]) where faces form them, placed by the
    mesh.

    Creases are the fine lines (forehead, frown, crow's feet, upper lip); shadows are the folds and hollows
    that skin forms as it loses volume (nasolabial, marionette, tear trough, under the cheekbone, jowls);
    puffs are the bags under the eyes, lit from above between the lid's fold and the tear trough.
    """
    p, u = win.landmarks, win.unit
    crease = np.zeros(win.image.shape[:2], np.float32)
    shadow = np.zeros(win.image.shape[:2], np.float32)
    puff = np.zeros(win.image.shape[:2], np.float32)
    thin = max(1.0, 0.02 * u)
    brow, top = p[BROW_TOP], p[FOREHEAD_TOP]
    # Forehead: three lines between the brows and the top of the forehead, shorter towards the top.
    span = _curve(brow, 4)
    ceiling = _curve(top, 4)
    m = len(span)
    ceiling = ceiling[np.linspace(0, len(ceiling) - 1, m).astype(int)]
    for k, (f, depth) in enumerate(((0.3, 0.8), (0.52, 1.0), (0.72, 0.7))):
        line = span * (1 - f) + ceiling * f
        cut = int(m * (0.12 + 0.06 * k))
        wobble = np.sin(np.linspace(0, 3 * np.pi, m - 2 * cut) + k)[:, None] * np.array([0, 0.02 * u])
        _stroke(crease, line[cut:m - cut] + wobble, depth, thin)
    mid = (p[BROW_INNER[0]] + p[BROW_INNER[1]]) / 2
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        inner, outer = p[BROW_INNER[side]], p[EYE_OUTER[side]]
        base = inner + (mid - inner) * 0.45  # frown lines: short verticals inside the inner brow ends
        _stroke(crease, np.array([base + [0, -0.26 * u], base + [0, 0.04 * u]]), 0.7, thin)
        start = outer + np.array([sign * 0.1 * u, 0])  # crow's feet: a fan beside the outer eye corner
        for angle in (-28, 0, 26):
            a = np.radians(angle)
            direction = np.array([sign * np.cos(a), np.sin(a)])
            fan = np.array([start, start + direction * 0.15 * u, start + direction * 0.28 * u])
            _stroke(crease, fan, 0.8, thin)
        lid = p[LOWER_LID[side]][1:-1]
        _stroke(crease, lid + np.array([0, 0.1 * u]), 0.7, thin)  # the lower lid's own fold
        _stroke(shadow, lid + np.array([0, 0.22 * u]), 0.9, 0.09 * u)  # tear trough under the eye bag
        _stroke(puff, lid + np.array([0, 0.15 * u]), 1.0, 0.07 * u)  # the bag itself
        wing, corner, cheek = p[NOSE_WING[side]], p[MOUTH_CORNER[side]], p[CHEEK[side]]
        bow = wing + (corner - wing) * 0.5 + (cheek - (wing + corner) / 2) * 0.3
        fold = np.array([wing + [sign * 0.03 * u, 0], bow, corner + [sign * 0.07 * u, 0.06 * u]])
        # The nasolabial fold's line (soft: a hard stroke reads as a pen mark on a small face), and the
        # shadow on its mouth side
        _stroke(crease, fold, 0.75, thin * 1.25)
        _stroke(shadow, fold + np.array([-sign * 0.05 * u, 0]), 1.0, 0.1 * u)
        chin = p[CHIN_SIDE[side]]
        marionette = np.array([corner + [sign * 0.04 * u, 0.12 * u], corner + (chin - corner) * 0.55 +
                               [sign * 0.04 * u, 0], corner + (chin - corner) * 0.85])
        _stroke(crease, marionette, 0.3, thin)
        _stroke(shadow, marionette, 0.7, 0.08 * u)
        bone = p[CHEEKBONE[side]]  # hollow under the cheekbone
        hollow = np.array([bone + [0, 0.25 * u], bone + (cheek - bone) * 0.6 + [sign * 0.08 * u, 0.1 * u]])
        _stroke(shadow, hollow, 0.6, 0.14 * u)
    for q in p[UPPER_LIP][1:-1:2]:  # fine vertical lines above the upper lip
        _stroke(crease, np.array([q + [0, -0.02 * u], q + [0, -0.11 * u]]), 0.4, thin * 0.8)
    return (cv2.GaussianBlur(np.clip(crease, 0, 1), (0, 0), sigmaX=max(0.8, 0.01 * u)),
            blur(np.clip(shadow, 0, 1), 0.05 * u), blur(np.clip(puff, 0, 1), 0.035 * u))


def _fine_lines(win: Window) -> np.ndarray:
    """Many short fine lines over the cheeks, running down and out from the eyes as old skin creases."""
    p, u = win.landmarks, win.unit
    fine = np.zeros(win.image.shape[:2], np.float32)
    rng = np.random.default_rng(5)  # the same lines for the same face: results are reproducible
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        eye, corner, jaw = p[EYE_OUTER[side]], p[MOUTH_CORNER[side]], p[JOWL[side]]
        flow = jaw - eye
        flow /= np.linalg.norm(flow) + 1e-6
        for _ in range(18):
            # A point on the cheek between the eye corner, the mouth corner and the jaw.
            w = rng.dirichlet((2.0, 1.5, 1.5))
            start = w[0] * eye + w[1] * corner + w[2] * jaw + np.array([sign * 0.05 * u, 0.15 * u])
            angle = np.radians(rng.uniform(-15, 15))
            direction = np.array([flow[0] * np.cos(angle) - flow[1] * np.sin(angle),
                                  flow[0] * np.sin(angle) + flow[1] * np.cos(angle)])
            length = rng.uniform(0.1, 0.22) * u
            bend = np.array([-direction[1], direction[0]]) * rng.uniform(-0.02, 0.02) * u
            line = np.array([start, start + direction * length / 2 + bend, start + direction * length])
            _stroke(fine, line, rng.uniform(0.3, 0.6), max(1.0, 0.015 * u))
    return cv2.GaussianBlur(np.clip(fine, 0, 1), (0, 0), sigmaX=max(0.5, 0.008 * u))


def _lines(image: np.ndarray, win: Window, amount: float) -> np.ndarray:
    """Shade creases (with a lit lower lip, as light from above catches it) and shadows into the skin."""
    if amount <= 0:
        return image
    crease, shadow, puff = _fold_maps(win)
    if amount > 0.4:  # the fine lines of old skin come last; in a small face they would not show at all
        visible = min(1.0, win.unit / 90.0)
        crease = np.maximum(crease, _fine_lines(win) * 0.7 * visible * (amount - 0.4) / 0.6)
    lit = np.roll(crease, max(1, round(0.02 * win.unit)), axis=0)
    skin = win.skin
    dark = (amount * skin * (0.28 * crease + 0.3 * shadow))[..., None]  # deeper in red-brown: skin in shade
    glow = (amount * skin * (0.07 * np.clip(lit - crease, 0, None) + 0.05 * puff))[..., None]
    return image * (1.0 - dark * np.array([1.0, 1.05, 1.08], np.float32)) + 255.0 * glow


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a smaller copy (same result to the eye, a tenth of the time)."""
    if sigma <= 6.0:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=max(0.5, sigma))
    step = int(sigma // 3)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / step)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _noise(shape: tuple[int, int], sigma: float, seed: int) -> np.ndarray:
    """Unit-variance smooth noise, the same for the same window (results must be reproducible)."""
    white = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    smooth = blur(white, sigma)
    return smooth / (smooth.std() + 1e-6)


def _skin(image: np.ndarray, win: Window, change: Change) -> np.ndarray:
    add = change.add
    if add.texture <= 0 and add.spots <= 0:
        return image
    u, skin, shape = win.unit, win.skin[..., None], win.image.shape[:2]
    grain = _noise(shape, 0.02 * u, 1)[..., None]
    blotch = _noise(shape, 0.18 * u, 2)[..., None]
    lum = image.mean(axis=2, keepdims=True)
    sallow = image + (lum - image) * 0.1 + np.array([2.0, 0.0, -3.0], np.float32)  # less rosy, yellower
    aged = sallow * (1.0 + 0.02 * grain + 0.045 * blotch)
    out = image + skin * add.texture * (aged - image)
    if add.spots > 0:
        spots = np.zeros(shape, np.float32)
        rng = np.random.default_rng(3)
        ys, xs = np.nonzero(win.skin > 0.8)
        if len(xs):
            for i in rng.choice(len(xs), size=min(len(xs), 7), replace=False):
                radius = float(rng.uniform(0.025, 0.06) * u)
                axes = (max(1, round(radius)), max(1, round(radius * 0.8)))
                cv2.ellipse(spots, (int(xs[i]), int(ys[i])), axes, float(rng.uniform(0, 180)), 0, 360,
                            float(rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA)
        spots = cv2.GaussianBlur(spots, (0, 0), sigmaX=max(0.6, 0.015 * u))[..., None] * skin
        out = out * (1.0 - 0.1 * add.spots * spots * np.array([0.6, 0.85, 1.0], np.float32))
    return out


def _smooth_skin(image: np.ndarray, win: Window, youth: float) -> np.ndarray:
    """Younger skin: lines, pores and blotches smoothed away (edge-preserving), under-eyes lifted."""
    u = win.unit
    src = np.clip(image, 0, 255).astype(np.uint8)
    d = max(5, round(0.08 * u)) | 1  # the filter's cost grows with d squared: keep it near the fold width
    smooth = cv2.bilateralFilter(src, d=d, sigmaColor=22 + 30 * youth, sigmaSpace=0.05 * u).astype(np.float32)
    smooth = cv2.bilateralFilter(np.clip(smooth, 0, 255).astype(np.uint8), d=d, sigmaColor=18 + 20 * youth,
                                 sigmaSpace=0.08 * u).astype(np.float32)
    even = blur(smooth, 0.25 * u)
    smooth = smooth + 0.35 * youth * (even - smooth)  # blotches even out towards the local tone
    out = image + (0.9 * youth * win.skin)[..., None] * (smooth - image)
    # Under-eye darkness lifted towards the cheek below it.
    under = np.zeros(win.image.shape[:2], np.float32)
    for lid in LOWER_LID:
        ring = win.landmarks[lid]
        band = np.round(np.concatenate([ring, ring[::-1] + [0, 0.3 * u]]) * 4).astype(np.int32)
        cv2.fillPoly(under, [band], 1.0, cv2.LINE_AA, shift=2)
    under = blur(under, 0.06 * u) * win.skin
    return out + (0.1 * youth * under)[..., None] * (255.0 - out) * 0.5


def _warp(image: np.ndarray, win: Window, change: Change) -> np.ndarray:
    """Sagging for older targets, lifted fuller cheeks for younger ones: a smooth displacement in the face."""
    p, u = win.landmarks, win.unit
    moves: list[tuple[np.ndarray, np.ndarray, float]] = []  # (centre, displacement, radius)
    scales: list[tuple[np.ndarray, float, float]] = []  # (centre, growth factor - 1, radius)
    sag, lift, child = change.add.sag, change.remove.sag + 0.4 * change.youth, change.childlike
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        if sag > 0:
            moves += [(p[JOWL[side]], np.array([sign * 0.03, 0.15]) * u * sag, 0.35 * u),
                      (p[CHEEK[side]], np.array([0.0, 0.1]) * u * sag, 0.3 * u),
                      (p[MOUTH_CORNER[side]], np.array([0.0, 0.05]) * u * sag, 0.12 * u),
                      (p[BROW_OUTER[side]], np.array([0.0, 0.07]) * u * sag, 0.18 * u)]
        if lift > 0:
            moves += [(p[CHEEKBONE[side]], np.array([sign * 0.04, -0.03]) * u * lift, 0.3 * u),
                      (p[JOWL[side]], np.array([0.0, -0.05]) * u * lift, 0.3 * u)]
        if child > 0:  # a younger face's proportions: larger eyes, smaller nose, narrower jaw, higher chin
            scales += [(p[RIGHT_EYE_RING if side == 0 else LEFT_EYE_RING].mean(0), 0.09 * child, 0.28 * u)]
            moves += [(p[JOWL[side]], np.array([-sign * 0.07, -0.04]) * u * child, 0.3 * u)]
    if sag > 0:  # lips thin with age: the mouth narrows towards its own line
        scales.append((p[LIPS].mean(0), -0.1 * sag, 0.2 * u))
    if child > 0:
        scales.append((p[NOSE_TIP], -0.08 * child, 0.3 * u))
        moves.append((p[CHIN], np.array([0.0, -0.06]) * u * child, 0.35 * u))
    if not moves and not scales:
        return image
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    for centre, move, radius in moves:
        box, weight = _bump(xs, ys, centre, radius)
        dx[box] += weight * move[0]
        dy[box] += weight * move[1]
    for centre, growth, radius in scales:  # local zoom about a centre: points move away (or towards) it
        box, weight = _bump(xs, ys, centre, radius)
        dx[box] += weight * growth * (xs[box] - centre[0])
        dy[box] += weight * growth * (ys[box] - centre[1])
    inside = blur(win.face, 0.05 * u) * win.allowed
    inside *= 1.0 - win.features * 0.7  # eyes and lips ride along gently, not torn
    return cv2.remap(image, xs - dx * inside, ys - dy * inside, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _bump(xs: np.ndarray, ys: np.ndarray, centre: np.ndarray, radius: float
          ) -> tuple[tuple[slice, slice], np.ndarray]:
    """A Gaussian of `radius` about `centre`, only where it matters (3 radii): the slices and the weights."""
    h, w = xs.shape
    x0, x1 = max(0, int(centre[0] - 3 * radius)), min(w, int(centre[0] + 3 * radius) + 1)
    y0, y1 = max(0, int(centre[1] - 3 * radius)), min(h, int(centre[1] + 3 * radius) + 1)
    box = (slice(y0, y1), slice(x0, x1))
    return box, np.exp(-((xs[box] - centre[0]) ** 2 + (ys[box] - centre[1]) ** 2) / (2 * radius**2))


def _hair(image: np.ndarray, win: Window, change: Change) -> np.ndarray:
    """Grey the hair keeping its strands (luminance kept as texture, colour drained), or darken grey hair.

    Greying reaches the outermost strands (a dark rim would outline grey hair); darkening fades in from the
    hair's edge, where white wisps against the backdrop would otherwise turn into a dark outline.
    """
    greying, darkening = change.add.grey, change.remove.grey
    hair = (win.hair if greying > 0 else win.hair_inner)[..., None]
    if hair.max() <= 0 or (greying <= 0 and darkening <= 0):
        return image
    lab = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    light, a, b = lab[..., 0], lab[..., 1] - 128.0, lab[..., 2] - 128.0  # OpenCV's 8-bit Lab: L in 0..255
    if change.add.grey > 0:
        g = change.add.grey
        mean = float((light * win.hair).sum() / (win.hair.sum() + 1e-6))
        light = light + g * (172.0 + 1.15 * (light - mean) - light)  # silver, the strands keep their relief
        a, b = a * (1 - 0.85 * g), b * (1 - 0.85 * g) + 3.0 * g  # a faint ivory, as grey hair has
    elif change.remove.grey > 0 and _is_grey(lab, win.hair):
        r = change.ungrey
        mean = float((light * win.hair).sum() / (win.hair.sum() + 1e-6))
        # A mid brown with the strands' relief, or the darker strands' own shade where they are darker still
        # (grey over black hair goes back to black, not to brown).
        level = min(60.0, _dark_strands(light, win.hair))
        light = light + r * (level + 0.6 * (light - mean) - light)
        a, b = a + r * 7.0 * level / 60.0, b + r * 16.0 * level / 60.0
    elif change.remove.grey > 0:  # salt and pepper: the grey strands take the dark ones' shade
        r = change.ungrey
        dark = _dark_strands(light, win.hair)
        greyness = np.clip((light - dark) / 40.0, 0.0, 1.0) * np.clip(1.0 - np.hypot(a, b) / 20.0, 0.0, 1.0)
        light = light - r * greyness * 0.85 * (light - dark)
    out = np.stack([light, a + 128.0, b + 128.0], axis=-1)
    rgb = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    return image + hair * (rgb - image)


def _dark_strands(light: np.ndarray, hair: np.ndarray) -> float:
    """The lightness of the hair's darker strands (its 25th percentile, weighted by the mask): its own colour
    before it greyed."""
    values, weights = light[hair > 0.3], hair[hair > 0.3]
    if len(values) == 0:
        return 0.0
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.25 * cumulative[-1])])


def _is_grey(lab: np.ndarray, hair: np.ndarray) -> bool:
    """Whether the hair is mostly grey or white: light and nearly colourless."""
    weight = hair.sum() + 1e-6
    chroma = np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)
    return float((chroma * hair).sum() / weight) < 14.0 and float((lab[..., 0] * hair).sum() / weight) > 100.0
