"""The aging layers' tuning and their window's, named: a frozen dataclass per concern, each knob with a unit.

Units: `u` is the window's eye distance in pixels (every length on the face is a multiple of it), ages are
years, colours are RGB in [0, 255], and Lab values are OpenCV's 8-bit Lab (L in 0..255, a and b about 0).
Amounts in [0, 1] come from the age curves; depths are a fold map's intensity in [0, 1]. These values are the
look of `aging.VERSION`: a change that moves pixels bumps it (tests/inference/test_aging_golden.py pins them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ramp:
    """A smoothstep over ages: none of a sign before `start`, all of it from `full` on."""

    start: float
    full: float


@dataclass(frozen=True)
class AgeCurves:
    """How much of each sign a face of some age shows, and how far younger targets reach."""

    lines: Ramp = Ramp(25.0, 80.0)  # wrinkles and folds
    texture: Ramp = Ramp(30.0, 85.0)  # crepey, uneven, less luminous skin
    spots: Ramp = Ramp(45.0, 85.0)  # age spots
    grey: Ramp = Ramp(38.0, 78.0)  # grey hair
    sag: Ramp = Ramp(38.0, 85.0)  # jowls, lower cheeks, mouth corners, outer brows
    youth_span: float = 25.0  # years younger at which skin smoothing is full
    childlike_below: float = 22.0  # target age under which teenage proportions start
    childlike_span: float = 10.0  # years under `childlike_below` (and years younger) for full proportions


@dataclass(frozen=True)
class Strokes:
    """How a line is drawn into a fold map."""

    samples: int = 24  # Catmull-Rom samples per segment between mesh points
    taper: float = 0.7  # exponent of the sine taper towards both ends: lower keeps more of the middle's depth
    thin: float = 0.02  # a crease's width (u), at least one pixel
    forehead_samples: int = 4  # samples per segment of the brow and forehead-top curves the lines lie between


@dataclass(frozen=True)
class Folds:
    """Where the creases, shadows and eye bags lie, how deep and how wide (lengths in u)."""

    # Forehead: (height between the brows (0) and the forehead's top (1), depth) of each line, bottom first.
    forehead_lines: tuple[tuple[float, float], ...] = ((0.3, 0.8), (0.52, 1.0), (0.72, 0.7))
    forehead_cut: float = 0.12  # share of the brow span left off at each end of the lowest line
    forehead_cut_step: float = 0.06  # and how much more each higher line leaves off
    forehead_waves: float = 3.0  # half-periods of a line's wobble across the forehead (times pi)
    forehead_wobble: float = 0.02  # the wobble's height
    # Frown lines: short verticals inside the inner brow ends.
    frown_inset: float = 0.45  # share of the way from an inner brow end to the brows' midpoint
    frown_top: float = -0.26  # from that point up
    frown_bottom: float = 0.04  # and down
    frown_depth: float = 0.7
    # Crow's feet: a fan beside the outer eye corner.
    crow_offset: float = 0.1  # outward from the eye corner
    crow_angles: tuple[int, ...] = (-28, 0, 26)  # degrees from the horizontal, outward
    crow_bend: float = 0.15  # length to the middle point of each line
    crow_length: float = 0.28
    crow_depth: float = 0.8
    # Under the eye, below the lower lid's inner points.
    lid_fold: float = 0.1  # the lower lid's own fold, this far below the lid
    lid_fold_depth: float = 0.7
    tear_trough: float = 0.22  # the shadow under the eye bag
    tear_trough_depth: float = 0.9
    tear_trough_width: float = 0.09
    bag: float = 0.15  # the eye bag (a puff, lit from above)
    bag_depth: float = 1.0
    bag_width: float = 0.07
    # Nasolabial fold: from the nose wing bowing out towards the cheek, to beside the mouth corner.
    nasolabial_bow: float = 0.5  # share of the way from nose wing to mouth corner where it bows
    nasolabial_bulge: float = 0.3  # share of the way towards the cheek point it bows out
    nasolabial_top: float = 0.03  # outward from the nose wing
    nasolabial_end: tuple[float, float] = (0.07, 0.06)  # outward and down from the mouth corner
    nasolabial_depth: float = 0.75  # soft: a hard stroke reads as a pen mark on a small face
    nasolabial_width: float = 1.25  # times the thin crease's width
    nasolabial_shadow_shift: float = 0.05  # the fold's shadow lies this far inward, on its mouth side
    nasolabial_shadow_depth: float = 1.0
    nasolabial_shadow_width: float = 0.1
    # Marionette lines: from below the mouth corner towards the chin's side.
    marionette_top: tuple[float, float] = (0.04, 0.12)  # outward and down from the mouth corner
    marionette_bend: float = 0.55  # share of the way to the chin's side at its middle point
    marionette_bend_out: float = 0.04  # outward, at that point
    marionette_end: float = 0.85  # share of the way to the chin's side where it ends
    marionette_depth: float = 0.3
    marionette_shadow_depth: float = 0.7
    marionette_shadow_width: float = 0.08
    # The hollow under the cheekbone.
    hollow_top: float = 0.25  # below the cheekbone point
    hollow_reach: float = 0.6  # share of the way towards the cheek point at its end
    hollow_end: tuple[float, float] = (0.08, 0.1)  # outward and down from there
    hollow_depth: float = 0.6
    hollow_width: float = 0.14
    # Fine verticals above the upper lip, from just above its edge upward.
    lip_line_bottom: float = -0.02
    lip_line_top: float = -0.11
    lip_line_depth: float = 0.4
    lip_line_width: float = 0.8  # times the thin crease's width
    # Softening of each map (sigma): creases at least `crease_blur_min` pixels.
    crease_blur: float = 0.01
    crease_blur_min: float = 0.8
    shadow_blur: float = 0.05
    puff_blur: float = 0.035


@dataclass(frozen=True)
class FineLines:
    """Many short fine lines over the cheeks, running down and out from the eyes (lengths in u)."""

    seed: int = 5  # the same lines for the same face: results are reproducible
    per_cheek: int = 18
    placement: tuple[float, float, float] = (2.0, 1.5, 1.5)  # Dirichlet: eye corner, mouth corner, jaw
    offset: tuple[float, float] = (0.05, 0.15)  # outward and down from that point
    spread: tuple[int, int] = (-15, 15)  # degrees either side of the eye-to-jaw direction
    length: tuple[float, float] = (0.1, 0.22)
    bend: tuple[float, float] = (-0.02, 0.02)  # sideways at the middle
    depth: tuple[float, float] = (0.3, 0.6)
    width: float = 0.015  # at least one pixel
    blur: float = 0.008  # sigma, at least `blur_min` pixels
    blur_min: float = 0.5


@dataclass(frozen=True)
class LineShading:
    """How the fold maps darken and light the skin."""

    fine_from: float = 0.4  # lines amount where the fine lines start (last: a small face would not show them)
    fine_ramp: float = 0.6  # lines amount over which they reach full strength
    fine_visible_unit: float = 90.0  # eye distance (pixels) from which fine lines show in full
    fine_strength: float = 0.7  # their depth against the folds'
    lit_shift: float = 0.02  # the light on a crease's lower lip lies this far below it (u), a pixel at least
    crease_dark: float = 0.28
    shadow_dark: float = 0.3
    shade_tint: tuple[float, float, float] = (1.0, 1.05, 1.08)  # darker in green, blue: shade is red-brown
    lit_glow: float = 0.07
    puff_glow: float = 0.05


@dataclass(frozen=True)
class SkinTone:
    """Older skin: sallower, a little grain and blotchiness (lengths in u)."""

    grain_size: float = 0.02  # sigma of the grain noise
    grain_seed: int = 1
    grain: float = 0.02  # relative brightness change per unit of noise
    blotch_size: float = 0.18
    blotch_seed: int = 2
    blotch: float = 0.045
    desaturate: float = 0.1  # share of the way to grey: less rosy
    sallow: tuple[float, float, float] = (2.0, 0.0, -3.0)  # RGB shift: yellower


@dataclass(frozen=True)
class AgeSpots:
    """A few soft brown spots on bare skin (lengths in u)."""

    seed: int = 3
    count: int = 7
    on_skin: float = 0.8  # skin-mask value a spot's centre needs
    radius: tuple[float, float] = (0.025, 0.06)
    aspect: float = 0.8  # minor axis over major
    strength: tuple[float, float] = (0.5, 1.0)
    blur: float = 0.015  # sigma, at least `blur_min` pixels
    blur_min: float = 0.6
    dark: float = 0.1  # darkening at full spots amount
    tint: tuple[float, float, float] = (0.6, 0.85, 1.0)  # darker in blue: brown


@dataclass(frozen=True)
class Smoothing:
    """Younger skin: two edge-preserving passes, blotches evened out, under-eyes lifted (lengths in u)."""

    diameter: float = 0.08  # the bilateral filter's (odd, at least `diameter_min` px): its cost grows squared
    diameter_min: int = 5
    first_colour: tuple[float, float] = (22.0, 30.0)  # sigmaColor: base, plus this times youth
    first_space: float = 0.05
    second_colour: tuple[float, float] = (18.0, 20.0)
    second_space: float = 0.08
    even_size: float = 0.25  # sigma of the local tone blotches even out towards
    even: float = 0.35  # share of the way there, at full youth
    strength: float = 0.9  # share of the way to the smoothed skin, at full youth
    under_eye: float = 0.3  # depth of the band under each lower lid that is lifted
    under_eye_blur: float = 0.06
    under_eye_lift: float = 0.1  # share of `under_eye_whiten` the under-eyes are lifted by, at full youth
    under_eye_whiten: float = 0.5  # share of the way to white that lift aims at


@dataclass(frozen=True)
class Nudge:
    """A smooth local move at a mesh point: (dx, dy) in u times an amount, over a Gaussian of `radius` u."""

    dx: float  # outward from the face's middle (negative: inward)
    dy: float  # down (negative: up)
    radius: float


@dataclass(frozen=True)
class Zoom:
    """A local zoom about a point: `growth` (negative: shrink) times an amount, in a Gaussian of `radius`."""

    growth: float
    radius: float


@dataclass(frozen=True)
class Shape:
    """Sagging for older targets, lifted fuller cheeks for younger ones, teenage proportions under 22."""

    jowl_sag: Nudge = Nudge(0.03, 0.15, 0.35)
    cheek_sag: Nudge = Nudge(0.0, 0.1, 0.3)
    mouth_corner_sag: Nudge = Nudge(0.0, 0.05, 0.12)
    brow_sag: Nudge = Nudge(0.0, 0.07, 0.18)  # the outer brows
    lips_thin: Zoom = Zoom(-0.1, 0.2)  # the mouth narrows towards its own line
    lift_from_youth: float = 0.4  # younger targets lift this much even where the curves remove no sag
    cheekbone_lift: Nudge = Nudge(0.04, -0.03, 0.3)  # fuller cheeks
    jowl_lift: Nudge = Nudge(0.0, -0.05, 0.3)
    child_eyes: Zoom = Zoom(0.09, 0.28)  # larger eyes
    child_jaw: Nudge = Nudge(-0.07, -0.04, 0.3)  # a narrower jaw
    child_nose: Zoom = Zoom(-0.08, 0.3)  # a smaller nose
    child_chin: Nudge = Nudge(0.0, -0.06, 0.35)  # a higher chin
    bump_reach: float = 3.0  # radii beyond which a move is left out
    edge_blur: float = 0.05  # sigma (u) over which the move fades at the face's edge
    features_ride: float = 0.7  # eyes and lips move this much less: they ride along gently, not torn


@dataclass(frozen=True)
class HairColour:
    """Greying that keeps the strands' relief, and grey going back to the hair's own shade or a mid brown."""

    silver: float = 172.0  # lightness fully grey hair moves to
    grey_relief: float = 1.15  # strands' contrast about the hair's mean lightness, once grey
    drain: float = 0.85  # share of the colour (a, b) grey hair loses
    ivory: float = 3.0  # b added at full grey: a faint ivory, as grey hair has
    brown_lightness: float = 60.0  # a mid brown's lightness, the darkest that grey hair goes back to
    brown_relief: float = 0.6  # strands' contrast about the mean, once brown
    brown_a: float = 7.0  # a and b of that brown at `brown_lightness` (less for darker strands)
    brown_b: float = 16.0
    pepper_gap: float = 40.0  # lightness above the dark strands' at which a strand counts fully grey
    pepper_chroma: float = 20.0  # chroma at which a strand no longer counts grey at all
    pepper_darken: float = 0.85  # share of the way to the dark strands' shade a grey strand goes
    dark_strands: float = 0.25  # the hair's darker strands: this weighted percentile of its lightness
    strand_mask: float = 0.3  # hair-mask value a pixel needs to count as a strand there
    grey_chroma: float = 14.0  # hair under this mean chroma and over `grey_lightness` is grey or white
    grey_lightness: float = 100.0


@dataclass(frozen=True)
class Blur:
    """The Gaussian blur's shortcut for wide blurs."""

    full_size_up_to: float = 6.0  # sigma (pixels) up to which the blur runs on the image itself
    shrink_per: int = 3  # wider ones run on a copy shrunk by sigma // this (looks the same, a tenth the cost)
    min_sigma: float = 0.5


