"""The embedded default data set: cartoon faces drawn procedurally, with known clean labels.

Every image is a face (head oval, ears, neck, optional hair, eyes with lids and pupils,
eyebrows, nose, mouth as a curved band of lips around an opening) rendered with numpy from
soft signed distances, so edges are antialiased and the whole batch is drawn at once.

An expression is a vector of facial-geometry parameters (:data:`PARAM_NAMES`). Each class
has a prototype (:data:`PROTOTYPES`); a sample takes its class prototype plus Gaussian
jitter on every parameter. A known fraction of samples is *ambiguous*: its geometry is the
blend ``w * prototype[clean] + (1 - w) * prototype[other]`` with ``w`` drawn in
[0.5, 0.65]; the clean label is the dominant class, ``ambiguity = 1 - w`` and
``blend_label = other`` (``ambiguity = 0`` and ``blend_label = -1`` for clear samples).

Nuisance per sample: in-plane rotation, scale, translation, a yaw-like horizontal shift of
the features, skin tone, hair colour and style (or none), eye colour, lighting gradient and
brightness, background colour, gradient and texture, Gaussian blur and pixel noise.

Classes are balanced: ``label = arange(num) % 7``, shuffled by the seed's generator.

``load()`` caches the rendered splits as one ``.npz`` file whose name carries the
parameters and :data:`GENERATOR_VERSION` (bump it whenever rendering changes).
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relabscope.atomic import atomic_write
from relabscope.data.base import ArraySource, DataSplits, FERDataset
from relabscope.data.cache import cache_dir

GENERATOR_VERSION = 2  # bump whenever the rendering or the parameters change

CLASS_NAMES: tuple[str, ...] = (
    "Surprise",
    "Fear",
    "Disgust",
    "Happiness",
    "Sadness",
    "Anger",
    "Neutral",
)

# Facial-geometry parameters, roughly in -1..1 (0 = neutral face). Opposite movements that
# would cancel out in a blend (smile / frown) are separate parameters with different shapes,
# so a blend of two classes shows traces of both instead of fading to a neutral face.
PARAM_NAMES: tuple[str, ...] = (
    "mouth_smile",  # 0 .. 1, mouth curved up (centre low, corners high)
    "mouth_frown",  # 0 .. 1, mouth corners turned down
    "mouth_open",  # 0 closed .. 1 wide open
    "mouth_width",  # - narrow / round .. + stretched
    "brow_raise",  # + raised, - lowered
    "brow_inner",  # + inner ends raised (sad, fear), - inner ends lowered (anger)
    "eye_open",  # + wide, - narrowed
    "nose_wrinkle",  # 0 .. 1 (disgust)
    "lip_raise",  # 0 .. 1, upper lip raised on one side (disgust)
    "lip_press",  # 0 .. 1, lips pressed thin (anger)
    "cheek_raise",  # 0 .. 1, cheeks up: lower lids up, nasolabial folds (happiness)
    "brow_furrow",  # 0 .. 1, vertical creases between the brows (anger)
    "forehead_lines",  # 0 .. 1, horizontal creases above raised brows (surprise, fear)
    "corner_lines",  # 0 .. 1, creases down from depressed mouth corners (sadness)
)

# One row per parameter, one column per class (transposed below: PROTOTYPES[class]).
# fmt: off
_PROTOTYPE_TABLE = np.array([
    # Surpr  Fear   Disg   Happy  Sad    Anger  Neutr
    [ 0.00,  0.00,  0.00,  1.00,  0.00,  0.00,  0.00],  # mouth_smile
    [ 0.00,  0.50,  0.55,  0.00,  1.00,  0.20,  0.00],  # mouth_frown
    [ 1.00,  0.35,  0.10,  0.45,  0.00,  0.00,  0.00],  # mouth_open
    [-0.70,  1.00,  0.10,  0.70, -0.20, -0.30,  0.00],  # mouth_width
    [ 1.10,  0.55, -0.50,  0.10, -0.15, -0.65,  0.00],  # brow_raise
    [ 0.10,  1.10,  0.15,  0.00,  1.00, -1.20,  0.00],  # brow_inner
    [ 1.00,  0.80, -0.70, -0.35, -0.55,  0.35,  0.00],  # eye_open
    [ 0.00,  0.00,  1.00,  0.00,  0.00,  0.00,  0.00],  # nose_wrinkle
    [ 0.00,  0.00,  1.00,  0.00,  0.00,  0.00,  0.00],  # lip_raise
    [ 0.00,  0.00,  0.00,  0.00,  0.30,  1.00,  0.00],  # lip_press
    [ 0.00,  0.00,  0.15,  1.00,  0.00,  0.00,  0.00],  # cheek_raise
    [ 0.00,  0.30,  0.00,  0.00,  0.20,  1.00,  0.00],  # brow_furrow
    [ 1.00,  0.70,  0.00,  0.00,  0.30,  0.00,  0.00],  # forehead_lines
    [ 0.00,  0.30,  0.15,  0.00,  1.00,  0.00,  0.00],  # corner_lines
], dtype=np.float32)
# fmt: on
PROTOTYPES = np.ascontiguousarray(_PROTOTYPE_TABLE.T)  # classes x parameters

# Standard deviation of the per-sample jitter of each parameter.
JITTER = np.array(
    [0.08, 0.08, 0.06, 0.10, 0.10, 0.10, 0.10, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07],
    np.float32,
)

# Value ranges parameters are clipped to after jitter.
_LOW = np.array([0, 0, 0, -1.0, -1.3, -1.4, -1.0, 0, 0, 0, 0, 0, 0, 0], np.float32)
_HIGH = np.array([1.2, 1.2, 1.1, 1.1, 1.3, 1.3, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2], "f4")

AMBIGUOUS_WEIGHT = (0.5, 0.65)  # weight w of the clean class in a blended sample
_SCALE_RANGE = (0.85, 1.1)  # face size relative to the default

_SKIN_LIGHT = np.array([0.98, 0.85, 0.72], np.float32)
_SKIN_DARK = np.array([0.47, 0.31, 0.2], np.float32)
_HAIR = np.array(
    [
        [0.07, 0.06, 0.05],  # black
        [0.22, 0.13, 0.07],  # dark brown
        [0.42, 0.27, 0.13],  # brown
        [0.80, 0.66, 0.38],  # blond
        [0.55, 0.22, 0.08],  # red
        [0.62, 0.62, 0.62],  # grey
    ],
    np.float32,
)
_IRIS = np.array(
    [[0.25, 0.15, 0.08], [0.10, 0.07, 0.05], [0.20, 0.35, 0.55], [0.25, 0.40, 0.25]],
    np.float32,
)

_CHUNK = 128  # samples rendered at once (bounds memory; part of the seed's meaning)


# --------------------------------------------------------------------------- face layout
# Lengths are in face units: the face is centred on (0, 0), u points to the viewer's right, v points down,
# and 1.0 is half the image width for a face of scale 1. Paired features are given for the viewer's right
# side (u > 0) and mirrored. A "window" is the half size of the square of pixels a feature is drawn in
# (see _Window). Colours are RGB in 0..1; a "shade" or "tint" multiplies the sample's skin colour.

# Background.
_BG_CONTRAST = 0.7  # share of each background colour's distance from mid grey kept: muted, a backdrop
_BG_TEXTURE_CELLS = 6  # the texture is this many random colours per side, upsampled smoothly

# Colours derived from the skin, hair and fixed colours.
_CREASE_SHADE = 0.45  # creases, wrinkles, nostrils and the side of the nose
_NECK_SHADE = 0.85  # the neck lies in the head's shadow
_EAR_SHADE = 0.9
_BLUSH_TINT = np.array([1.0, 0.75, 0.75], np.float32)
_LIP_TINT = np.array([0.85, 0.5, 0.5], np.float32)
_LID_INK_SHADE = 0.3  # lid outline: the darker of hair and this skin shade ...
_LID_INK_DARKEN = 0.6  # ... darkened by this factor
_BROW_HAIR_SHADE = 0.8  # eyebrows: the darker of the hair times this and the skin times _BROW_SKIN_SHADE
_BROW_SKIN_SHADE = 0.45
_EYE_WHITE = np.array([0.96, 0.96, 0.93], np.float32)
_PUPIL_GREY = np.float32(0.02)
_MOUTH_DARK = np.array([0.25, 0.05, 0.07], np.float32)  # inside of the open mouth and the closed-lip seam
_TEETH = np.array([0.95, 0.94, 0.9], np.float32)

# Neck, ears and hair; margins and insets are relative to the sample's head radii (head_rx, head_ry).
_NECK_HALF_WIDTH = 0.26
_NECK_TOP = 0.55  # the neck starts here; above, the head covers it
_EAR_INSET = 0.02  # ear centre this far inside the head's horizontal radius
_EAR_V = 0.02
_EAR_RADII = (0.09, 0.15)  # horizontal, vertical
_EAR_WINDOW = 0.17
_LONG_HAIR_V = -0.05  # centre of the hair behind the head
_LONG_HAIR_MARGIN = (0.09, 0.05)  # beyond the head radii (u, v): the hair frames the face
_LONG_HAIR_END = 0.35  # cut straight across at this height
_HAIR_CAP_V = -0.02  # centre of the hair on top of the head
_HAIR_CAP_MARGIN = (0.05, 0.06)  # beyond the head radii (u, v): the hair's volume
_HAIRLINE_DROP = 0.22  # the hairline is this much lower at the temples (u = head radius) than in the middle

# Yaw moves all inner features sideways; the nose, nearer the viewer, by this factor more.
_NOSE_YAW_GAIN = 1.4

# Cheeks (blush when raised).
_CHEEK_CENTRE = (0.33, 0.2)
_CHEEK_RADII = (0.11, 0.08)
_CHEEK_WINDOW = 0.24
_BLUSH_FALLOFF = 0.08  # the blush fades out over this distance around its ellipse
_BLUSH_OPACITY = 0.3  # at full cheek_raise

# Nose. Segments are (u0, v0, u1, v1); radii are line thicknesses (half widths).
_NOSE_WINDOW = (0.03, 0.11, 0.21)  # centre u, v and window
_NOSE_BRIDGE = (0.035, -0.02, 0.06, 0.18)  # shading down one side of the bridge
_NOSE_BRIDGE_RADIUS = 0.014
_NOSE_BRIDGE_OPACITY = 0.35
_NOSTRIL_CENTRE = (0.055, 0.25)
_NOSTRIL_RADII = (0.034, 0.02)
_NOSTRIL_OPACITY = 0.85
_NOSE_WRINKLE_V = (-0.02, 0.03, 0.08)  # heights of the lines across the bridge (nose_wrinkle, disgust)
_NOSE_WRINKLE_HALF_WIDTH = 0.05  # of the top line ...
_NOSE_WRINKLE_WIDEN = 0.012  # ... each lower line is this much wider on each side
_NOSE_WRINKLE_SLANT = 0.012  # a line's right end is this much lower than its left end
_NOSE_WRINKLE_OPACITY = 0.85
_BUNNY_LINE = (0.07, 0.03, 0.14, 0.14)  # diagonal creases down the sides of the nose (nose_wrinkle)
_BUNNY_LINE_OPACITY = 0.8
_NOSE_LINE_RADIUS = 0.016  # wrinkles and bunny lines

# Eyes. The upper half of the eye opening is taller than the lower half.
_EYE_CENTRE = (0.26, -0.05)
_EYE_HALF_WIDTH = 0.15
_EYE_WIDEN = 0.02  # extra half width at eye_open = 1 (wide eyes only; narrowed eyes keep their width)
_EYE_HALF_HEIGHT = 0.085  # of the upper half at eye_open = 0 ...
_EYE_OPEN_GAIN = 0.7  # ... scaled by 1 + this * eye_open
_CHEEK_LID_PUSH = 0.45  # raised cheeks flatten the lower half by this fraction
_IRIS_RADIUS = 0.07
_PUPIL_RADIUS = 0.035
_LID_LINE_UPPER = np.float32(0.028)  # lid outline thickness: the upper lid (with lashes) is heavier
_LID_LINE_LOWER = np.float32(0.012)
_EYE_WINDOW = (-0.22, 0.37)  # centre v and window: one eye and its brow

# Eyebrows: two thick segments through an inner, a middle and an outer point. Each point is
# (u, offset from the brow height, its move per unit of brow_inner): raised inner ends tilt the brow.
_BROW_V = -0.28  # brow height at brow_raise = 0 ...
_BROW_RAISE = 0.12  # ... moved up by this much per unit of brow_raise
_BROW_POINTS = ((0.1, 0.02, -0.1), (0.25, -0.04, -0.02), (0.41, 0.01, 0.03))
_BROW_RADII = (0.045, 0.038)  # inner and outer segment; the brow thins outwards

# Creases between the brows (brow_furrow) and across the forehead (forehead_lines).
_FOREHEAD_WINDOW = (-0.33, 0.33)  # centre v and window
_FURROW = (0.045, -0.02, 0.035, 0.09)  # (u0, dv0, u1, dv1): dv is relative to the brow height
_FURROW_RADIUS = 0.012
_FURROW_OPACITY = 0.85
_FOREHEAD_LINES = ((-0.5, 0.2), (-0.57, 0.16))  # (v, half width) of each line
_FOREHEAD_LINE_RADIUS = 0.014
_FOREHEAD_LINE_OPACITY = 0.75

# Mouth. Horizontal position along the mouth is q = u / half width (0 centre, +-1 corners).
_MOUTH_WINDOW = (0.46, 0.5)  # centre v and window; covers the folds and corner lines too
_MOUTH_V = 0.5  # height of the neutral lip line
_MOUTH_HALF_WIDTH = 0.25
_MOUTH_STRETCH = 0.38  # half width scaled by 1 + this * mouth_width ...
_PRESS_NARROW = 0.1  # ... and by 1 - this * lip_press
_MOUTH_Q_LIMIT = 1.5  # the lip line stops bending this far out (the folds end beyond the corners)
_SMILE_CURVE = 0.14  # parabola depth per unit of mouth_smile ...
_SMILE_PIVOT = 0.5  # ... crossing the neutral line at q**2 = this: centre lower, corners higher
_FROWN_DROOP = 0.15  # corners lowered by this per unit of mouth_frown ...
_FROWN_ONSET = 0.3  # ... starting from |q| = this ...
_FROWN_NORM = 0.49  # ... normalised by (1 - onset)**2, so the full droop is reached at the corners
_MOUTH_OPEN = 0.13  # opening height per unit of mouth_open, split ...
_OPEN_UP = 0.8  # ... this much above the lip line ...
_OPEN_DOWN = 1.2  # ... and this much below it (the jaw drops)
_LIP_RAISE = 0.15  # upper lip raised by this per unit of lip_raise ...
_LIP_RAISE_SLOPE = 0.7  # ... more on the lip_side side: weight 0.5 + this * lip_side * q, clipped to 0..1
_LIP_THICKNESS = 0.045
_PRESS_THIN = 0.65  # lips get this fraction thinner at full lip_press
_TEETH_HEIGHT = 0.045  # upper teeth show this far below the upper edge of the opening
_SEAM_HALF_THICKNESS = 0.011  # the line where closed lips meet ...
_SEAM_OVERHANG = 0.01  # ... reaching this far past the corners
_SEAM_OPACITY = 0.8

# Lines around the mouth: nasolabial folds (cheek_raise) and creases down from the corners (corner_lines).
_FOLD_START = (0.13, 0.22)  # at the nose wing ...
_FOLD_PAST_CORNER = 0.06  # ... to this far outside the mouth corner ...
_FOLD_ABOVE_CORNER = 0.01  # ... and this much above it
_FOLD_OPACITY = 0.65
_CORNER_LINE_OUT = 0.02  # corner creases start this far outside the corner ...
_CORNER_LINE_DROP = (0.04, 0.15)  # ... running from this far below it to this far below it ...
_CORNER_LINE_SLANT = 0.03  # ... and outwards by this much
_CORNER_LINE_OPACITY = 0.75
_MOUTH_LINE_RADIUS = 0.013  # folds and corner creases

# Finishing.
_BLUR_REFERENCE_SIZE = 64.0  # the sample's blur sigma is in pixels of a 64-pixel image


# --------------------------------------------------------------------------- shapes


def _ellipse(u, v, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    pu = (u - cx) / rx
    pv = (v - cy) / ry
    k0 = np.sqrt(pu * pu + pv * pv)
    k1 = np.sqrt((pu / rx) ** 2 + (pv / ry) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _capsule(u, v, ax, ay, bx, by, r):
    """Signed distance to the segment a-b thickened by radius r."""
    pu, pv = u - ax, v - ay
    bu, bv = bx - ax, by - ay
    h = np.clip((pu * bu + pv * bv) / (bu * bu + bv * bv + 1e-9), 0.0, 1.0)
    du, dv = pu - bu * h, pv - bv * h
    return np.sqrt(du * du + dv * dv) - r


def _cover(d, px):
    """Antialiased coverage (0..1) of the shape with signed distance d; px = pixel size."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _paint(img, alpha, color):
    """Composite colour (n x 1 x 1 x 3 or n x H x W x 3) over img with coverage alpha."""
    tmp = color - img
    tmp *= alpha[..., None]
    img += tmp


