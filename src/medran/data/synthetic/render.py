"""Render one synthetic "radiology" image from its :class:`Attributes`.

The body part decides the anatomy (``anatomy``/``chest``), the modality decides how tissues
look: grey values per tissue (bone bright and air dark on X-ray and CT, fluid bright on MRI,
fluid black on ultrasound) and the acquisition look (CT's circular field of view, MRI's
smoothness and bias field, ultrasound's fan-shaped sector and speckle). Per-image jitter of
pose, tissue values, brightness, blur and noise keeps downstream tasks from being trivial.

Randomness is split into independent streams drawn from ``rng`` in a fixed order, so the same
``rng`` state always gives the same pixels, and adding a lesion changes only the lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medran.data.synthetic.anatomy import DRAWERS
from medran.data.synthetic.attributes import Attributes
from medran.data.synthetic.canvas import Canvas, Transform

TISSUES = ("background", "soft", "organ", "fat", "lung", "air", "fluid", "bone", "dense", "blood")
# Grey value of each tissue (order of TISSUES) per modality.
TISSUE_VALUES: dict[str, tuple[float, ...]] = {
    "x-ray": (0.04, 0.42, 0.46, 0.36, 0.17, 0.05, 0.52, 0.92, 0.6, 0.5),
    "ct": (0.0, 0.5, 0.58, 0.25, 0.08, 0.0, 0.3, 0.95, 0.78, 0.88),
    "mri": (0.0, 0.45, 0.52, 0.8, 0.05, 0.0, 0.9, 0.25, 0.65, 0.3),
    "ultrasound": (0.03, 0.45, 0.52, 0.65, 0.1, 0.08, 0.04, 0.95, 0.28, 0.2),
}
TISSUE_JITTER = 0.03


@dataclass(frozen=True)
class Shift:
    """The downstream distribution shift: ``contrast`` scales intensities around the mean and
    ``scale`` zooms the anatomy."""

    contrast: float
    scale: float


NO_SHIFT = Shift(contrast=1.0, scale=1.0)  # upstream images


def render(
    attrs: Attributes,
    rng: np.random.Generator,
    size: int = 64,
    shift: Shift = NO_SHIFT,
    noise: float = 0.06,
    rgb: bool = False,
) -> np.ndarray:
    """Return a ``uint8`` image, ``(size, size)`` or ``(size, size, 3)`` when ``rgb``.

    ``noise`` is the std of additive pixel noise in [0, 1] units.
    """
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}")
    jitter, scene, lesion_rng, noise_rng = (
        np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=4)
    )
    base = TISSUE_VALUES[attrs.modality]
    values = {
        name: float(np.clip(v + jitter.normal(0.0, TISSUE_JITTER), 0.0, 1.0))
        for name, v in zip(TISSUES, base, strict=True)
    }
    transform = Transform(
        angle=float(np.clip(jitter.normal(0.0, 0.07), -0.15, 0.15)),
        scale=shift.scale * jitter.uniform(0.9, 1.08),
        shift_x=jitter.uniform(-0.07, 0.07),
        shift_y=jitter.uniform(-0.07, 0.07),
    )
    canvas = Canvas(size, transform, values)
    anatomy = np.random.default_rng(attrs.anatomy_seed)
    DRAWERS[attrs.body_part](canvas, anatomy, attrs.lesions, scene, lesion_rng)
    image = _acquire(canvas, attrs.modality, jitter, noise_rng)
    image = _finish(image, size, shift.contrast, noise, jitter, noise_rng)
    pixels = np.round(image * 255.0).astype(np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2) if rgb else pixels


def _acquire(
    canvas: Canvas, modality: str, jitter: np.random.Generator, noise_rng: np.random.Generator
) -> np.ndarray:
    """The modality's acquisition look on top of the tissue map."""
    image = canvas.image
    x, y = canvas.x, canvas.y
    px_sigma = canvas.size / 64.0
    if modality == "ct":
        image = np.where(x * x + y * y < 0.97**2, image, 0.0)
    elif modality == "mri":
        image = ndimage.gaussian_filter(image, 0.7 * px_sigma)
        tilt = jitter.normal(0.0, 0.12, size=2)
        image = image * (1.0 + tilt[0] * x + tilt[1] * y)
    elif modality == "ultrasound":
        # Speckle: multiplicative Rayleigh noise, smoothed so grains span a few pixels.
        speckle = noise_rng.rayleigh(1.0, size=image.shape)
        speckle = ndimage.gaussian_filter(speckle, 0.6 * px_sigma)
        image = image * speckle / speckle.mean()
        depth = np.hypot(x, y + 1.05)
        angle = np.arctan2(x, y + 1.05)
        half = jitter.uniform(0.55, 0.7)
        sector = (np.abs(angle) < half) & (depth < 1.95) & (depth > 0.12)
        image = np.where(sector, image * np.exp(-0.35 * depth), 0.0)
    return image


def _finish(
    image: np.ndarray,
    size: int,
    contrast: float,
    noise: float,
    jitter: np.random.Generator,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """Blur, brightness/gamma jitter, the contrast shift and pixel noise, clipped to [0, 1]."""
    blur = jitter.uniform(0.0, 0.9) * size / 64.0
    if blur > 0.05:
        image = ndimage.gaussian_filter(image, blur)
    gamma = jitter.uniform(0.8, 1.25)
    gain = jitter.uniform(0.88, 1.12)
    offset = jitter.uniform(-0.04, 0.04)
    image = np.clip(image, 0.0, 1.0) ** gamma * gain + offset
    mean = float(image.mean())
    image = mean + contrast * (image - mean)
    image = image + noise_rng.normal(0.0, noise, size=image.shape)
    return np.clip(image, 0.0, 1.0)
