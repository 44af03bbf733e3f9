"""Figures of the image attack, read from ``attack_images``' manifest and the PNGs it names:
an example grid (clean | adversarial | amplified |delta|) and the distributions of its
per-image statistics.

Images are read with PIL (no torch, so the report starts fast); the perturbation is recomputed
from the two files, as the data-quality gate does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medran.data.errors import DataError
from medran.data.manifest import read_table
from medran.data.paths import resolve_under
from medran.layout import ATTACK_IMAGES
from medran.reporting.figures import panels, save

MANIFEST = ATTACK_IMAGES / "manifest.parquet"
COLUMNS = ("id", "clean_image_path", "adv_image_path", "eps", "cos_target", "cos_clean")
STAT_COLUMNS = ("cos_target", "cos_clean", "linf", "psnr")


def read_attacks(data_root: Path) -> pd.DataFrame:
    """The manifest in rank order (the attack's own order, so examples are stable)."""
    frame = read_table(
        Path(data_root) / MANIFEST, (*COLUMNS, "rank", *STAT_COLUMNS), "attack_images"
    )
    return frame.sort_values("rank").reset_index(drop=True)


def _image(data_root: Path, relative: str) -> np.ndarray:
    path = resolve_under(Path(data_root), relative, f"attack manifest {MANIFEST}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"attack image {path} (named in {MANIFEST}) cannot be read: {e}") from e


def example_grid(frame: pd.DataFrame, data_root: Path, n: int, path: Path, dpi: int) -> Path:
    """The first ``n`` attacked images: clean, adversarial, and |adv - clean| scaled so the
    whole budget eps is white."""
    from matplotlib.figure import Figure

    rows = frame.head(n)
    figure = Figure(figsize=(6.0, 2.3 * max(1, len(rows))))
    grid = figure.subplots(max(1, len(rows)), 3, squeeze=False)
    for axes, row in zip(grid, rows.itertuples(), strict=False):
        clean = _image(data_root, row.clean_image_path)
        adv = _image(data_root, row.adv_image_path)
        if clean.shape != adv.shape:
            raise DataError(
                f"attack {row.id}: adversarial image {row.adv_image_path} is {adv.shape[:2]}, "
                f"clean image {row.clean_image_path} is {clean.shape[:2]}"
            )
        delta = np.abs(adv.astype(np.int16) - clean.astype(np.int16)) / max(int(row.eps), 1)
        gain = 255 / max(int(row.eps), 1)
        titled = (
            (f"clean\n{row.id}", clean),
            (f"adversarial\ncos to target {row.cos_target:.2f}, to clean {row.cos_clean:.2f}", adv),
            (f"|δ| × {gain:.0f}\n(white: the whole eps {int(row.eps)}/255)", delta.clip(0, 1)),
        )
        for ax, (title, image) in zip(axes, titled, strict=True):
            ax.imshow(image)
            ax.set_title(title, fontsize=6)
            ax.axis("off")
    if rows.empty:
        grid[0][0].text(0.5, 0.5, "no attacked images", ha="center")
        for ax in grid[0]:
            ax.axis("off")
    return save(figure, path, dpi)


def statistics_figure(frame: pd.DataFrame, path: Path, dpi: int) -> Path:
    """Histograms over every attacked image: cosine to target and to clean under the
    surrogate, L-inf distance and PSNR of the saved files."""
    figure, (cosine, linf, psnr) = panels(3)
    cosine.hist(frame["cos_target"], bins=20, alpha=0.6, label="to target")
    cosine.hist(frame["cos_clean"], bins=20, alpha=0.6, label="to clean")
    cosine.set_title("cosine of f(adv) (surrogate)", fontsize=8)
    cosine.legend(fontsize=7)
    top = int(frame["linf"].max()) if len(frame) else 0
    linf.hist(frame["linf"], bins=range(top + 2))  # one bar per uint8 level
    linf.set_title("L∞ of adv - clean (/255)", fontsize=8)
    finite = frame["psnr"][np.isfinite(frame["psnr"])]
    psnr.hist(finite, bins=20)
    psnr.set_title("PSNR (dB, changed images)", fontsize=8)
    for ax in (cosine, linf, psnr):
        ax.set_ylabel("images", fontsize=8)
        ax.tick_params(labelsize=7)
    figure.suptitle(f"attack_images: {len(frame)} attacked images", fontsize=9)
    return save(figure, path, dpi)
