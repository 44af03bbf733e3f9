"""Per-image facts read from the files themselves, as DataFrame columns for the quality gates.

The gates never trust what a manifest or an attack log says about an image: they open the file,
hash its bytes, decode it and look at its pixels. These helpers do only that and return plain
columns, so a suite can turn each fact into a standard GX expectation. They are shared by the
clean gate (exists, decodes, size, mode, hash) and the adversarial gate (pixel range, L-inf
distance between a saved adversarial image and its clean source).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

# Order of the columns returned by image_facts; a missing or broken file gives nulls after "error".
FACT_COLUMNS = ("exists", "decodes", "width", "height", "mode", "sha256", "min_pixel", "max_pixel")
# Decoding errors Pillow and zlib raise for truncated or corrupt files; anything else is a bug.
_DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def _workers(workers: int | None) -> int:
    # PNG inflate releases the GIL, so a few threads help; more than 8 only adds contention.
    return workers if workers is not None else min(8, os.cpu_count() or 1)


def _decode(data: bytes) -> Image.Image:
    """Decode fully: ``verify`` checks the structure and CRCs, ``load`` inflates every pixel."""
    with Image.open(io.BytesIO(data)) as probe:
        probe.verify()
    # verify() leaves the image unusable, so open again to actually decode the pixels.
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _facts(path: Path | None, pixels: bool) -> dict[str, Any]:
    facts: dict[str, Any] = dict.fromkeys(FACT_COLUMNS)
    facts.update(exists=False, decodes=False, error=None)
    if path is None:
        facts["error"] = "not read (path refused)"
        return facts
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        facts["error"] = f"cannot read: {e.strerror or e}"
        return facts
    facts.update(exists=True, sha256=hashlib.sha256(data).hexdigest())
    try:
        image = _decode(data)
    except _DECODE_ERRORS as e:
        facts["error"] = f"cannot decode: {e}"
        return facts
    facts.update(decodes=True, width=image.width, height=image.height, mode=image.mode)
    if pixels:
        array = np.asarray(image)
        facts.update(min_pixel=int(array.min()), max_pixel=int(array.max()))
    return facts


def image_facts(
    paths: Sequence[Path | None], *, pixels: bool = True, workers: int | None = None
) -> pd.DataFrame:
    """Read each file and return one row of facts per path, in the order given.

    Columns: ``exists``, ``decodes`` (bool); ``width``, ``height``, ``min_pixel``, ``max_pixel``
    (nullable Int64); ``mode``, ``sha256`` (hex of the file bytes), ``error`` (str or null).
    A ``None`` path means "refused, do not read" (e.g. it points outside the data root) and
    reports as not existing. ``pixels=False`` skips the min/max scan.
    """
    with ThreadPoolExecutor(max_workers=_workers(workers)) as pool:
        rows = list(pool.map(lambda p: _facts(p, pixels), paths))
    frame = pd.DataFrame(rows, columns=[*FACT_COLUMNS, "error"])
    for column in ("width", "height", "min_pixel", "max_pixel"):
        frame[column] = frame[column].astype("Int64")
    for column in ("exists", "decodes"):
        frame[column] = frame[column].astype(bool)
    return frame


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _linf(pair: tuple[Path, Path]) -> float:
    try:
        left, right = _pixels(pair[0]), _pixels(pair[1])
    except _DECODE_ERRORS:
        return float("nan")
    if left.shape != right.shape:
        return float("nan")
    return float(np.abs(left - right).max()) / 255.0


def linf_distance(
    left: Sequence[Path], right: Sequence[Path], *, workers: int | None = None
) -> pd.Series:
    """L-inf distance between paired images, in [0, 1] pixel units (max |a - b| / 255).

    Both images are read as RGB uint8. NaN marks a pair that cannot be compared (a file is
    missing or broken, or the sizes differ), so an ``expect ... to_be_between`` check treats it
    as null and a separate ``exists``/``decodes`` expectation must catch it.
    """
    if len(left) != len(right):
        raise ValueError(f"linf_distance needs paired paths; got {len(left)} and {len(right)}")
    with ThreadPoolExecutor(max_workers=_workers(workers)) as pool:
        values = list(pool.map(_linf, zip(left, right, strict=True)))
    return pd.Series(values, dtype="float64", name="linf")
