"""ROCOv2 (Radiology Objects in COntext v2): radiology figures with captions, two layouts.

Users get ROCOv2 from Zenodo (https://zenodo.org/records/10821435, the CSV + zipped image
folders) or from the Hugging Face hub (e.g. ``eltorio/ROCOv2-radiology``, parquet shards).

CSV layout (:func:`read_csv`)::

    train_captions.csv   valid_captions.csv   test_captions.csv     # header: ID,Caption
    train/<ID>.jpg       valid/<ID>.jpg       test/<ID>.jpg         # .png accepted too

Parquet layout (:func:`read_parquet`): ``**/*.parquet`` under the root, e.g.
``data/train-00000-of-00002.parquet``, ``data/validation-00000-of-00001.parquet``; the split
comes from the file name prefix (or a ``train/`` ... parent folder). Columns: ``image`` (a
struct ``{bytes, path}`` as ``datasets`` writes images), ``image_id``, ``caption`` and an
optional ``cui`` list, which is not used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medran.data.errors import DataError
from medran.data.readers._common import image_file, load_csv, normalise_split
from medran.data.readers.base import finish, require_columns, require_field

log = logging.getLogger(__name__)

# captions file -> (split, image folder)
CSV_FILES = {
    "train_captions.csv": ("train", "train"),
    "valid_captions.csv": ("val", "valid"),
    "test_captions.csv": ("test", "test"),
}
PARQUET_COLUMNS = ("image", "image_id", "caption")


def read_csv(root: Path) -> pd.DataFrame:
    """Read the ROCOv2 captions CSVs and locate each image (``<split>/<ID>.jpg`` or ``.png``)."""
    root = Path(root)
    present = [name for name in CSV_FILES if (root / name).is_file()]
    if not present:
        raise DataError(f"{root}: no ROCOv2 captions file; expected one of {list(CSV_FILES)}")
    rows: list[dict[str, Any]] = []
    for name in present:
        split, folder_name = CSV_FILES[name]
        path = root / name
        frame = load_csv(path, ("ID", "Caption"))
        folder = root / folder_name
        for number, record in enumerate(frame.to_dict("records"), start=1):
            where = f"{path} row {number}"
            source_id = str(require_field(record, "ID", where)).strip()
            caption = str(require_field(record, "Caption", where)).strip()
            rows.append(
                {
                    "source_id": source_id,
                    "image": _jpg_or_png(folder, source_id, where),
                    "group_id": source_id,
                    "source_split": split,
                    "caption": caption,
                }
            )
        log.info("read %d ROCOv2 captions from %s", len(frame), path)
    return finish(rows, "captions", f"{root} (ROCOv2 CSV)")


def _jpg_or_png(folder: Path, image_id: str, where: str) -> Path:
    # The Zenodo release ships JPEGs; a user-converted copy may hold PNGs instead.
    name = f"{image_id}.jpg"
    if not (folder / name).is_file() and (folder / f"{image_id}.png").is_file():
        name = f"{image_id}.png"
    return image_file(folder, name, where)


def read_parquet(root: Path) -> pd.DataFrame:
    """Read the Hugging Face ROCOv2 parquet shards; ``image`` holds the encoded bytes."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist")
    paths = sorted(root.rglob("*.parquet"))
    if not paths:
        raise DataError(f"{root}: no *.parquet files found (ROCOv2 Hugging Face layout)")
    rows: list[dict[str, Any]] = []
    for path in paths:
        rows.extend(_parquet_rows(path, _parquet_split(path)))
    return finish(rows, "captions", f"{root} (ROCOv2 parquet)")


def _parquet_split(path: Path) -> str | None:
    # "train-00000-of-00002.parquet" (hub upload) or "default/train/0000.parquet" (converted)
    return normalise_split(path.name.split("-", 1)[0]) or normalise_split(path.parent.name)


def _parquet_rows(path: Path, split: str | None) -> list[dict[str, Any]]:
    try:
        shard = pq.ParquetFile(path)
        require_columns(shard.schema_arrow.names, PARQUET_COLUMNS, str(path))
        batches = shard.iter_batches(columns=list(PARQUET_COLUMNS))
        records = [record for batch in batches for record in batch.to_pylist()]
    except pa.ArrowException as e:
        raise DataError(f"{path}: not a readable parquet file: {e}") from e
    rows = []
    for number, record in enumerate(records, start=1):
        where = f"{path} row {number}"
        source_id = str(require_field(record, "image_id", where)).strip()
        where = f"{where} (image_id {source_id!r})"
        image = record["image"]
        data = image.get("bytes") if isinstance(image, dict) else image
        if not data:
            raise DataError(f"{where}: image bytes are missing or empty")
        if not isinstance(data, bytes | bytearray):
            raise DataError(
                f"{where}: 'image' must hold the encoded image bytes (or a {{bytes, path}} "
                f"struct, as datasets writes it), got {type(data).__name__} {str(data)[:60]!r}"
            )
        rows.append(
            {
                "source_id": source_id,
                "image": bytes(data),
                "group_id": source_id,
                "source_split": split,
                "caption": str(require_field(record, "caption", where)).strip(),
            }
        )
    log.info("read %d ROCOv2 rows from %s", len(rows), path)
    return rows
