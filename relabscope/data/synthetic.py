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
        "bg_tex": rng.normal(scale=0.04, size=(num, 6, 6, 3)).astype(np.float32),
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
        grid = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
        dx = grid[cols][:, None, :] - tx[:, None, None]
        dy = grid[rows][:, :, None] - ty[:, None, None]
        s3, c3, a3 = scale[:, None, None], ca[:, None, None], sa[:, None, None]
        self.u = (c3 * dx + a3 * dy) / s3
        self.v = (-a3 * dx + c3 * dy) / s3
        self.idx = (np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :])
        self.img = img[self.idx]

    def commit(self, img):
        img[self.idx] = self.img



def _render_chunk(s: dict, sl: slice, size: int, seed: int) -> np.ndarray:
    def g(name):
        return s[name][sl][:, None, None]

    rng = np.random.default_rng(seed)
    geom = s["geom"][sl]
    params = (geom[:, i, None, None] for i in range(len(PARAM_NAMES)))  # each n x 1 x 1
    smile, frown, opn, width, b_raise, b_inner, eye_open = (next(params) for _ in range(7))
    wrinkle, l_raise, press, cheek, furrow, forehead, corner = params

    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    X = c[None, None, :]
    Y = c[None, :, None]

    # Background: two-colour gradient plus low-frequency texture.
    ang = g("bg_angle")
    t = 0.5 + 0.5 * (np.cos(ang) * X + np.sin(ang) * Y) / np.sqrt(2)
    bg1 = 0.5 + 0.7 * (s["bg1"][sl] - 0.5)  # muted: a backdrop, not a distraction
    bg2 = 0.5 + 0.7 * (s["bg2"][sl] - 0.5)
    img = _col(bg1) + t[..., None] * _col(bg2 - bg1)
    m = _upsample_matrix(6, size)
    img = img + np.einsum("ia,nabc,jb->nijc", m, s["bg_tex"][sl], m, optimize=True)
    img = np.ascontiguousarray(img, dtype=np.float32)

    # Face coordinates: undo translation, rotation and scale.
    scale, angle = s["scale"][sl], s["angle"][sl]
    geo = (s["tx"][sl], s["ty"][sl], scale, np.cos(angle), np.sin(angle))
    sc, ca, sa = scale[:, None, None], np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dx, dy = X - g("tx"), Y - g("ty")
    u = (ca * dx + sa * dy) / sc
    v = (-sa * dx + ca * dy) / sc
    px = 2.0 / (size * sc)  # one pixel in face units

    skin = _SKIN_LIGHT + s["skin_t"][sl, None] * (_SKIN_DARK - _SKIN_LIGHT) + s["skin_tint"][sl]
    skin = np.clip(skin, 0, 1)
    hair = s["hair"][sl]
    shade = _col(skin * 0.45)  # creases, nostrils
    hrx, hry = g("head_rx"), g("head_ry")
    has_hair = g("has_hair").astype(np.float32)

    # Long hair behind the head.
    back = _ellipse(u, v, 0.0, -0.05, hrx + 0.09, hry + 0.05)
    back = np.maximum(back, v - 0.35)
    _paint(img, _cover(back, px) * (has_hair * g("long_hair")), _col(hair))

    # Neck and ears.
    neck = np.maximum(np.abs(u) - 0.26, 0.55 - v)
    _paint(img, _cover(neck, px), _col(skin * 0.85))
    for side in (-1.0, 1.0):
        w = _Window(img, geo, side * (s["head_rx"][sl] - 0.02), 0.02, 0.17)
        ear = _ellipse(w.u, w.v, side * (hrx - 0.02), 0.02, 0.09, 0.15)
        _paint(w.img, _cover(ear, px), _col(skin * 0.9))
        w.commit(img)

    # Head: an oval whose lower half narrows toward the chin.
    jaw = 1.0 - g("jaw") * np.clip(v / hry, 0.0, 1.0)
    head = _ellipse(u / jaw, v, 0.0, 0.0, hrx, hry)
    _paint(img, _cover(head, px), _col(skin))

    # Hair on top of the head, down to a curved hairline.
    cap = _ellipse(u, v, 0.0, -0.02, hrx + 0.05, hry + 0.06)
    hairline = g("hairline") + 0.22 * (u / hrx) ** 2
    _paint(img, _cover(np.maximum(cap, v - hairline), px) * has_hair, _col(hair))

    yaw = s["yaw"][sl]
    f = yaw[:, None, None]  # features shift horizontally with yaw; the nose shifts more

    # Cheeks: soft blush when raised.
    blush_col = _col(np.clip(skin * np.array([1.0, 0.75, 0.75], np.float32), 0, 1))
    for side in (-1.0, 1.0):
        w = _Window(img, geo, side * 0.33 + yaw, 0.2, 0.24)
        blush = _ellipse(w.u - f, w.v, side * 0.33, 0.2, 0.11, 0.08)
        a = np.clip(0.5 - blush / 0.08, 0, 1) * (0.3 * _mark(cheek))
        _paint(w.img, a, blush_col)
        w.commit(img)

    # Nose: side shading and nostrils; wrinkles across the bridge when disgusted.
    w = _Window(img, geo, 1.4 * yaw + 0.03, 0.11, 0.21)
    un, vn = w.u - 1.4 * f, w.v
    bridge = _capsule(un, vn, 0.035, -0.02, 0.06, 0.18, 0.014)
    _paint(w.img, _cover(bridge, px) * 0.35, shade)
    for side in (-1.0, 1.0):
        nostril = _ellipse(un, vn, side * 0.055, 0.25, 0.034, 0.02)
        _paint(w.img, _cover(nostril, px) * 0.85, shade)
    wr = _mark(wrinkle)
    for j, yy in enumerate((-0.02, 0.03, 0.08)):
        hw = 0.05 + 0.012 * j
        line = _capsule(un, vn, -hw, yy, hw, yy + 0.012, 0.016)
        _paint(w.img, _cover(line, px) * (0.85 * wr), shade)
    for side in (-1.0, 1.0):
        bunny = _capsule(un, vn, side * 0.07, 0.03, side * 0.14, 0.14, 0.016)
        _paint(w.img, _cover(bunny, px) * (0.8 * wr), shade)
    w.commit(img)

    # Eyes (white with asymmetric lids, iris and pupil clipped to the opening, lid
    # outline) and eyebrows (two capsules each: inner-mid, mid-outer).
    ey = -0.05
    ry_top = 0.085 * (1.0 + 0.7 * eye_open)
    ry_bot = ry_top * (1.0 - 0.45 * np.clip(cheek, 0, 1))
    erx = 0.15 + 0.02 * np.clip(eye_open, 0, None)
    white = np.array([0.96, 0.96, 0.93], np.float32)
    ink = _col(np.minimum(hair, skin * 0.3) * 0.6)
    base = -0.28 - 0.12 * b_raise
    brow_col = _col(np.minimum(hair * 0.8, skin * 0.45))
    for side in (-1.0, 1.0):
        w = _Window(img, geo, side * 0.26 + yaw, -0.22, 0.37)
        uf, vf = w.u - f, w.v
        ex = side * 0.26 + g("eye_dx") * side
        ry = np.where(vf < ey, ry_top, ry_bot)
        eye = _ellipse(uf, vf, ex, ey, erx, ry)
        a_eye = _cover(eye, px)
        _paint(w.img, a_eye, white)
        iris = _ellipse(uf, vf, ex + g("gaze"), ey, 0.07, 0.07)
        _paint(w.img, _cover(iris, px) * a_eye, _col(s["iris"][sl]))
        pupil = _ellipse(uf, vf, ex + g("gaze"), ey, 0.035, 0.035)
        _paint(w.img, _cover(pupil, px) * a_eye, np.float32(0.02))
        thick = np.where(vf < ey, np.float32(0.028), np.float32(0.012))
        _paint(w.img, _cover(np.abs(eye) - thick, px), ink)

        ix, iy = side * 0.1, base + 0.02 - 0.1 * b_inner
        mx, my = side * 0.25, base - 0.04 - 0.02 * b_inner
        ox, oy = side * 0.41, base + 0.01 + 0.03 * b_inner
        d = np.minimum(
            _capsule(uf, vf, ix, iy, mx, my, 0.045),
            _capsule(uf, vf, mx, my, ox, oy, 0.038),
        )
        _paint(w.img, _cover(d, px), brow_col)
        w.commit(img)

    # Vertical creases between the brows.
    w = _Window(img, geo, yaw, -0.33, 0.33)
    for side in (-1.0, 1.0):
        d = _capsule(w.u - f, w.v, side * 0.045, base - 0.02, side * 0.035, base + 0.09, 0.012)
        _paint(w.img, _cover(d, px) * (0.85 * _mark(furrow)), shade)
    fh = 0.75 * _mark(forehead)
    for yy, hw in ((-0.5, 0.2), (-0.57, 0.16)):
        d = _capsule(w.u - f, w.v, -hw, yy, hw, yy, 0.014)
        _paint(w.img, _cover(d, px) * fh, shade)
    w.commit(img)

    # Mouth: a centre line curved up by smile (a parabola) and turned down at the corners by
    # frown; the opening spans v_u..v_l around it.
    w = _Window(img, geo, yaw, 0.46, 0.5)
    uf, vf = w.u - f, w.v
    m0 = 0.5
    W = 0.25 * (1.0 + 0.38 * width) * (1.0 - 0.1 * np.clip(press, 0, 1))
    cc = 0.14 * smile
    q = np.clip(uf / W, -1.5, 1.5)
    droop = 0.15 * frown
    v_c = m0 + cc * (0.5 - q * q) + droop * np.clip(np.abs(q) - 0.3, 0.0, None) ** 2 / 0.49
    prof = np.sqrt(np.clip(1.0 - q * q, 0.0, 1.0))
    o = 0.13 * np.clip(opn, 0, None)
    raise_side = np.clip(0.5 + 0.7 * g("lip_side") * q, 0.0, 1.0)
    v_u = v_c - o * prof * 0.8 - 0.15 * np.clip(l_raise, 0, None) * prof * raise_side
    v_l = v_c + o * prof * 1.2
    d_mouth = np.maximum(np.maximum(v_u - vf, vf - v_l), np.abs(uf) - W)
    lip_t = 0.045 * (1.0 - 0.65 * np.clip(press, 0, 1))

    # Nasolabial folds from the nose wings toward the mouth corners.
    corner_y = m0 - 0.5 * cc + droop
    fold = 0.65 * _mark(cheek)
    for side in (-1.0, 1.0):
        d = _capsule(uf, vf, side * 0.13, 0.22, side * (W + 0.06), corner_y - 0.01, 0.013)
        _paint(w.img, _cover(d, px) * fold, shade)
    cl = 0.75 * _mark(corner)
    for side in (-1.0, 1.0):
        cx = side * (W + 0.02)
        d = _capsule(uf, vf, cx, corner_y + 0.04, cx + side * 0.03, corner_y + 0.15, 0.013)
        _paint(w.img, _cover(d, px) * cl, shade)

    lip_col = _col(np.clip(skin * np.array([0.85, 0.5, 0.5], np.float32), 0, 1))
    dark = np.array([0.25, 0.05, 0.07], np.float32)
    _paint(w.img, _cover(d_mouth - lip_t, px), lip_col)
    inner = _cover(d_mouth, px)
    _paint(w.img, inner, dark)
    teeth = _cover(np.maximum(d_mouth, vf - (v_u + 0.045)), px)
    _paint(w.img, teeth * inner, np.array([0.95, 0.94, 0.9], np.float32))
    seam = np.maximum(np.abs(vf - v_c) - 0.011, np.abs(uf) - W - 0.01)
    _paint(w.img, _cover(seam, px) * 0.8, dark)
    w.commit(img)

    # Lighting: brightness and a linear gradient over the whole picture.
    light = s["light"][sl]
    gain = g("bright") * (1.0 + light[:, 0, None, None] * X + light[:, 1, None, None] * Y)
    img *= gain[..., None]

    img = _blur(img, s["blur"][sl] * (size / 64.0))
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * g("noise")[..., None]
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


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
        np.savez(fh, **arrays)


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
