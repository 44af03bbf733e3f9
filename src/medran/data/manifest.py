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


def read_table(path: Path, columns: tuple[str, ...], stage: str) -> pd.DataFrame:
    """Read a manifest written by ``stage``; a missing file or column fails naming it."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the {stage} stage first")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; a {stage} manifest has {list(columns)}")
    return frame.reset_index(drop=True)


def read_manifest(root: Path, role: str) -> pd.DataFrame:
    path = manifest_path(root, role)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; run the prepare_data stage first")
    return pd.read_parquet(path)


# attack_images: data/attacks/images/manifest.parquet, one row per attacked upstream train id.
# Paths are relative to the data root; distances are measured on the saved PNG files.
ADV_IMAGE_COLUMNS = (
    "id",  # the clean upstream id
    "rank",  # position in attacks.selection.attack_order (level p uses rank < round(p * n_train))
    "adv_image_path",  # e.g. attacks/images/png/<id>.png
    "clean_image_path",  # e.g. prepared/images/upstream/<id>.png
    "target_id",
    "target_image_path",
    "clean_body_part",  # from the caption, via attacks.lexicon (None if not found)
    "target_body_part",
    "eps",  # int, 1/255 units
    "step_size",  # float, 1/255 units
    "steps",  # int
    "linf",  # int, max |adv - clean| in uint8 levels (<= eps by construction)
    "l2",  # float, ||adv - clean||_2 in [0, 1] pixel units
    "psnr",  # float, dB
    "cos_target",  # cos(f(adv), f(target)) under the surrogate, from the saved file
    "cos_clean",  # cos(f(adv), f(clean))
    "cos_clean_target",  # cos(f(clean), f(target)): the starting point
    "success",  # bool: cos_target > cos_clean
    "adv_sha256",
)

# attack_captions: data/attacks/captions/manifest.parquet, one row per attacked id.
ADV_CAPTION_COLUMNS = (
    "id",
    "clean_caption",
    "target_caption",
    "adv_caption",  # the backend's output
    "backend",  # rules | llm | captioner
    "changed",  # bool: adv_caption != clean_caption
    "changed_words",  # list of "old->new" (rules; best effort for llm)
    "fallback",  # bool: the llm output failed a sanity check and rules were used
)

# build_noisy@<level>: data/noisy/<level>/manifest.parquet, every upstream row (all splits).
NOISY_COLUMNS = (
    "id",
    "image_path",  # relative to the data root: the clean or the adversarial image
    "caption",
    "split",
    "group_id",
    "sha256",  # of the file at image_path
    "source",
    "source_id",
    "is_adversarial",
    "clean_image_path",  # relative to the data root
    "target_id",  # None for clean rows
    "caption_kind",  # clean | rewrite | target | captioner
    "noise_level",
)