# The window and its masks (regions.py): what the layers above are placed in.


@dataclass(frozen=True)
class WindowShape:
    """The crop around face and hair, and the scale it is processed at."""

    work_unit: float = 110.0  # eye distance (pixels) the window is processed at, at most; smaller stay as is
    margin: tuple[float, float, float, float] = (1.6, 2.0, 1.6, 0.9)  # around the mesh (left, top, right,
    # bottom), in eye distances


@dataclass(frozen=True)
class Masks:
    """The face's regions: features kept, skin, hair, and where anything may change (lengths in u)."""

    eye_margin: float = 0.08  # eyes, brows and lips are kept a little beyond their outlines
    brow_margin: float = 0.05
    lip_margin: float = 0.03
    skin_feather: float = 0.12  # the skin mask fades in over this, inward from its edge
    hair_grow: float = 0.1  # `allowed` reaches this far beyond the hair, so its outermost strands change too
    allowed_feather: float = 0.1
    hair_inner_feather: float = 0.1  # darkening fades in over this from the hair's edge
    hair_present: float = 0.05  # hair-mask value from which a pixel counts as hair for those masks
    fringe_present: float = 0.5  # and from which it is hair, not skin, inside the face oval


@dataclass(frozen=True)
class Likeness:
    """How close a pixel's colour is to a sample's (Lab): 1 near its mean, 0 a few deviations out."""

    std_floor: tuple[float, float, float] = (16.0, 3.0, 3.0)  # added to the sample's deviation (L, a, b)
    scale: float = 2.5  # deviations per unit of distance
    full: float = 1.5  # likeness at the mean (clipped to 1): 1 within 1.25 deviations, 0 beyond 3.75
    cheek_sample: float = 0.08  # half-side of the square sampled at each cheek point (u), 2 pixels at least
    min_samples: int = 20  # fewer skin pixels than this, and nothing is said to be skin-like


