"""Anatomy of every body part and the findings drawn into it, looked up by body part.

Each drawer takes the canvas, the patient's anatomy generator (fixed per patient), a scene
generator (per-image clutter such as bowel gas) and a lesion generator (lesion placement), so
that adding or removing a lesion never shifts the other random draws of an image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medran.data.synthetic.attributes import Lesion
from medran.data.synthetic.canvas import Canvas, blob, crack, side_signs
from medran.data.synthetic.chest import draw_chest

Gen = np.random.Generator
# (canvas, patient anatomy, lesions, per-image scene, lesion placement) -> draws in place.
Drawer = Callable[[Canvas, Gen, tuple[Lesion, ...], Gen, Gen], None]


def _long_bone(
    canvas: Canvas, start: tuple[float, float], end: tuple[float, float], width: float
) -> None:
    """Cortex plus a darker (fatty) medullary canal, which also reads well on MRI."""
    canvas.paint("bone", canvas.capsule(start, end, width))
    canvas.paint("fat", canvas.capsule(start, end, width * 0.45), opacity=0.5)


def _fracture(
    canvas: Canvas,
    rng: np.random.Generator,
    center: tuple[float, float],
    axis_angle: float,
    bone_w: float,
    size: str,
) -> None:
    """A dark gap across a bone, roughly perpendicular to its axis; large = wider and longer."""
    angle = axis_angle + np.pi / 2 + rng.uniform(-0.35, 0.35)
    large = size == "large"
    length = bone_w * (rng.uniform(1.1, 1.3) if large else rng.uniform(0.7, 0.9))
    width = 0.03 if large else 0.015
    canvas.paint("soft", crack(canvas, center, angle, length, width), rng.uniform(0.8, 1.0))


def draw_brain(
    canvas: Canvas, anatomy: Gen, lesions: tuple[Lesion, ...], scene: Gen, rng: Gen
) -> None:
    rx, ry = anatomy.uniform(0.66, 0.74), anatomy.uniform(0.8, 0.88)
    canvas.paint("soft", canvas.ellipse((0.0, 0.0), (rx + 0.05, ry + 0.05)))
    canvas.paint("bone", canvas.ring((0.0, 0.0), (rx, ry), anatomy.uniform(0.06, 0.09)))
    canvas.paint("fat", canvas.ellipse((0.0, 0.02), (rx * 0.62, ry * 0.7)), opacity=0.3)
    tilt, width = anatomy.uniform(0.25, 0.4), anatomy.uniform(0.05, 0.07)
    for sign in (-1, 1):
        ventricle = canvas.ellipse((sign * 0.1, -0.05), (width, 0.22), angle=-sign * tilt)
        canvas.paint("fluid", ventricle)
    canvas.paint("soft", canvas.capsule((0.0, -ry + 0.1), (0.0, ry - 0.1), 0.02), opacity=0.5)
    for lesion in lesions:
        sign = side_signs(lesion.side)[0]
        cx, cy = sign * rng.uniform(0.28, 0.42), rng.uniform(-0.35, 0.35)
        radius = rng.uniform(0.16, 0.2) if lesion.size == "large" else rng.uniform(0.08, 0.11)
        if lesion.finding == "mass":
            # Oedema halo (fluid) around a solid core.
            canvas.paint("fluid", canvas.ellipse((cx, cy), (radius * 1.6, radius * 1.6)), 0.35)
            canvas.paint("dense", blob(canvas, rng, cx, cy, radius), rng.uniform(0.7, 0.95))
        else:
            canvas.paint("blood", blob(canvas, rng, cx, cy, radius), rng.uniform(0.7, 0.95))


def draw_abdomen(
    canvas: Canvas, anatomy: Gen, lesions: tuple[Lesion, ...], scene: Gen, rng: Gen
) -> None:
    rx, ry = anatomy.uniform(0.82, 0.9), anatomy.uniform(0.62, 0.7)
    canvas.paint("fat", canvas.ellipse((0.0, 0.0), (rx, ry)))
    canvas.paint("soft", canvas.ellipse((0.0, 0.0), (rx - 0.08, ry - 0.08)))
    liver = anatomy.uniform(0.34, 0.4)
    canvas.paint("organ", canvas.ellipse((-0.35, -0.12), (liver, liver * 0.8), angle=0.2))
    canvas.paint("organ", canvas.ellipse((0.5, -0.15), (0.14, 0.2), angle=-0.3))
    for sign in (-1, 1):
        canvas.paint("organ", canvas.ellipse((sign * 0.32, 0.28), (0.1, 0.15), angle=sign * 0.3))
    canvas.paint("blood", canvas.ellipse((0.05, 0.24), (0.05, 0.05)))
    canvas.paint("bone", canvas.ellipse((0.0, 0.42), (0.11, 0.1)))
    for _ in range(int(scene.integers(2, 6))):
        gas = canvas.ellipse((scene.uniform(-0.15, 0.4), scene.uniform(-0.3, 0.15)), (0.04, 0.03))
        canvas.paint("air", gas, opacity=0.8)
    for lesion in lesions:
        sign = side_signs(lesion.side)[0]
        # Patient's right holds the liver, the left the spleen and kidney.
        cx = sign * rng.uniform(0.3, 0.42)
        cy = rng.uniform(-0.2, 0.1)
        radius = rng.uniform(0.15, 0.19) if lesion.size == "large" else rng.uniform(0.08, 0.11)
        if lesion.finding == "cyst":
            canvas.paint("fluid", canvas.ellipse((cx, cy), (radius, radius * 0.9)))
        else:
            canvas.paint("dense", blob(canvas, rng, cx, cy, radius), rng.uniform(0.7, 0.95))


def draw_knee(
    canvas: Canvas, anatomy: Gen, lesions: tuple[Lesion, ...], scene: Gen, rng: Gen
) -> None:
    shaft = anatomy.uniform(0.3, 0.35)
    fibula = 1 if anatomy.random() < 0.5 else -1
    canvas.paint("soft", canvas.capsule((0.0, -1.3), (0.0, 1.3), anatomy.uniform(0.95, 1.1)))
    _long_bone(canvas, (0.0, -1.3), (0.0, -0.3), shaft)
    for sign in (-1, 1):
        canvas.paint("bone", canvas.ellipse((sign * 0.14, -0.2), (0.16, 0.12)))
    canvas.paint("bone", canvas.ellipse((0.0, 0.1), (0.3, 0.07)))
    _long_bone(canvas, (0.0, 0.12), (0.0, 1.3), shaft * 0.95)
    _long_bone(canvas, (fibula * 0.3, 0.2), (fibula * 0.27, 1.3), 0.08)
    canvas.paint("bone", canvas.ellipse((0.0, -0.3), (0.13, 0.15)), opacity=0.3)
    for lesion in lesions:
        sign = side_signs(lesion.side)[0]
        center = (sign * rng.uniform(0.1, 0.2), rng.uniform(0.08, 0.22))
        _fracture(canvas, rng, center, np.pi / 2 + rng.uniform(-0.6, 0.6), 0.3, lesion.size)


def draw_hand(
    canvas: Canvas, anatomy: Gen, lesions: tuple[Lesion, ...], scene: Gen, rng: Gen
) -> None:
    spread = anatomy.uniform(1.2, 1.4)
    canvas.paint("soft", canvas.capsule((0.0, 0.6), (0.0, 1.4), 0.55))
    canvas.paint("soft", canvas.ellipse((0.0, 0.35), (0.42, 0.38)))
    bases = [-0.27 + 0.18 * i for i in range(4)]
    lengths = [0.75, 0.9, 0.85, 0.7]
    axes = []
    for base, length in zip(bases, lengths, strict=True):
        tip = (base * spread, 0.05 - length)
        canvas.paint("soft", canvas.capsule((base, 0.1), tip, 0.11))
        axes.append(((base * 0.8, 0.62), (base, 0.08), tip))
    thumb = -1 if anatomy.random() < 0.5 else 1
    canvas.paint("soft", canvas.capsule((thumb * 0.36, 0.35), (thumb * 0.72, -0.1), 0.12))
    for carpal_u, meta, tip in axes:
        _long_bone(canvas, carpal_u, meta, 0.06)
        for start, end in ((0.05, 0.42), (0.47, 0.72), (0.77, 0.97)):
            p0 = (meta[0] + start * (tip[0] - meta[0]), meta[1] + start * (tip[1] - meta[1]))
            p1 = (meta[0] + end * (tip[0] - meta[0]), meta[1] + end * (tip[1] - meta[1]))
            canvas.paint("bone", canvas.capsule(p0, p1, 0.05))
    canvas.paint("bone", canvas.capsule((thumb * 0.3, 0.5), (thumb * 0.66, -0.05), 0.055))
    for k in range(6):
        carpal = canvas.ellipse((-0.2 + 0.08 * k, 0.72 + 0.05 * (k % 2)), (0.045, 0.04))
        canvas.paint("bone", carpal)
    for sign in (-1, 1):
        _long_bone(canvas, (sign * 0.13, 0.82), (sign * 0.13, 1.4), 0.11)
    for lesion in lesions:
        # Fingers on the image right belong to the patient's left side (sign +1).
        fingers = [2, 3] if side_signs(lesion.side)[0] > 0 else [0, 1]
        _, meta, tip = axes[int(rng.choice(fingers))]
        t = rng.uniform(0.15, 0.35)
        center = (meta[0] + t * (tip[0] - meta[0]), meta[1] + t * (tip[1] - meta[1]))
        axis = float(np.arctan2(tip[1] - meta[1], tip[0] - meta[0]))
        _fracture(canvas, rng, center, axis, 0.09, lesion.size)


def draw_pelvis(
    canvas: Canvas, anatomy: Gen, lesions: tuple[Lesion, ...], scene: Gen, rng: Gen
) -> None:
    canvas.paint("soft", canvas.ellipse((0.0, 0.05), (0.92, anatomy.uniform(0.75, 0.85))))
    canvas.paint("bone", canvas.ellipse((0.0, -0.2), (0.15, 0.28)), opacity=0.7)
    canvas.paint("bone", canvas.ring((0.0, 0.1), (0.33, 0.28), 0.05))
    necks = {}
    for sign in (-1, 1):
        canvas.paint(
            "bone", canvas.ellipse((sign * 0.45, -0.3), (0.33, 0.3), angle=sign * 0.4), 0.6
        )
        canvas.paint("bone", canvas.ellipse((sign * 0.2, 0.38), (0.18, 0.14)))
        canvas.paint("soft", canvas.ellipse((sign * 0.2, 0.38), (0.1, 0.08)))
        head = (sign * anatomy.uniform(0.5, 0.55), 0.18)
        base = (sign * 0.63, 0.4)
        canvas.paint("bone", canvas.ellipse(head, (0.12, 0.12)))
        canvas.paint("bone", canvas.capsule(head, base, 0.13))
        canvas.paint("bone", canvas.ellipse((sign * 0.73, 0.36), (0.07, 0.08)))
        _long_bone(canvas, base, (sign * 0.66, 1.2), 0.2)
        necks[sign] = (head, base)
    for lesion in lesions:
        head, base = necks[side_signs(lesion.side)[0]]
        t = rng.uniform(0.35, 0.65)
        center = (head[0] + t * (base[0] - head[0]), head[1] + t * (base[1] - head[1]))
        axis = float(np.arctan2(base[1] - head[1], base[0] - head[0]))
        _fracture(canvas, rng, center, axis, 0.13, lesion.size)


DRAWERS: dict[str, Drawer] = {
    "chest": draw_chest,
    "brain": draw_brain,
    "abdomen": draw_abdomen,
    "knee": draw_knee,
    "hand": draw_hand,
    "pelvis": draw_pelvis,
}