def _mark(x):
    """Opacity of a crease marker: saturating, so a half-strength marker stays visible
    (a blend of two classes shows both classes' creases instead of fading to neutral)."""
    return np.clip(1.6 * x - 0.1, 0.0, 1.0)


def _col(c):
    """Per-sample colours n x 3 -> n x 1 x 1 x 3."""
    return c[:, None, None, :]


# --------------------------------------------------------------------------- sampling


def _sample(num: int, rng: np.random.Generator, ambiguous_fraction: float) -> dict:
    """All per-sample random quantities, drawn in a fixed order (determinism)."""
    k = len(CLASS_NAMES)
    labels = rng.permutation(np.arange(num) % k).astype(np.int64)

    n_amb = int(round(ambiguous_fraction * num))
    blended = np.zeros(num, bool)
    blended[rng.permutation(num)[:n_amb]] = True
    other = (labels + rng.integers(1, k, size=num)) % k
    w = rng.uniform(*AMBIGUOUS_WEIGHT, size=num).astype(np.float32)
    w = np.where(blended, w, 1.0).astype(np.float32)
    blend_label = np.where(blended, other, -1).astype(np.int64)
    ambiguity = np.where(blended, 1.0 - w, 0.0).astype(np.float32)

    geom = w[:, None] * PROTOTYPES[labels] + (1.0 - w[:, None]) * PROTOTYPES[other]
    geom = geom + rng.normal(size=geom.shape).astype(np.float32) * JITTER
    geom = np.clip(geom, _LOW, _HIGH).astype(np.float32)

    u = lambda lo, hi: rng.uniform(lo, hi, size=num).astype(np.float32)  # noqa: E731
    s = {
        "labels": labels,
        "ambiguity": ambiguity,
        "blend_label": blend_label,
        "geom": geom,
        "angle": np.deg2rad(u(-15, 15)),
        "scale": u(*_SCALE_RANGE),
        "tx": u(-0.08, 0.08),
        "ty": u(-0.07, 0.07),
        "yaw": u(-0.07, 0.07),
        "head_rx": u(0.56, 0.64),
        "head_ry": u(0.76, 0.84),
        "jaw": u(0.05, 0.25),
        "lip_side": np.where(rng.random(num) < 0.5, -1.0, 1.0).astype(np.float32),
        "gaze": u(-0.025, 0.025),
        "eye_dx": u(-0.02, 0.02),
        "skin_t": u(0.0, 1.0),
        "skin_tint": rng.normal(scale=0.03, size=(num, 3)).astype(np.float32),
        "has_hair": rng.random(num) < 0.8,
        "long_hair": rng.random(num) < 0.4,
        "hairline": u(-0.74, -0.64),
        "hair": _HAIR[rng.integers(0, len(_HAIR), size=num)],
        "iris": _IRIS[rng.integers(0, len(_IRIS), size=num)],
        "bg1": rng.uniform(0.05, 0.95, size=(num, 3)).astype(np.float32),
        "bg2": rng.uniform(0.05, 0.95, size=(num, 3)).astype(np.float32),
        "bg_angle": u(0, 2 * np.pi),
        "bg_tex": rng.normal(scale=0.04, size=(num, _BG_TEXTURE_CELLS, _BG_TEXTURE_CELLS, 3)).astype(np.float32),
        "light": rng.uniform(-0.25, 0.25, size=(num, 2)).astype(np.float32),
        "bright": u(0.8, 1.15),
        "blur": u(0.0, 1.0),
        "noise": u(0.0, 0.025),
    }
    return s


