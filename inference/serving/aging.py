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

from inference.serving.aging_params import (
    BLUR,
    CURVES,
    FINE_LINES,
    FOLDS,
    HAIR,
    SHADING,
    SHAPE,
    SKIN,
    SMOOTHING,
    SPOTS,
    STROKES,
    Nudge,
    Zoom,
)
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
        c = CURVES
        return cls(lines=smoothstep(c.lines.start, c.lines.full, age),
                   texture=smoothstep(c.texture.start, c.texture.full, age),
                   spots=smoothstep(c.spots.start, c.spots.full, age),
                   grey=smoothstep(c.grey.start, c.grey.full, age),
                   sag=smoothstep(c.sag.start, c.sag.full, age))


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
        c = CURVES
        youth = min(1.0, max(0.0, (current - target) / c.youth_span))
        childlike = (min(1.0, max(0.0, (c.childlike_below - target) / c.childlike_span))
                     * min(1.0, max(0.0, (current - target) / c.childlike_span)))
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
    out = _recolour_hair(out, win, change)
    allowed = win.allowed[..., None]
    return image + allowed * (out - image)


def _curve(points: np.ndarray, samples: int = STROKES.samples) -> np.ndarray:
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
    taper = np.sin(np.linspace(0, np.pi, n)) ** STROKES.taper
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
    p, u, f = win.landmarks, win.unit, FOLDS
    crease = np.zeros(win.image.shape[:2], np.float32)
    shadow = np.zeros(win.image.shape[:2], np.float32)
    puff = np.zeros(win.image.shape[:2], np.float32)
    thin = max(1.0, STROKES.thin * u)
    brow, top = p[BROW_TOP], p[FOREHEAD_TOP]
    # Forehead: lines between the brows and the top of the forehead, shorter towards the top.
    span = _curve(brow, STROKES.forehead_samples)
    ceiling = _curve(top, STROKES.forehead_samples)
    m = len(span)
    ceiling = ceiling[np.linspace(0, len(ceiling) - 1, m).astype(int)]
    for k, (height, depth) in enumerate(f.forehead_lines):
        line = span * (1 - height) + ceiling * height
        cut = int(m * (f.forehead_cut + f.forehead_cut_step * k))
        wobble = (np.sin(np.linspace(0, f.forehead_waves * np.pi, m - 2 * cut) + k)[:, None]
                  * np.array([0, f.forehead_wobble * u]))
        _stroke(crease, line[cut:m - cut] + wobble, depth, thin)
    mid = (p[BROW_INNER[0]] + p[BROW_INNER[1]]) / 2
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        inner, outer = p[BROW_INNER[side]], p[EYE_OUTER[side]]
        base = inner + (mid - inner) * f.frown_inset  # frown lines: short verticals inside the brows' ends
        frown = np.array([base + [0, f.frown_top * u], base + [0, f.frown_bottom * u]])
        _stroke(crease, frown, f.frown_depth, thin)
        start = outer + np.array([sign * f.crow_offset * u, 0])  # crow's feet: a fan beside the outer corner
        for angle in f.crow_angles:
            a = np.radians(angle)
            direction = np.array([sign * np.cos(a), np.sin(a)])
            fan = np.array([start, start + direction * f.crow_bend * u,
                            start + direction * f.crow_length * u])
            _stroke(crease, fan, f.crow_depth, thin)
        lid = p[LOWER_LID[side]][1:-1]
        _stroke(crease, lid + np.array([0, f.lid_fold * u]), f.lid_fold_depth, thin)  # the lid's own fold
        _stroke(shadow, lid + np.array([0, f.tear_trough * u]), f.tear_trough_depth, f.tear_trough_width * u)
        _stroke(puff, lid + np.array([0, f.bag * u]), f.bag_depth, f.bag_width * u)
        wing, corner, cheek = p[NOSE_WING[side]], p[MOUTH_CORNER[side]], p[CHEEK[side]]
        bow = wing + (corner - wing) * f.nasolabial_bow + (cheek - (wing + corner) / 2) * f.nasolabial_bulge
        end = f.nasolabial_end
        fold = np.array([wing + [sign * f.nasolabial_top * u, 0], bow,
                         corner + [sign * end[0] * u, end[1] * u]])
        # The nasolabial fold's line, and the shadow on its mouth side
        _stroke(crease, fold, f.nasolabial_depth, thin * f.nasolabial_width)
        inward = np.array([-sign * f.nasolabial_shadow_shift * u, 0])
        _stroke(shadow, fold + inward, f.nasolabial_shadow_depth, f.nasolabial_shadow_width * u)
        chin, top_end = p[CHIN_SIDE[side]], f.marionette_top
        marionette = np.array([corner + [sign * top_end[0] * u, top_end[1] * u],
                               corner + (chin - corner) * f.marionette_bend
                               + [sign * f.marionette_bend_out * u, 0],
                               corner + (chin - corner) * f.marionette_end])
        _stroke(crease, marionette, f.marionette_depth, thin)
        _stroke(shadow, marionette, f.marionette_shadow_depth, f.marionette_shadow_width * u)
        bone, end = p[CHEEKBONE[side]], f.hollow_end  # hollow under the cheekbone
        hollow = np.array([bone + [0, f.hollow_top * u],
                           bone + (cheek - bone) * f.hollow_reach + [sign * end[0] * u, end[1] * u]])
        _stroke(shadow, hollow, f.hollow_depth, f.hollow_width * u)
    for q in p[UPPER_LIP][1:-1:2]:  # fine vertical lines above the upper lip
        lip_line = np.array([q + [0, f.lip_line_bottom * u], q + [0, f.lip_line_top * u]])
        _stroke(crease, lip_line, f.lip_line_depth, thin * f.lip_line_width)
    return (cv2.GaussianBlur(np.clip(crease, 0, 1), (0, 0), sigmaX=max(f.crease_blur_min, f.crease_blur * u)),
            blur(np.clip(shadow, 0, 1), f.shadow_blur * u), blur(np.clip(puff, 0, 1), f.puff_blur * u))


