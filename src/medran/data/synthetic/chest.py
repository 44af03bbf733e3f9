"""Chest anatomy (two lung fields, heart, mediastinum, spine, ribs) and the chest findings.

The chest carries most findings because the classification set (ChestX-ray14 style) is made of
chest radiographs only; each finding has a distinct visual signature so a classifier can
learn it, while lesion opacity, size and position jitter keep the task from being trivial.
"""

from __future__ import annotations

import numpy as np

from medran.data.synthetic.attributes import Lesion
from medran.data.synthetic.canvas import Canvas, blob, side_signs


def draw_chest(
    canvas: Canvas,
    anatomy: np.random.Generator,
    lesions: tuple[Lesion, ...],
    scene: np.random.Generator,
    rng: np.random.Generator,
) -> None:
    """Draw a frontal chest; ``anatomy`` fixes the patient, ``rng`` places the lesions."""
    shape = {
        "body_w": anatomy.uniform(0.8, 0.9),
        "lung_dx": anatomy.uniform(0.34, 0.4),
        "lung_w": anatomy.uniform(0.24, 0.29),
        "lung_h": anatomy.uniform(0.5, 0.6),
        "heart_r": anatomy.uniform(0.19, 0.23),
        "rib_gap": anatomy.uniform(0.17, 0.2),
    }
    found = {lesion.finding: lesion for lesion in lesions}
    canvas.paint("soft", canvas.ellipse((0.0, 0.05), (shape["body_w"], 0.98)))
    lungs = {sign: _lung(canvas, shape, sign, scene) for sign in (-1, 1)}
    if "pneumothorax" in found:
        _pneumothorax(canvas, shape, found["pneumothorax"], rng)
    heart_scale = 1.0
    if "cardiomegaly" in found:
        heart_scale = rng.uniform(1.45, 1.65)
    r = shape["heart_r"]
    canvas.paint("soft", canvas.capsule((0.0, -0.85), (0.0, 0.2), 0.24))
    canvas.paint(
        "soft", canvas.ellipse((0.05 + 0.35 * r * (heart_scale - 1), 0.3), (r * heart_scale, r))
    )
    for lesion in lesions:
        for sign in side_signs(lesion.side):
            _draw_lung_lesion(canvas, shape, lungs[sign], lesion, sign, rng)
    _bones(canvas, shape)


def _lung(canvas: Canvas, shape: dict, sign: int, scene: np.random.Generator) -> np.ndarray:
    cx = sign * shape["lung_dx"]
    alpha = canvas.ellipse((cx, -0.05), (shape["lung_w"], shape["lung_h"]), angle=-sign * 0.08)
    canvas.paint("lung", alpha)
    # Faint vessel markings fanning out from the hilum; per image so follow-ups differ a bit.
    for _ in range(4):
        angle = scene.uniform(-2.4, -0.4) if sign > 0 else scene.uniform(-2.7, -0.7)
        length = scene.uniform(0.2, 0.35)
        start = (sign * 0.16, 0.05)
        end = (start[0] + sign * abs(np.cos(angle)) * length, start[1] + np.sin(angle) * length)
        canvas.paint("soft", canvas.capsule(start, end, 0.02) * alpha, opacity=0.3)
    return alpha


def _pneumothorax(canvas: Canvas, shape: dict, lesion: Lesion, rng: np.random.Generator) -> None:
    """Free air (dark, no markings) around a collapsed lung edged by a visible pleural line."""
    for sign in side_signs(lesion.side):
        cx = sign * shape["lung_dx"]
        lung = canvas.ellipse((cx, -0.05), (shape["lung_w"] * 1.02, shape["lung_h"] * 1.02))
        k = rng.uniform(0.78, 0.86) if lesion.size == "small" else rng.uniform(0.55, 0.65)
        ccx = cx - sign * shape["lung_w"] * (1 - k) * 0.8
        ccy = -0.05 + shape["lung_h"] * (1 - k) * 0.5
        collapsed = canvas.ellipse((ccx, ccy), (shape["lung_w"] * k, shape["lung_h"] * k))
        canvas.paint("air", lung * (1.0 - collapsed))
        pleura = canvas.ring((ccx, ccy), (shape["lung_w"] * k, shape["lung_h"] * k), 0.02)
        canvas.paint("soft", pleura, opacity=0.45)


def _draw_lung_lesion(
    canvas: Canvas,
    shape: dict,
    lung: np.ndarray,
    lesion: Lesion,
    sign: int,
    rng: np.random.Generator,
) -> None:
    cx = sign * shape["lung_dx"] + rng.uniform(-0.35, 0.35) * shape["lung_w"]
    cy = rng.uniform(-0.35, 0.2)
    large = lesion.size == "large"
    if lesion.finding == "nodule":
        radius = rng.uniform(0.08, 0.095) if large else rng.uniform(0.055, 0.07)
        canvas.paint("dense", canvas.ellipse((cx, cy), (radius, radius)), rng.uniform(0.6, 0.9))
    elif lesion.finding == "mass":
        radius = rng.uniform(0.17, 0.2) if large else rng.uniform(0.12, 0.15)
        canvas.paint("dense", blob(canvas, rng, cx, cy, radius), rng.uniform(0.6, 0.9))
    elif lesion.finding == "consolidation":
        radius = rng.uniform(0.24, 0.3) if large else rng.uniform(0.16, 0.2)
        patch = canvas.ellipse((cx, cy + 0.1), (radius, radius * 1.2), edge=radius * 0.6)
        patchy = 0.65 + 0.35 * canvas.smooth_noise(rng)
        canvas.paint("dense", patch * lung * patchy, rng.uniform(0.45, 0.7))
    elif lesion.finding == "effusion":
        _effusion(canvas, shape, lesion, sign, rng)


def _effusion(
    canvas: Canvas, shape: dict, lesion: Lesion, sign: int, rng: np.random.Generator
) -> None:
    """Fluid layering at the lung base with a meniscus climbing the lateral wall."""
    cx = sign * shape["lung_dx"]
    height = 2 * shape["lung_h"] * (rng.uniform(0.35, 0.5) if lesion.size == "large" else 0.22)
    base = -0.05 + shape["lung_h"]
    lateral = np.clip((canvas.u - cx) * sign / shape["lung_w"], -1.0, 1.0)
    level = base - height - 0.05 * (lateral + 1.0) ** 2
    region = canvas.ellipse((cx, -0.02), (shape["lung_w"] * 1.08, shape["lung_h"] * 1.06))
    canvas.paint("fluid", region * canvas.halfplane(level, edge=0.05), rng.uniform(0.75, 0.95))


def _bones(canvas: Canvas, shape: dict) -> None:
    canvas.paint("bone", canvas.capsule((0.0, -1.0), (0.0, 1.0), 0.08), opacity=0.5)
    for sign in (-1, 1):
        canvas.paint(
            "bone", canvas.capsule((sign * 0.1, -0.62), (sign * 0.62, -0.74), 0.05), opacity=0.6
        )
        outer = sign * (shape["lung_dx"] + shape["lung_w"])
        for k in range(6):
            top = -0.62 + k * shape["rib_gap"]
            rib = canvas.capsule((sign * 0.06, top), (outer, top + 0.14), 0.03)
            canvas.paint("bone", rib, opacity=0.3)