# --------------------------------------------------------------------------- rendering


def _upsample_matrix(src: int, dst: int) -> np.ndarray:
    """dst x src bilinear interpolation weights (align-corners style)."""
    pos = np.linspace(0, src - 1, dst)
    lo = np.floor(pos).astype(int).clip(0, src - 2)
    frac = pos - lo
    m = np.zeros((dst, src), np.float32)
    m[np.arange(dst), lo] = 1 - frac
    m[np.arange(dst), lo + 1] += frac
    return m


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with a per-sample sigma (pixels), edges replicated."""
    r = 3
    taps = np.arange(-r, r + 1, dtype=np.float32)
    sig = np.maximum(sigma, 0.05)[:, None]
    k = np.exp(-(taps[None, :] ** 2) / (2 * sig**2))
    k /= k.sum(axis=1, keepdims=True)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(img, pad, mode="edge")
        out = np.zeros_like(img)
        n = img.shape[axis]
        for i in range(2 * r + 1):
            sl = [slice(None)] * 4
            sl[axis] = slice(i, i + n)
            out += k[:, i, None, None, None] * p[tuple(sl)]
        img = out
    return img


def _pixel_centres(size: int) -> np.ndarray:
    """Image coordinate (-1 .. 1) of the centre of each of ``size`` pixel rows or columns."""
    return ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1


_MAX_SCALE = _SCALE_RANGE[1]  # feature windows are sized for the largest face


class _Window:
    """A square pixel window per sample around a face-coordinate point, for small features.

    Features are drawn on the window's pixels only (a few hundred instead of size**2);
    ``commit`` writes the window back into the image.
    """

    def __init__(self, img, geo, cu, cv, radius):
        n, size = img.shape[0], img.shape[1]
        tx, ty, scale, ca, sa = geo
        x = tx + scale * (ca * cu - sa * cv)
        y = ty + scale * (sa * cu + ca * cv)
        k = int(np.ceil(radius * _MAX_SCALE * size / 2)) + 2
        m = min(2 * k + 1, size)
        span = np.arange(m)
        r0 = np.clip(np.round((y + 1) / 2 * size - 0.5).astype(np.int64) - k, 0, size - m)
        c0 = np.clip(np.round((x + 1) / 2 * size - 0.5).astype(np.int64) - k, 0, size - m)
        rows = r0[:, None] + span
        cols = c0[:, None] + span
        grid = _pixel_centres(size)
        dx = grid[cols][:, None, :] - tx[:, None, None]
        dy = grid[rows][:, :, None] - ty[:, None, None]
        s3, c3, a3 = scale[:, None, None], ca[:, None, None], sa[:, None, None]
        self.u = (c3 * dx + a3 * dy) / s3
        self.v = (-a3 * dx + c3 * dy) / s3
        self.idx = (np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :])
        self.img = img[self.idx]

    def commit(self, img):
        img[self.idx] = self.img


@dataclass(frozen=True)
class _Expression:
    """One chunk's facial-geometry parameters (:data:`PARAM_NAMES`), each n x 1 x 1 to broadcast over pixels."""

    mouth_smile: np.ndarray
    mouth_frown: np.ndarray
    mouth_open: np.ndarray
    mouth_width: np.ndarray
    brow_raise: np.ndarray
    brow_inner: np.ndarray
    eye_open: np.ndarray
    nose_wrinkle: np.ndarray
    lip_raise: np.ndarray
    lip_press: np.ndarray
    cheek_raise: np.ndarray
    brow_furrow: np.ndarray
    forehead_lines: np.ndarray
    corner_lines: np.ndarray

    @classmethod
    def of(cls, geom: np.ndarray) -> _Expression:
        """Split the n x parameters matrix into named parameters (by name, so the order cannot slip)."""
        return cls(**{name: geom[:, i, None, None] for i, name in enumerate(PARAM_NAMES)})


