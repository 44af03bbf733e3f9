"""NIH ChestX-ray14: frontal chest X-rays with multi-label findings, one CSV row per image.

Users get it from the NIH (https://nihcc.app.box.com/v/ChestXray-NIHCC) or Kaggle
(``nih-chest-xrays/data``; merge its ``images_*/images/`` folders into one). Layout::

    Data_Entry_2017.csv       # Image Index, Finding Labels (A|B or "No Finding"), Patient ID, ...
    images/<Image Index>      # e.g. images/00000001_000.png
    train_val_list.txt        # optional: one Image Index per line -> split "train"
    test_list.txt             # optional: one Image Index per line -> split "test"

Images of one patient share a group (``Patient ID``), so splits never share a patient.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from medran.data.errors import DataError
from medran.data.readers._common import image_file, image_folder, load_csv, read_utf8
from medran.data.readers.base import finish, require_field

log = logging.getLogger(__name__)

COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_LISTS = {"train_val_list.txt": "train", "test_list.txt": "test"}


def read(
    root: Path, *, csv: str = "Data_Entry_2017.csv", images_dir: str = "images"
) -> pd.DataFrame:
    """Read the Data_Entry CSV, the optional official split lists, and locate each image."""
    root = Path(root)
    path = root / csv
    frame = load_csv(path, COLUMNS)
    folder = image_folder(root, images_dir, "images_dir")
    splits = _official_splits(root)
    rows: list[dict[str, Any]] = []
    for number, record in enumerate(frame.to_dict("records"), start=1):
        where = f"{path} row {number}"
        name = str(require_field(record, "Image Index", where)).strip()
        rows.append(
            {
                "source_id": name,
                "image": image_file(folder, name, where),
                "group_id": str(require_field(record, "Patient ID", where)).strip(),
                "source_split": splits.get(name),
                "labels": _labels(record["Finding Labels"], where),
            }
        )
    if splits and (unlisted := sum(row["source_split"] is None for row in rows)):
        log.warning("%d images of %s are in neither split list", unlisted, path)
    log.info("read %d ChestX-ray14 images from %s", len(rows), path)
    return finish(rows, "labels", f"{path} (ChestX-ray14)")


def _labels(value: str, where: str) -> list[str]:
    labels = [label.strip() for label in str(value).split("|")]
    if not all(labels):
        raise DataError(f"{where}: empty label in 'Finding Labels' {value!r}")
    return labels


def _official_splits(root: Path) -> dict[str, str]:
    """Image Index -> split from the optional official lists; an image in both is an error."""
    splits: dict[str, str] = {}
    for name, split in SPLIT_LISTS.items():
        path = root / name
        if not path.is_file():
            continue
        for number, line in enumerate(read_utf8(path).splitlines(), start=1):
            image = line.strip()
            if not image:
                continue
            if splits.get(image, split) != split:
                raise DataError(f"{path} line {number}: {image!r} is also in another split list")
            splits[image] = split
    return splits
