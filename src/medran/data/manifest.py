"""Canonical manifests: the one tabular format every stage after ``prepare_data`` reads.

``data/prepared/`` holds ``<role>.parquet`` for each role (upstream, targets, cls, vqa) and
``images/<role>/<name>.png`` (RGB uint8). ``image_path`` is relative to the prepared root.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medran.data.errors import DataError

BASE_COLUMNS = ("id", "image_path", "split", "group_id", "sha256", "source", "source_id")
KIND_COLUMNS = {
    "captions": ("caption",),
    "labels": ("labels",),
    "vqa": ("question", "answer", "answer_type"),
}
SPLITS = ("train", "val", "test")
ANSWER_TYPES = ("closed", "open")


def columns_for(kind: str) -> tuple[str, ...]:
    return (*BASE_COLUMNS, *KIND_COLUMNS[kind])


def manifest_path(root: Path, role: str) -> Path:
    return Path(root) / f"{role}.parquet"


def write_manifest(frame: pd.DataFrame, root: Path, role: str, kind: str) -> Path:
    """Write a manifest with exactly the canonical columns, in a fixed order (byte-stable)."""
    frame = frame.loc[:, list(columns_for(kind))].sort_values("id").reset_index(drop=True)
    path = manifest_path(root, role)
    frame.to_parquet(path, index=False, compression="zstd")
    return path


def read_manifest(root: Path, role: str) -> pd.DataFrame:
    path = manifest_path(root, role)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; run the prepare_data stage first")
    return pd.read_parquet(path)
