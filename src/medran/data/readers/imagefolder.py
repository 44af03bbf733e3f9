"""ImageFolder: one folder per class, the layout torchvision and most Kaggle sets use.

Users make it themselves or download a classification set already laid out this way
(e.g. Kaggle's chest X-ray pneumonia set). Either layout, detected from the top folders::

    <class>/<file>                        # no official split
    {train,val,test}/<class>/<file>       # "valid"/"validation" also mean "val"

Files are found recursively inside each class folder and kept if their extension is listed
(case-insensitive). Each image is its own group; every image has exactly one label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from medran.data.errors import DataError
from medran.data.paths import resolve_under
from medran.data.readers._common import normalise_split
from medran.data.readers.base import finish

log = logging.getLogger(__name__)


def read(root: Path, *, extensions: str | Iterable[str] = ".png,.jpg,.jpeg") -> pd.DataFrame:
    """Read an ImageFolder tree (with or without split folders); labels = [class folder]."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist")
    suffixes = _suffixes(extensions)
    rows: list[dict[str, Any]] = []
    for split, folder in _split_folders(root):
        for class_dir in _subfolders(folder):
            for file in sorted(class_dir.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in suffixes:
                    continue
                source_id = file.relative_to(root).as_posix()
                rows.append(
                    {
                        "source_id": source_id,
                        "image": resolve_under(root, source_id, f"{root} file {source_id}"),
                        "group_id": source_id,
                        "source_split": split,
                        "labels": [class_dir.name],
                    }
                )
    classes = sorted({row["labels"][0] for row in rows})
    if rows and len(classes) < 2:
        raise DataError(f"{root}: need at least 2 class folders with images, found {classes}")
    log.info("read %d images in %d classes from %s", len(rows), len(classes), root)
    return finish(rows, "labels", f"{root} (ImageFolder, extensions {sorted(suffixes)})")


def _suffixes(extensions: str | Iterable[str]) -> set[str]:
    items = extensions.split(",") if isinstance(extensions, str) else extensions
    suffixes = {"." + str(e).strip().lower().lstrip(".") for e in items if str(e).strip()}
    if not suffixes:
        raise DataError(f"option extensions={extensions!r} names no file extension")
    return suffixes


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_folders(root: Path) -> list[tuple[str | None, Path]]:
    """(split, folder holding class folders): the split folders if the top level is splits."""
    top = _subfolders(root)
    splits = {p: normalise_split(p.name) for p in top}
    if not any(splits.values()):
        return [(None, root)]
    if not all(splits.values()):
        others = sorted(p.name for p, s in splits.items() if s is None)
        raise DataError(
            f"{root}: mixes split folders {sorted(p.name for p, s in splits.items() if s)} "
            f"with other folders {others}; use either <class>/ or <split>/<class>/"
        )
    return [(split, folder) for folder, split in splits.items()]
