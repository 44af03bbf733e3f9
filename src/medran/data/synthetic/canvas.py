"""A painter's canvas in anatomy coordinates, with soft-edged shapes.

Anatomy is drawn in a frame ``(u, v)`` where the body spans roughly ``[-1, 1]``, ``u`` grows to
the image right (the patient's left, by radiological convention) and ``v`` grows downwards. The
canvas maps that frame onto the pixel grid through a per-image rotation, scale and shift, so
the same drawing code yields jittered images. Each paint call blends one tissue over what is
already there; the tissue's grey value depends on the modality (see ``render``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Transform:
    """Where the anatomy sits in the image: rotation (radians), zoom and shift (image units)."""

    angle: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0


class Canvas:
    """Pixel grid plus anatomy coordinates; ``paint`` blends a tissue in with an alpha map."""

    def __init__(self, size: int, transform: Transform, values: dict[str, float]) -> None:
        self.size = size
        self.values = values
        axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
        self.y, self.x = np.meshgrid(axis, axis, indexing="ij")
        cos, sin = np.cos(transform.angle), np.sin(transform.angle)
        dx, dy = self.x - transform.shift_x, self.y - transform.shift_y
        self.u = (cos * dx + sin * dy) / transform.scale
        self.v = (-sin * dx + cos * dy) / transform.scale
        # One pixel in anatomy units: edges are anti-aliased over about one pixel.
        self.px = 2.0 / (size * transform.scale)
        self.image = np.full((size, size), values["background"], dtype=np.float64)

    def paint(self, tissue: str, alpha: np.ndarray, opacity: float = 1.0) -> None:
        weight = np.clip(alpha * opacity, 0.0, 1.0)
        self.image += weight * (self.values[tissue] - self.image)

    def _edge(self, signed_distance: np.ndarray, edge: float | None) -> np.ndarray:
        width = max(edge or 0.0, self.px)
        return np.clip(signed_distance / width + 0.5, 0.0, 1.0)

    def ellipse(
        self,
        center: tuple[float, float],
        radii: tuple[float, float],
        angle: float = 0.0,
        edge: float | None = None,
    ) -> np.ndarray:
        """Alpha of an ellipse of ``radii`` (u, v) turned by ``angle``; ``edge`` widens the
        soft rim (anatomy units)."""
        (cx, cy), (rx, ry) = center, radii
        cos, sin = np.cos(angle), np.sin(angle)
        du, dv = self.u - cx, self.v - cy
        a = (cos * du + sin * dv) / rx
        b = (-sin * du + cos * dv) / ry
        radius = np.sqrt(a * a + b * b)
        return self._edge((1.0 - radius) * min(rx, ry), edge)

    def ring(
        self, center: tuple[float, float], radii: tuple[float, float], thickness: float
    ) -> np.ndarray:
        rx, ry = radii
        outer = self.ellipse(center, radii)
        inner = self.ellipse(center, (rx - thickness, ry - thickness))
        return outer * (1.0 - inner)

    def capsule(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        width: float,
        edge: float | None = None,
    ) -> np.ndarray:
        """Alpha of a thick line segment with round caps (bones, ribs, fingers, cracks)."""
        (u0, v0), (u1, v1) = start, end
        du, dv = u1 - u0, v1 - v0
        length2 = max(du * du + dv * dv, 1e-12)
        t = np.clip(((self.u - u0) * du + (self.v - v0) * dv) / length2, 0.0, 1.0)
        dist = np.hypot(self.u - (u0 + t * du), self.v - (v0 + t * dv))
        return self._edge(width / 2.0 - dist, edge)

    def halfplane(self, level: np.ndarray | float, edge: float | None = None) -> np.ndarray:
        """Alpha of everything below ``v = level`` (level may vary with ``u``)."""
        return self._edge(self.v - level, edge)

    def smooth_noise(self, rng: np.random.Generator, cells: int = 5) -> np.ndarray:
        """Smooth random field in about [-1, 1] on the pixel grid (patchiness, lobulation)."""
        coarse = rng.normal(size=(cells, cells))
        axis = (np.arange(self.size) + 0.5) / self.size * (cells - 1)
        rows, cols = np.meshgrid(axis, axis, indexing="ij")
        field = ndimage.map_coordinates(coarse, [rows, cols], order=1)
        return np.clip(field / 1.5, -1.0, 1.0)


def side_signs(side: str) -> tuple[int, ...]:
    """Horizontal direction(s) of a patient side: the patient's left is the image right."""
    return {"left": (1,), "right": (-1,), "bilateral": (-1, 1), "none": (1,)}[side]


def blob(
    canvas: Canvas, rng: np.random.Generator, cx: float, cy: float, radius: float
) -> np.ndarray:
    """A lobulated roundish lesion: two overlapping random ellipses."""
    angle = rng.uniform(0.0, np.pi)
    aspect = rng.uniform(0.75, 1.0)
    alpha = canvas.ellipse((cx, cy), (radius, radius * aspect), angle)
    offset = rng.uniform(0.2, 0.5) * radius
    lobe = canvas.ellipse(
        (cx + offset * np.cos(angle), cy + offset * np.sin(angle)), (radius * 0.7, radius * 0.6)
    )
    return np.maximum(alpha, lobe)


def crack(
    canvas: Canvas,
    center: tuple[float, float],
    angle: float,
    length: float,
    width: float,
) -> np.ndarray:
    """A thin straight line (a fracture gap) through ``center`` at ``angle``."""
    du, dv = 0.5 * length * np.cos(angle), 0.5 * length * np.sin(angle)
    (cu, cv) = center
    return canvas.capsule((cu - du, cv - dv), (cu + du, cv + dv), max(width, canvas.px * 0.8))