@dataclass(frozen=True)
class _Face:
    """What every drawing step of one chunk shares.

    ``u``, ``v`` are the face coordinates of every pixel (n x H x W), so a shape drawn at a fixed face
    position lands where the sample's rotation, scale and translation put it; ``px`` is one pixel in face
    units (n x 1 x 1), the width of the antialiased edges.
    """

    traits: dict[str, np.ndarray]  # this chunk's rows of every per-sample array from _sample
    expression: _Expression
    geo: tuple[np.ndarray, ...]  # tx, ty, scale, cos, sin of the face-to-image transform (for _Window)
    u: np.ndarray
    v: np.ndarray
    px: np.ndarray
    skin: np.ndarray  # n x 3
    hair: np.ndarray  # n x 3
    crease: np.ndarray  # n x 1 x 1 x 3, the colour of creases, wrinkles and nostrils

    def per_pixel(self, name: str) -> np.ndarray:
        """A per-sample trait shaped n x 1 x 1, to broadcast over the pixels."""
        return self.traits[name][:, None, None]

    @property
    def yaw(self) -> np.ndarray:
        """Sideways shift of the inner features (n), simulating a slightly turned head."""
        return self.traits["yaw"]

    def window(self, img: np.ndarray, cu: float | np.ndarray, cv: float, radius: float) -> _Window:
        """The pixels within ``radius`` face units of face point (cu, cv), to draw a small feature on."""
        return _Window(img, self.geo, cu, cv, radius)