def _fine_lines(win: Window) -> np.ndarray:
    """Many short fine lines over the cheeks, running down and out from the eyes as old skin creases."""
    p, u, f = win.landmarks, win.unit, FINE_LINES
    fine = np.zeros(win.image.shape[:2], np.float32)
    rng = np.random.default_rng(f.seed)
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        eye, corner, jaw = p[EYE_OUTER[side]], p[MOUTH_CORNER[side]], p[JOWL[side]]
        flow = jaw - eye
        flow /= np.linalg.norm(flow) + 1e-6
        for _ in range(f.per_cheek):
            # A point on the cheek between the eye corner, the mouth corner and the jaw.
            w = rng.dirichlet(f.placement)
            start = (w[0] * eye + w[1] * corner + w[2] * jaw
                     + np.array([sign * f.offset[0] * u, f.offset[1] * u]))
            angle = np.radians(rng.uniform(*f.spread))
            direction = np.array([flow[0] * np.cos(angle) - flow[1] * np.sin(angle),
                                  flow[0] * np.sin(angle) + flow[1] * np.cos(angle)])
            length = rng.uniform(*f.length) * u
            bend = np.array([-direction[1], direction[0]]) * rng.uniform(*f.bend) * u
            line = np.array([start, start + direction * length / 2 + bend, start + direction * length])
            _stroke(fine, line, rng.uniform(*f.depth), max(1.0, f.width * u))
    return cv2.GaussianBlur(np.clip(fine, 0, 1), (0, 0), sigmaX=max(f.blur_min, f.blur * u))


