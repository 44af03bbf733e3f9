"""``prepare_data``: read every configured source and write canonical manifests and images.

All sources are read and checked before any image is converted, so a bad file fails in
seconds. Output is assembled in a temporary sibling folder and moved into place only when
complete, so a failed run never leaves a partial ``data/prepared`` a later stage could use.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from medran.contracts import PrepareDataPaths
from medran.data.errors import DataError
from medran.data.manifest import SPLITS, write_manifest
from medran.data.readers import get_reader
from medran.fsutil import replace_dir
from medran.names import ROLE_KIND
from medran.params import Params, PrepareDataParams, SourceSpec, SplitFractions
from medran.progress import bar

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def read_source(role: str, spec: SourceSpec, project_root: Path) -> pd.DataFrame:
    root = project_root / spec.path
    if not root.is_dir():
        raise DataError(f"sources.{role}.path: {root} is not a directory")
    reader = get_reader(spec.format)
    try:
        frame = reader.read(root, **spec.options)
    except TypeError as e:
        raise DataError(f"sources.{role}.options {dict(spec.options)} rejected: {e}") from e
    frame["id"] = role + "-" + frame["source_id"].map(lambda s: _UNSAFE.sub("_", str(s)))
    duplicated = frame["id"][frame["id"].duplicated()]
    if not duplicated.empty:
        raise DataError(f"{root}: duplicate id(s) after sanitising: {sorted(set(duplicated))[:10]}")
    frame["source"] = spec.format
    return frame


def assign_splits(
    groups: pd.Series,
    fractions: SplitFractions,
    seed: int,
    source_splits: pd.Series | None = None,
    where: str = "source splits",
) -> pd.Series:
    """Split by group: every row of a group lands in the same split.

    With ``source_splits`` the source's own splits are kept (and checked group-disjoint);
    otherwise, or when the source ships no splits at all (MediCaT), groups are ordered by a
    seeded hash and cut at the exact fractions.
    """
    if source_splits is not None and source_splits.notna().any():
        if source_splits.isna().any() or not source_splits.isin(SPLITS).all():
            bad = sorted(set(source_splits[~source_splits.isin(SPLITS)].astype(str)))
            raise DataError(f"{where}: split_strategy 'source' needs a split per row; got {bad}")
        crossing = source_splits.groupby(groups).nunique()
        crossing = crossing[crossing > 1]
        if not crossing.empty:
            raise DataError(f"{where}: splits share group id(s) {list(crossing.index[:10])}")
        return source_splits.astype(str)
    unique = sorted(set(groups.astype(str)))
    order = sorted(unique, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n = len(order)
    n_test = max(1, round(fractions.test * n)) if n >= 3 else 0
    n_val = max(1, round(fractions.val * n)) if n >= 3 and fractions.val > 0 else 0
    split_of = {g: "test" for g in order[:n_test]}
    split_of |= {g: "val" for g in order[n_test : n_test + n_val]}
    split_of |= {g: "train" for g in order[n_test + n_val :]}
    return groups.astype(str).map(split_of)


def to_rgb_png(source: Path | bytes, size: int, where: str, max_pixels: int) -> bytes:
    """Decode any image (upright by its EXIF orientation), make it square RGB uint8 at
    ``size`` px, return PNG bytes. An image above ``max_pixels`` is refused before decoding
    (``prepare_data.max_image_pixels``: a decompression bomb would exhaust memory)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if img.width * img.height > max_pixels:
                raise Image.DecompressionBombError(f"{img.width} x {img.height} pixels")
            img.load()
            img = _to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError as e:
        raise DataError(
            f"{where}: image too large ({e}); prepare_data.max_image_pixels is {max_pixels}"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{where}: image cannot be decoded ({e})") from e
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _to_rgb(img: Image.Image) -> Image.Image:
    # 16-bit and float radiographs: stretch to the 8-bit range instead of clipping.
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(img, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(array)
        img = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # Pillow's own route for palettes with transparency
    return img.convert("RGB")


def write_images(
    frame: pd.DataFrame, role: str, out_root: Path, p: PrepareDataParams
) -> pd.DataFrame:
    """Convert each distinct source image once (VQA rows share images); add path and sha256."""
    folder = out_root / "images" / role
    folder.mkdir(parents=True, exist_ok=True)
    frame = frame.sort_values("id").reset_index(drop=True)
    keys = frame["image"].map(_image_key)
    # The first row (by id) that uses an image names its file.
    owners = frame.assign(key=keys).drop_duplicates("key")[["key", "id", "image"]]

    def convert(owner: tuple[str, str, Path | bytes]) -> tuple[str, str, str]:
        key, row_id, image = owner
        where = f"{role} row {row_id} ({describe_image(image)})"
        data = to_rgb_png(image, p.image_size, where, p.max_image_pixels)
        relative = f"images/{role}/{row_id}.png"
        (out_root / relative).write_bytes(data)
        return key, relative, hashlib.sha256(data).hexdigest()

    # Bounded: each thread holds a decoded image, and a many-core node would hold hundreds.
    with ThreadPoolExecutor(max_workers=p.decode_threads) as pool:
        rows = owners.itertuples(index=False, name=None)
        converted = bar(pool.map(convert, rows), desc=f"prepare_data {role}", total=len(owners))
        done = {key: (path, digest) for key, path, digest in converted}
    frame["image_path"] = keys.map(lambda k: done[k][0])
    frame["sha256"] = keys.map(lambda k: done[k][1])
    return frame


def _image_key(image: Path | bytes) -> str:
    return hashlib.sha256(image).hexdigest() if isinstance(image, bytes) else str(image)


def describe_image(image: Path | bytes) -> str:
    """A source image as a message names it: its file, or its size when embedded."""
    return f"{len(image)} embedded bytes" if isinstance(image, bytes) else str(image)


def run(params: Params, *, paths: PrepareDataPaths) -> dict:
    """Read every source (paths relative to the working directory, the project root) and
    write the manifests and images to ``paths.out``; returns per-role counts."""
    p = params.prepare_data
    # to_rgb_png checks each image against p.max_image_pixels before decoding it; Pillow's
    # own check (a warning, then an error at twice its limit) would disagree with the param.
    Image.MAX_IMAGE_PIXELS = None
    project_root = Path.cwd()
    frames = {role: read_source(role, spec, project_root) for role, spec in p.sources.items()}
    metrics: dict[str, float] = {"image_size": p.image_size}
    with replace_dir(paths.out) as tmp:
        for role, frame in frames.items():
            metrics |= prepare_role(role, frame, p, params.seed, tmp)
    return metrics


def prepare_role(
    role: str, frame: pd.DataFrame, p: PrepareDataParams, seed: int, out_root: Path
) -> dict[str, float]:
    """Split one role's rows, write its images and manifest; return its counts."""
    by_source = p.split_strategy == "source"
    frame["split"] = assign_splits(
        frame["group_id"],
        p.split_fractions[role],
        seed,
        frame["source_split"] if by_source else None,
    )
    frame = write_images(frame, role, out_root, p)
    write_manifest(frame, out_root, role, ROLE_KIND[role])
    metrics = {f"{role}.rows": len(frame), f"{role}.groups": frame["group_id"].nunique()}
    for split in SPLITS:
        metrics[f"{role}.{split}"] = int((frame["split"] == split).sum())
    log.info("%s: %d rows from %s", role, len(frame), p.sources[role].path)
    return metrics