def _place_face(traits: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, size: int) -> _Face:
    """Face coordinates of every pixel (undoing translation, rotation and scale) and the sample's colours."""
    tx, ty, scale, angle = traits["tx"], traits["ty"], traits["scale"], traits["angle"]
    cos, sin = np.cos(angle), np.sin(angle)
    sc, ca, sa = scale[:, None, None], cos[:, None, None], sin[:, None, None]
    dx, dy = x - tx[:, None, None], y - ty[:, None, None]
    skin = _SKIN_LIGHT + traits["skin_t"][:, None] * (_SKIN_DARK - _SKIN_LIGHT) + traits["skin_tint"]
    skin = np.clip(skin, 0, 1)
    return _Face(
        traits=traits,
        expression=_Expression.of(traits["geom"]),
        geo=(tx, ty, scale, cos, sin),
        u=(ca * dx + sa * dy) / sc,
        v=(-sa * dx + ca * dy) / sc,
        px=2.0 / (size * sc),  # the image spans 2 units over size pixels
        skin=skin,
        hair=traits["hair"],
        crease=_col(skin * _CREASE_SHADE),
    )


def _background(traits: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """The backdrop (n x H x W x 3 float32): a muted two-colour gradient at a random angle plus a smooth
    low-frequency colour texture: nuisance variation a classifier has to learn to ignore."""
    angle = traits["bg_angle"][:, None, None]
    # 0 .. 1 from corner to corner; computed in float64 (np.sqrt(2) is a numpy double), which the pixels depend on
    ramp = 0.5 + 0.5 * (np.cos(angle) * x + np.sin(angle) * y) / np.sqrt(2)
    start = 0.5 + _BG_CONTRAST * (traits["bg1"] - 0.5)  # pulled toward mid grey
    end = 0.5 + _BG_CONTRAST * (traits["bg2"] - 0.5)
    img = _col(start) + ramp[..., None] * _col(end - start)
    up = _upsample_matrix(_BG_TEXTURE_CELLS, size)
    img = img + np.einsum("ia,nabc,jb->nijc", up, traits["bg_tex"], up, optimize=True)
    return np.ascontiguousarray(img, dtype=np.float32)


def _draw_long_hair(img: np.ndarray, face: _Face) -> None:
    """Long hair behind the head: an oval larger than the head, cut straight across at shoulder height.

    Drawn first, so that the neck, ears and head cover it.
    """
    hrx, hry = face.per_pixel("head_rx"), face.per_pixel("head_ry")
    rx, ry = hrx + _LONG_HAIR_MARGIN[0], hry + _LONG_HAIR_MARGIN[1]
    back = np.maximum(_ellipse(face.u, face.v, 0.0, _LONG_HAIR_V, rx, ry), face.v - _LONG_HAIR_END)
    shown = face.per_pixel("has_hair").astype(np.float32) * face.per_pixel("long_hair")
    _paint(img, _cover(back, face.px) * shown, _col(face.hair))


def _draw_neck(img: np.ndarray, face: _Face) -> None:
    """The neck: a shaded band downwards from under the head, which covers its top."""
    neck = np.maximum(np.abs(face.u) - _NECK_HALF_WIDTH, _NECK_TOP - face.v)
    _paint(img, _cover(neck, face.px), _col(face.skin * _NECK_SHADE))


def _draw_ears(img: np.ndarray, face: _Face) -> None:
    """Two ears: ovals at the sides of the head, slightly shaded; the head, drawn next, covers their inner part."""
    hrx = face.per_pixel("head_rx")
    for side in (-1.0, 1.0):
        w = face.window(img, side * (face.traits["head_rx"] - _EAR_INSET), _EAR_V, _EAR_WINDOW)
        ear = _ellipse(w.u, w.v, side * (hrx - _EAR_INSET), _EAR_V, *_EAR_RADII)
        _paint(w.img, _cover(ear, face.px), _col(face.skin * _EAR_SHADE))
        w.commit(img)


def _draw_head(img: np.ndarray, face: _Face) -> None:
    """The head: an oval whose lower half narrows toward the chin (by the sample's ``jaw``)."""
    hrx, hry = face.per_pixel("head_rx"), face.per_pixel("head_ry")
    narrowing = 1.0 - face.per_pixel("jaw") * np.clip(face.v / hry, 0.0, 1.0)
    head = _ellipse(face.u / narrowing, face.v, 0.0, 0.0, hrx, hry)
    _paint(img, _cover(head, face.px), _col(face.skin))


def _draw_hair(img: np.ndarray, face: _Face) -> None:
    """Hair on top of the head (for samples with hair): an oval a little larger than the head, down to a
    hairline that curves lower toward the temples."""
    hrx, hry = face.per_pixel("head_rx"), face.per_pixel("head_ry")
    cap = _ellipse(face.u, face.v, 0.0, _HAIR_CAP_V, hrx + _HAIR_CAP_MARGIN[0], hry + _HAIR_CAP_MARGIN[1])
    hairline = face.per_pixel("hairline") + _HAIRLINE_DROP * (face.u / hrx) ** 2
    shown = face.per_pixel("has_hair").astype(np.float32)
    _paint(img, _cover(np.maximum(cap, face.v - hairline), face.px) * shown, _col(face.hair))


def _draw_cheeks(img: np.ndarray, face: _Face) -> None:
    """A soft blush on both cheeks, as strong as the cheeks are raised (happiness)."""
    colour = _col(np.clip(face.skin * _BLUSH_TINT, 0, 1))
    strength = _BLUSH_OPACITY * _mark(face.expression.cheek_raise)
    cu, cv = _CHEEK_CENTRE
    for side in (-1.0, 1.0):
        w = face.window(img, side * cu + face.yaw, cv, _CHEEK_WINDOW)
        blush = _ellipse(w.u - face.per_pixel("yaw"), w.v, side * cu, cv, *_CHEEK_RADII)
        _paint(w.img, _cover(blush, _BLUSH_FALLOFF) * strength, colour)  # a wide edge: soft
        w.commit(img)


def _draw_nose(img: np.ndarray, face: _Face) -> None:
    """The nose, drawn only by its shadows: shading down one side of the bridge, two nostrils, and the
    wrinkles of disgust. It moves further with yaw than the other features (it is nearer the viewer)."""
    wu, wv, radius = _NOSE_WINDOW
    w = face.window(img, _NOSE_YAW_GAIN * face.yaw + wu, wv, radius)
    u, v = w.u - _NOSE_YAW_GAIN * face.per_pixel("yaw"), w.v
    bridge = _capsule(u, v, *_NOSE_BRIDGE, _NOSE_BRIDGE_RADIUS)
    _paint(w.img, _cover(bridge, face.px) * _NOSE_BRIDGE_OPACITY, face.crease)
    nu, nv = _NOSTRIL_CENTRE
    for side in (-1.0, 1.0):
        nostril = _ellipse(u, v, side * nu, nv, *_NOSTRIL_RADII)
        _paint(w.img, _cover(nostril, face.px) * _NOSTRIL_OPACITY, face.crease)
    _draw_nose_wrinkles(w.img, u, v, face)
    w.commit(img)


def _draw_nose_wrinkles(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, face: _Face) -> None:
    """Disgust (nose_wrinkle): slanted lines across the bridge, wider lower down, and diagonal
    "bunny lines" down both sides of the nose."""
    strength = _mark(face.expression.nose_wrinkle)
    for j, top in enumerate(_NOSE_WRINKLE_V):
        half = _NOSE_WRINKLE_HALF_WIDTH + _NOSE_WRINKLE_WIDEN * j
        line = _capsule(u, v, -half, top, half, top + _NOSE_WRINKLE_SLANT, _NOSE_LINE_RADIUS)
        _paint(canvas, _cover(line, face.px) * (_NOSE_WRINKLE_OPACITY * strength), face.crease)
    u0, v0, u1, v1 = _BUNNY_LINE
    for side in (-1.0, 1.0):
        bunny = _capsule(u, v, side * u0, v0, side * u1, v1, _NOSE_LINE_RADIUS)
        _paint(canvas, _cover(bunny, face.px) * (_BUNNY_LINE_OPACITY * strength), face.crease)


def _brow_height(expression: _Expression) -> np.ndarray:
    """Height of the eyebrows (n x 1 x 1), which the brow furrows follow too."""
    return _BROW_V - _BROW_RAISE * expression.brow_raise


def _draw_eyes_and_brows(img: np.ndarray, face: _Face) -> None:
    """Both eyes and eyebrows; an eye and its brow share one window, drawn one side after the other."""
    brow_v = _brow_height(face.expression)
    for side in (-1.0, 1.0):
        w = face.window(img, side * _EYE_CENTRE[0] + face.yaw, *_EYE_WINDOW)
        u, v = w.u - face.per_pixel("yaw"), w.v
        _draw_eye(w.img, u, v, side, face)
        _draw_brow(w.img, u, v, side, face, brow_v)
        w.commit(img)


def _draw_eye(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, side: float, face: _Face) -> None:
    """One eye: the white, with an upper half that opens with eye_open and a lower half that raised cheeks
    flatten; iris and pupil, clipped to the opening; and the lid outline, heavier on the upper lid."""
    expr = face.expression
    upper = _EYE_HALF_HEIGHT * (1.0 + _EYE_OPEN_GAIN * expr.eye_open)
    lower = upper * (1.0 - _CHEEK_LID_PUSH * np.clip(expr.cheek_raise, 0, 1))
    half_width = _EYE_HALF_WIDTH + _EYE_WIDEN * np.clip(expr.eye_open, 0, None)
    eu = side * _EYE_CENTRE[0] + face.per_pixel("eye_dx") * side
    ev = _EYE_CENTRE[1]
    above = v < ev
    eye = _ellipse(u, v, eu, ev, half_width, np.where(above, upper, lower))
    opening = _cover(eye, face.px)
    _paint(canvas, opening, _EYE_WHITE)
    gaze_u = eu + face.per_pixel("gaze")
    iris = _ellipse(u, v, gaze_u, ev, _IRIS_RADIUS, _IRIS_RADIUS)
    _paint(canvas, _cover(iris, face.px) * opening, _col(face.traits["iris"]))
    pupil = _ellipse(u, v, gaze_u, ev, _PUPIL_RADIUS, _PUPIL_RADIUS)
    _paint(canvas, _cover(pupil, face.px) * opening, _PUPIL_GREY)
    ink = _col(np.minimum(face.hair, face.skin * _LID_INK_SHADE) * _LID_INK_DARKEN)
    lid = np.abs(eye) - np.where(above, _LID_LINE_UPPER, _LID_LINE_LOWER)
    _paint(canvas, _cover(lid, face.px), ink)


def _draw_brow(
    canvas: np.ndarray, u: np.ndarray, v: np.ndarray, side: float, face: _Face, brow_v: np.ndarray
) -> None:
    """One eyebrow: two thick segments through its inner, middle and outer points, at the brow height and
    tilted by brow_inner (sadness and fear raise the inner end, anger lowers it)."""
    inner = face.expression.brow_inner
    points = [(side * pu, brow_v + dv + tilt * inner) for pu, dv, tilt in _BROW_POINTS]
    (iu, iv), (mu, mv), (ou, ov) = points
    brow = np.minimum(
        _capsule(u, v, iu, iv, mu, mv, _BROW_RADII[0]),
        _capsule(u, v, mu, mv, ou, ov, _BROW_RADII[1]),
    )
    colour = _col(np.minimum(face.hair * _BROW_HAIR_SHADE, face.skin * _BROW_SKIN_SHADE))
    _paint(canvas, _cover(brow, face.px), colour)


def _draw_forehead_creases(img: np.ndarray, face: _Face) -> None:
    """Vertical creases between the brows (brow_furrow: anger) and horizontal lines across the forehead
    (forehead_lines: surprise, fear); one window covers both."""
    expr = face.expression
    brow_v = _brow_height(expr)
    w = face.window(img, face.yaw, *_FOREHEAD_WINDOW)
    u, v = w.u - face.per_pixel("yaw"), w.v
    u0, dv0, u1, dv1 = _FURROW
    furrow = _FURROW_OPACITY * _mark(expr.brow_furrow)
    for side in (-1.0, 1.0):
        crease = _capsule(u, v, side * u0, brow_v + dv0, side * u1, brow_v + dv1, _FURROW_RADIUS)
        _paint(w.img, _cover(crease, face.px) * furrow, face.crease)
    lines = _FOREHEAD_LINE_OPACITY * _mark(expr.forehead_lines)
    for line_v, half in _FOREHEAD_LINES:
        line = _capsule(u, v, -half, line_v, half, line_v, _FOREHEAD_LINE_RADIUS)
        _paint(w.img, _cover(line, face.px) * lines, face.crease)
    w.commit(img)


@dataclass(frozen=True)
class _Mouth:
    """The mouth's outline in its window: per-sample sizes n x 1 x 1, per-pixel curves n x H x W."""

    half_width: np.ndarray
    corner_v: np.ndarray  # height of the corners
    line: np.ndarray  # height of the lip line (where closed lips meet) at each pixel's column
    top: np.ndarray  # height of the upper edge of the opening at each pixel's column
    distance: np.ndarray  # signed distance to the opening (negative inside)


def _mouth_shape(u: np.ndarray, v: np.ndarray, expr: _Expression, lip_side: np.ndarray) -> _Mouth:
    """The mouth: a lip line curved up by smile (a parabola) and turned down at the corners by frown; the
    opening spans from ``top`` to a bottom edge around it, and lip_raise lifts the top on one side."""
    half_width = _MOUTH_HALF_WIDTH * (1.0 + _MOUTH_STRETCH * expr.mouth_width)
    half_width = half_width * (1.0 - _PRESS_NARROW * np.clip(expr.lip_press, 0, 1))
    curve = _SMILE_CURVE * expr.mouth_smile
    droop = _FROWN_DROOP * expr.mouth_frown
    q = np.clip(u / half_width, -_MOUTH_Q_LIMIT, _MOUTH_Q_LIMIT)
    bend = np.clip(np.abs(q) - _FROWN_ONSET, 0.0, None) ** 2
    line = _MOUTH_V + curve * (_SMILE_PIVOT - q * q) + droop * bend / _FROWN_NORM
    profile = np.sqrt(np.clip(1.0 - q * q, 0.0, 1.0))  # 1 in the middle, 0 at the corners
    opening = _MOUTH_OPEN * np.clip(expr.mouth_open, 0, None)
    raised = np.clip(0.5 + _LIP_RAISE_SLOPE * lip_side * q, 0.0, 1.0)
    top = line - opening * profile * _OPEN_UP - _LIP_RAISE * np.clip(expr.lip_raise, 0, None) * profile * raised
    bottom = line + opening * profile * _OPEN_DOWN
    return _Mouth(
        half_width=half_width,
        corner_v=_MOUTH_V + curve * (_SMILE_PIVOT - 1.0) + droop,
        line=line,
        top=top,
        distance=np.maximum(np.maximum(top - v, v - bottom), np.abs(u) - half_width),
    )


def _draw_mouth(img: np.ndarray, face: _Face) -> None:
    """The mouth with the lines around it, in one window."""
    w = face.window(img, face.yaw, *_MOUTH_WINDOW)
    u, v = w.u - face.per_pixel("yaw"), w.v
    mouth = _mouth_shape(u, v, face.expression, face.per_pixel("lip_side"))
    _draw_mouth_lines(w.img, u, v, face, mouth)
    _draw_lips(w.img, u, v, face, mouth)
    w.commit(img)


def _draw_mouth_lines(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, face: _Face, mouth: _Mouth) -> None:
    """Nasolabial folds from the nose wings to just outside the mouth corners (cheek_raise: happiness) and
    short creases down from the corners (corner_lines: sadness); they follow the corners as they move."""
    expr = face.expression
    fold = _FOLD_OPACITY * _mark(expr.cheek_raise)
    fu, fv = _FOLD_START
    for side in (-1.0, 1.0):
        end_u = side * (mouth.half_width + _FOLD_PAST_CORNER)
        crease = _capsule(u, v, side * fu, fv, end_u, mouth.corner_v - _FOLD_ABOVE_CORNER, _MOUTH_LINE_RADIUS)
        _paint(canvas, _cover(crease, face.px) * fold, face.crease)
    corner = _CORNER_LINE_OPACITY * _mark(expr.corner_lines)
    drop0, drop1 = _CORNER_LINE_DROP
    for side in (-1.0, 1.0):
        cu = side * (mouth.half_width + _CORNER_LINE_OUT)
        end_u = cu + side * _CORNER_LINE_SLANT
        crease = _capsule(u, v, cu, mouth.corner_v + drop0, end_u, mouth.corner_v + drop1, _MOUTH_LINE_RADIUS)
        _paint(canvas, _cover(crease, face.px) * corner, face.crease)


def _draw_lips(canvas: np.ndarray, u: np.ndarray, v: np.ndarray, face: _Face, mouth: _Mouth) -> None:
    """Lips as a band around the opening (thinner when pressed), the dark opening, upper teeth showing just
    below the upper edge, and the seam where closed lips meet (visible even when the mouth is shut)."""
    thickness = _LIP_THICKNESS * (1.0 - _PRESS_THIN * np.clip(face.expression.lip_press, 0, 1))
    lips = _col(np.clip(face.skin * _LIP_TINT, 0, 1))
    _paint(canvas, _cover(mouth.distance - thickness, face.px), lips)
    inside = _cover(mouth.distance, face.px)
    _paint(canvas, inside, _MOUTH_DARK)
    teeth = _cover(np.maximum(mouth.distance, v - (mouth.top + _TEETH_HEIGHT)), face.px)
    _paint(canvas, teeth * inside, _TEETH)
    seam_u = np.abs(u) - mouth.half_width - _SEAM_OVERHANG
    seam = np.maximum(np.abs(v - mouth.line) - _SEAM_HALF_THICKNESS, seam_u)
    _paint(canvas, _cover(seam, face.px) * _SEAM_OPACITY, _MOUTH_DARK)


def _light(img: np.ndarray, traits: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> None:
    """Brightness and a linear lighting gradient over the whole picture, background included."""
    light = traits["light"]
    gain = traits["bright"][:, None, None] * (1.0 + light[:, 0, None, None] * x + light[:, 1, None, None] * y)
    img *= gain[..., None]


def _add_noise(img: np.ndarray, sigma: np.ndarray, seed: int) -> None:
    """Gaussian pixel noise with a per-sample standard deviation, from the chunk's own stream."""
    rng = np.random.default_rng(seed)
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * sigma[:, None, None, None]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to 0 .. 1 and round to 8-bit levels."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _render_chunk(s: dict, sl: slice, size: int, seed: int) -> np.ndarray:
    """Draw the samples ``sl`` of ``s`` as n x size x size x 3 uint8 images, back to front;
    ``seed`` drives the pixel noise."""
    traits = {name: values[sl] for name, values in s.items()}
    centres = _pixel_centres(size)
    x, y = centres[None, None, :], centres[None, :, None]
    img = _background(traits, x, y, size)
    face = _place_face(traits, x, y, size)
    _draw_long_hair(img, face)
    _draw_neck(img, face)
    _draw_ears(img, face)
    _draw_head(img, face)
    _draw_hair(img, face)
    _draw_cheeks(img, face)
    _draw_nose(img, face)
    _draw_eyes_and_brows(img, face)
    _draw_forehead_creases(img, face)
    _draw_mouth(img, face)
    _light(img, traits, x, y)
    img = _blur(img, traits["blur"] * (size / _BLUR_REFERENCE_SIZE))
    _add_noise(img, traits["noise"], seed)
    return _to_uint8(img)


def render_faces(
    num: int, *, size: int = 64, seed: int, ambiguous_fraction: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``num`` faces: (images N x size x size x 3 uint8, clean labels int64,
    ambiguity float32, blend_label int64). Deterministic by ``seed``."""
    if num < 0:
        raise ValueError("num must be >= 0")
    if size < 8:
        raise ValueError("size must be at least 8 pixels")
    if not 0.0 <= ambiguous_fraction <= 1.0:
        raise ValueError("ambiguous_fraction must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    s = _sample(num, rng, ambiguous_fraction)
    starts = range(0, num, _CHUNK)
    seeds = rng.integers(0, 2**63 - 1, size=len(starts))  # one noise stream per chunk
    images = np.empty((num, size, size, 3), np.uint8)

    def work(i: int) -> None:
        sl = slice(starts[i], min(num, starts[i] + _CHUNK))
        images[sl] = _render_chunk(s, sl, size, int(seeds[i]))

    workers = min(len(starts), os.cpu_count() or 1, 8)
    if workers > 1:  # numpy releases the GIL in its loops, so threads use several cores
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(len(starts))))
    else:
        for i in range(len(starts)):
            work(i)
    return images, s["labels"], s["ambiguity"], s["blend_label"]


# --------------------------------------------------------------------------- loading


def _split_seed(seed: int, split: str) -> int:
    stream = {"train": 1, "test": 2}[split]
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0])


def cache_name(
    num_train: int, num_test: int, size: int, seed: int, ambiguous_fraction: float
) -> str:
    """The cache file's name: every parameter and the generator version."""
    return (
        f"synthetic-v{GENERATOR_VERSION}-train{num_train}-test{num_test}-size{size}"
        f"-seed{seed}-amb{ambiguous_fraction:.4g}.npz"
    )


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path) as fh:
        np.savez(fh, allow_pickle=False, **arrays)  # numeric arrays only, read back without pickle


def load(
    root: Path | None = None,
    *,
    num_train: int = 2000,
    num_test: int = 600,
    size: int = 64,
    seed: int = 0,
    ambiguous_fraction: float = 0.15,
) -> DataSplits:
    """The synthetic train and test splits, rendered once and cached as one ``.npz``."""
    folder = Path(root) if root is not None else cache_dir("synthetic")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / cache_name(num_train, num_test, size, seed, ambiguous_fraction)
    names = ("images", "labels", "ambiguity", "blend_label")

    arrays = _read_cache(path) if path.exists() else None
    if arrays is None or any(f"{sp}_{k}" not in arrays for sp in ("train", "test") for k in names):
        arrays = {}
        for split, num in (("train", num_train), ("test", num_test)):
            split_seed = _split_seed(seed, split)
            out = render_faces(num, size=size, seed=split_seed, ambiguous_fraction=ambiguous_fraction)
            arrays.update({f"{split}_{k}": a for k, a in zip(names, out)})
        _write_cache(path, arrays)

    def split_of(split: str) -> FERDataset:
        labels = arrays[f"{split}_labels"].astype(np.int64)
        return FERDataset(
            name="synthetic",
            class_names=CLASS_NAMES,
            split=split,
            keys=[f"synthetic/{split}/{i:05d}" for i in range(len(labels))],
            labels=labels,
            clean_labels=labels.copy(),
            extras={
                "ambiguity": arrays[f"{split}_ambiguity"].astype(np.float32),
                "blend_label": arrays[f"{split}_blend_label"].astype(np.int64),
            },
            source=ArraySource(arrays[f"{split}_images"]),
            channels=3,
            native_size=size,
        )

    return DataSplits(train=split_of("train"), test=split_of("test"))