def _lines(image: np.ndarray, win: Window, amount: float) -> np.ndarray:
    """Shade creases (with a lit lower lip, as light from above catches it) and shadows into the skin."""
    if amount <= 0:
        return image
    s = SHADING
    crease, shadow, puff = _fold_maps(win)
    if amount > s.fine_from:  # the fine lines of old skin come last; in a small face they would not show
        visible = min(1.0, win.unit / s.fine_visible_unit)
        crease = np.maximum(crease, _fine_lines(win) * s.fine_strength * visible * (amount - s.fine_from)
                            / s.fine_ramp)
    lit = np.roll(crease, max(1, round(s.lit_shift * win.unit)), axis=0)
    skin = win.skin
    dark = (amount * skin * (s.crease_dark * crease + s.shadow_dark * shadow))[..., None]
    glow = (amount * skin * (s.lit_glow * np.clip(lit - crease, 0, None) + s.puff_glow * puff))[..., None]
    return image * (1.0 - dark * np.array(s.shade_tint, np.float32)) + 255.0 * glow


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a smaller copy (same result to the eye, a tenth of the time)."""
    if sigma <= BLUR.full_size_up_to:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=max(BLUR.min_sigma, sigma))
    step = int(sigma // BLUR.shrink_per)
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
    u, skin, shape, t, s = win.unit, win.skin[..., None], win.image.shape[:2], SKIN, SPOTS
    grain = _noise(shape, t.grain_size * u, t.grain_seed)[..., None]
    blotch = _noise(shape, t.blotch_size * u, t.blotch_seed)[..., None]
    lum = image.mean(axis=2, keepdims=True)
    sallow = image + (lum - image) * t.desaturate + np.array(t.sallow, np.float32)  # less rosy, yellower
    aged = sallow * (1.0 + t.grain * grain + t.blotch * blotch)
    out = image + skin * add.texture * (aged - image)
    if add.spots > 0:
        spots = np.zeros(shape, np.float32)
        rng = np.random.default_rng(s.seed)
        ys, xs = np.nonzero(win.skin > s.on_skin)
        if len(xs):
            for i in rng.choice(len(xs), size=min(len(xs), s.count), replace=False):
                radius = float(rng.uniform(*s.radius) * u)
                axes = (max(1, round(radius)), max(1, round(radius * s.aspect)))
                cv2.ellipse(spots, (int(xs[i]), int(ys[i])), axes, float(rng.uniform(0, 180)), 0, 360,
                            float(rng.uniform(*s.strength)), -1, cv2.LINE_AA)
        spots = cv2.GaussianBlur(spots, (0, 0), sigmaX=max(s.blur_min, s.blur * u))[..., None] * skin
        out = out * (1.0 - s.dark * add.spots * spots * np.array(s.tint, np.float32))
    return out


def _smooth_skin(image: np.ndarray, win: Window, youth: float) -> np.ndarray:
    """Younger skin: lines, pores and blotches smoothed away (edge-preserving), under-eyes lifted."""
    u, s = win.unit, SMOOTHING
    src = np.clip(image, 0, 255).astype(np.uint8)
    d = max(s.diameter_min, round(s.diameter * u)) | 1  # the cost grows with d squared: near the fold width
    first, second = s.first_colour, s.second_colour
    smooth = cv2.bilateralFilter(src, d=d, sigmaColor=first[0] + first[1] * youth,
                                 sigmaSpace=s.first_space * u).astype(np.float32)
    smooth = cv2.bilateralFilter(np.clip(smooth, 0, 255).astype(np.uint8), d=d,
                                 sigmaColor=second[0] + second[1] * youth, sigmaSpace=s.second_space * u
                                 ).astype(np.float32)
    even = blur(smooth, s.even_size * u)
    smooth = smooth + s.even * youth * (even - smooth)  # blotches even out towards the local tone
    out = image + (s.strength * youth * win.skin)[..., None] * (smooth - image)
    # Under-eye darkness lifted towards the cheek below it.
    under = np.zeros(win.image.shape[:2], np.float32)
    for lid in LOWER_LID:
        ring = win.landmarks[lid]
        band = np.round(np.concatenate([ring, ring[::-1] + [0, s.under_eye * u]]) * 4).astype(np.int32)
        cv2.fillPoly(under, [band], 1.0, cv2.LINE_AA, shift=2)
    under = blur(under, s.under_eye_blur * u) * win.skin
    return out + (s.under_eye_lift * youth * under)[..., None] * (255.0 - out) * s.under_eye_whiten


def _warp(image: np.ndarray, win: Window, change: Change) -> np.ndarray:
    """Sagging for older targets, lifted fuller cheeks for younger ones: a smooth displacement in the face."""
    p, u, s = win.landmarks, win.unit, SHAPE
    moves: list[tuple[np.ndarray, np.ndarray, float]] = []  # (centre, displacement, radius)
    scales: list[tuple[np.ndarray, float, float]] = []  # (centre, growth factor - 1, radius)
    sag, lift, child = change.add.sag, change.remove.sag + s.lift_from_youth * change.youth, change.childlike
    for side in (0, 1):
        sign = -1.0 if side == 0 else 1.0
        if sag > 0:
            moves += [_move(p[JOWL[side]], s.jowl_sag, sign, u, sag),
                      _move(p[CHEEK[side]], s.cheek_sag, sign, u, sag),
                      _move(p[MOUTH_CORNER[side]], s.mouth_corner_sag, sign, u, sag),
                      _move(p[BROW_OUTER[side]], s.brow_sag, sign, u, sag)]
        if lift > 0:
            moves += [_move(p[CHEEKBONE[side]], s.cheekbone_lift, sign, u, lift),
                      _move(p[JOWL[side]], s.jowl_lift, sign, u, lift)]
        if child > 0:  # a younger face's proportions: larger eyes, smaller nose, narrower jaw, higher chin
            eye = p[RIGHT_EYE_RING if side == 0 else LEFT_EYE_RING].mean(0)
            scales += [_zoom(eye, s.child_eyes, u, child)]
            moves += [_move(p[JOWL[side]], s.child_jaw, sign, u, child)]
    if sag > 0:  # lips thin with age: the mouth narrows towards its own line
        scales.append(_zoom(p[LIPS].mean(0), s.lips_thin, u, sag))
    if child > 0:
        scales.append(_zoom(p[NOSE_TIP], s.child_nose, u, child))
        moves.append(_move(p[CHIN], s.child_chin, 1.0, u, child))
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
    inside = blur(win.face, s.edge_blur * u) * win.allowed
    inside *= 1.0 - win.features * s.features_ride  # eyes and lips ride along gently, not torn
    return cv2.remap(image, xs - dx * inside, ys - dy * inside, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _move(centre: np.ndarray, nudge: Nudge, sign: float, u: float, amount: float
          ) -> tuple[np.ndarray, np.ndarray, float]:
    """A nudge at `centre`: (centre, displacement, radius) in pixels; `sign` is -1 or 1, pointing outward."""
    return centre, np.array([sign * nudge.dx, nudge.dy]) * u * amount, nudge.radius * u


def _zoom(centre: np.ndarray, zoom: Zoom, u: float, amount: float) -> tuple[np.ndarray, float, float]:
    """A zoom about `centre`: (centre, growth factor - 1, radius in pixels)."""
    return centre, zoom.growth * amount, zoom.radius * u


def _bump(xs: np.ndarray, ys: np.ndarray, centre: np.ndarray, radius: float
          ) -> tuple[tuple[slice, slice], np.ndarray]:
    """A Gaussian of `radius` about `centre`, only where it matters (a few radii): slices and weights."""
    h, w = xs.shape
    reach = SHAPE.bump_reach * radius
    x0, x1 = max(0, int(centre[0] - reach)), min(w, int(centre[0] + reach) + 1)
    y0, y1 = max(0, int(centre[1] - reach)), min(h, int(centre[1] + reach) + 1)
    box = (slice(y0, y1), slice(x0, x1))
    return box, np.exp(-((xs[box] - centre[0]) ** 2 + (ys[box] - centre[1]) ** 2) / (2 * radius**2))


def _recolour_hair(image: np.ndarray, win: Window, change: Change) -> np.ndarray:
    """Grey the hair keeping its strands (luminance kept as texture, colour drained), or darken grey hair.

    Greying reaches the outermost strands (a dark rim would outline grey hair); darkening fades in from the
    hair's edge, where white wisps against the backdrop would otherwise turn into a dark outline.
    """
    greying, darkening, s = change.add.grey, change.remove.grey, HAIR
    hair = (win.hair if greying > 0 else win.hair_inner)[..., None]
    if hair.max() <= 0 or (greying <= 0 and darkening <= 0):
        return image
    lab = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    light, a, b = lab[..., 0], lab[..., 1] - 128.0, lab[..., 2] - 128.0  # OpenCV's 8-bit Lab: L in 0..255
    if change.add.grey > 0:
        g = change.add.grey
        mean = float((light * win.hair).sum() / (win.hair.sum() + 1e-6))
        light = light + g * (s.silver + s.grey_relief * (light - mean) - light)  # strands keep their relief
        a, b = a * (1 - s.drain * g), b * (1 - s.drain * g) + s.ivory * g
    elif change.remove.grey > 0 and _is_grey(lab, win.hair):
        r = change.ungrey
        mean = float((light * win.hair).sum() / (win.hair.sum() + 1e-6))
        # A mid brown with the strands' relief, or the darker strands' own shade where they are darker still
        # (grey over black hair goes back to black, not to brown).
        level = min(s.brown_lightness, _dark_strands(light, win.hair))
        light = light + r * (level + s.brown_relief * (light - mean) - light)
        a, b = a + r * s.brown_a * level / s.brown_lightness, b + r * s.brown_b * level / s.brown_lightness
    elif change.remove.grey > 0:  # salt and pepper: the grey strands take the dark ones' shade
        r = change.ungrey
        dark = _dark_strands(light, win.hair)
        greyness = (np.clip((light - dark) / s.pepper_gap, 0.0, 1.0)
                    * np.clip(1.0 - np.hypot(a, b) / s.pepper_chroma, 0.0, 1.0))
        light = light - r * greyness * s.pepper_darken * (light - dark)
    out = np.stack([light, a + 128.0, b + 128.0], axis=-1)
    rgb = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    return image + hair * (rgb - image)


def _dark_strands(light: np.ndarray, hair: np.ndarray) -> float:
    """The lightness of the hair's darker strands (a low percentile, weighted by the mask): its own colour
    before it greyed."""
    strands = hair > HAIR.strand_mask
    values, weights = light[strands], hair[strands]
    if len(values) == 0:
        return 0.0
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, HAIR.dark_strands * cumulative[-1])])


def _is_grey(lab: np.ndarray, hair: np.ndarray) -> bool:
    """Whether the hair is mostly grey or white: light and nearly colourless."""
    weight = hair.sum() + 1e-6
    chroma = np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)
    return (float((chroma * hair).sum() / weight) < HAIR.grey_chroma
            and float((lab[..., 0] * hair).sum() / weight) > HAIR.grey_lightness)