@dataclass(frozen=True)
class HairMask:
    """Which pixels are head hair: the person mask near the head, above the chin, not skin (lengths in u)."""

    reach: float = 1.15  # hair counts up to this far outside the face oval
    probability: float = 0.5  # person-mask value from which a pixel is the person
    oval_grow: float = 0.02  # the face oval grown by this is never hair outside it
    fringe_above_brows: float = 0.05  # a fringe counts only this far above the brows' top
    chin: float = 0.75  # share of the way from the eyes to the chin where hair fades out
    chin_fade: float = 0.2  # over this
    beside_fade: float = 0.2  # below the brows, over this, hair must also look like the crown's
    blur: float = 0.02  # sigma, at least `blur_min` pixels
    blur_min: float = 0.5
    crown_gap: float = 0.1  # the crown band starts this far above the forehead's top
    crown_height: float = 0.5
    crown_not_skin: float = 0.2  # skin likeness under which a crown pixel shows the hair's colour
    crown_min_pixels: int = 30  # fewer, and the crown says nothing
    crown_contrast: float = 2.0  # how sharply "more like the crown than like skin" turns into hair


CURVES = AgeCurves()
STROKES = Strokes()
FOLDS = Folds()
FINE_LINES = FineLines()
SHADING = LineShading()
SKIN = SkinTone()
SPOTS = AgeSpots()
SMOOTHING = Smoothing()
SHAPE = Shape()
HAIR = HairColour()
BLUR = Blur()
WINDOW = WindowShape()
MASKS = Masks()
LIKENESS = Likeness()
HAIR_MASK = HairMask()
