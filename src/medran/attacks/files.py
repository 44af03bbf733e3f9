"""Adversarial image files: lossless PNG I/O, atomic writes, measurements and a figure.

Adversarial images are stored as uint8 PNG (lossless, no metadata, the same bytes for the
same pixels) and every number reported about them is measured on those files.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import torch
from PIL import Image

from medran.attacks.base import cosine
from medran.data.errors import DataError
from medran.data.paths import resolve_all

MEASURED = ("linf", "l2", "psnr", "cos_target", "cos_clean", "cos_clean_target", "adv_sha256")


def check_images(paths: Sequence[Path]) -> tuple[int, int]:
    """Decode every file once (in threads); all must share one size, which is returned."""

    def size_of(path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as img:
                img.load()
                return img.size
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"image {path} cannot be read ({e})") from e

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        sizes = list(pool.map(size_of, paths))
    for path, size in zip(paths, sizes, strict=True):
        if size != sizes[0]:
            raise DataError(
                f"images must share one size: {paths[0]} is {sizes[0]}, {path} is {size}"
            )
    return sizes[0]


def load_images(files: Sequence[Path | IO[bytes]]) -> torch.Tensor:
    """Image files -> (B, 3, H, W) uint8 (RGB)."""
    arrays = []
    for file in files:
        with Image.open(file) as img:
            arrays.append(np.asarray(img.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes: lossless, no metadata, the same bytes every time."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary sibling, so a killed run never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def distances(adv: torch.Tensor, clean: torch.Tensor) -> tuple[list[int], list[float], list[float]]:
    """Per image of two uint8 batches: L-inf (uint8 levels), L2 ([0, 1] units), PSNR (dB)."""
    levels = adv.int() - clean.int()
    linf = levels.abs().amax(dim=(1, 2, 3)).tolist()
    squared = levels.double().div_(255).square_()
    l2 = squared.sum(dim=(1, 2, 3)).sqrt_().tolist()
    psnr = [-10 * math.log10(m) if m else math.inf for m in squared.mean(dim=(1, 2, 3)).tolist()]
    return linf, l2, psnr


def measure_files(
    adv: Sequence[Path],
    clean: Sequence[Path],
    target: Sequence[Path],
    encoder: torch.nn.Module,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> dict[str, list]:
    """Distances to the clean image and cosines under ``encoder``, from the files on disk.

    Columns: linf, l2, psnr, cos_target, cos_clean, cos_clean_target, adv_sha256.
    """
    columns: dict[str, list] = {key: [] for key in MEASURED}
    for start in range(0, len(adv), batch_size):
        window = slice(start, start + batch_size)
        files = [Path(p).read_bytes() for p in adv[window]]
        adv_pixels = load_images([io.BytesIO(f) for f in files])
        clean_pixels, target_pixels = load_images(clean[window]), load_images(target[window])
        with torch.no_grad():
            pixels = torch.cat([adv_pixels, clean_pixels, target_pixels]).to(device)
            f_adv, f_clean, f_target = encoder(pixels.float().div_(255)).chunk(3)
        linf, l2, psnr = distances(adv_pixels, clean_pixels)
        for key, values in {
            "linf": linf,
            "l2": l2,
            "psnr": psnr,
            "cos_target": cosine(f_adv, f_target).tolist(),
            "cos_clean": cosine(f_adv, f_clean).tolist(),
            "cos_clean_target": cosine(f_clean, f_target).tolist(),
            "adv_sha256": [hashlib.sha256(f).hexdigest() for f in files],
        }.items():
            columns[key].extend(values)
    return columns


def examples_figure(frame: pd.DataFrame, data_root: Path, eps: int, path: Path, n: int = 4) -> Path:
    """A grid of the first ``n`` manifest rows: clean / target / adversarial / |delta| x 255/eps."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    rows = frame.head(n)
    figure = Figure(figsize=(8, 2.2 * len(rows)))
    grid = figure.subplots(len(rows), 4, squeeze=False)
    for axes, row in zip(grid, rows.itertuples(), strict=True):
        files = (row.clean_image_path, row.target_image_path, row.adv_image_path)
        paths = resolve_all(data_root, files, f"attack manifest ({row.id})")
        clean, target, adv = load_images(paths).permute(0, 2, 3, 1)
        delta = (adv.int() - clean.int()).abs().numpy() / eps  # 1.0 = the whole budget
        panels = {
            f"clean: {row.clean_body_part}": clean.numpy(),
            f"target: {row.target_body_part}": target.numpy(),
            f"adv: cos_t {row.cos_target:.3f}, cos_c {row.cos_clean:.3f}": adv.numpy(),
            f"|delta| x {255 / eps:.0f}": delta.clip(0, 1),
        }
        for ax, (title, image) in zip(axes, panels.items(), strict=True):
            ax.imshow(image)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    return path
