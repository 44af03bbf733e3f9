"""The contract every format reader follows.

A reader turns one dataset in its real on-disk layout into a DataFrame with one row per
item and these columns (``prepare_data`` does the rest: ids, splits, image conversion):

- common: ``source_id`` (str, unique within the source), ``image`` (absolute ``Path`` to an
  image file that exists, or the encoded image ``bytes``), ``group_id`` (str: patient, paper
  or image; items sharing it never cross splits), ``source_split`` (str or None);
- ``captions`` kind: ``caption``;
- ``labels`` kind: ``labels`` (list of str, at least one);
- ``vqa`` kind: ``question``, ``answer`` (lower-cased, stripped), ``answer_type``
  (``"closed"`` or ``"open"``).

Readers raise :class:`DataError` naming the file, the row and the value for a missing file,
column or field, an empty dataset, a missing image or a path escaping the root. They do not
decode images; ``prepare_data`` does and reports corrupt ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from medran.data.errors import DataError

Kind = Literal["captions", "labels", "vqa"]

COMMON_COLUMNS = ("source_id", "image", "group_id", "source_split")
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "captions": ("caption",),
    "labels": ("labels",),
    "vqa": ("question", "answer", "answer_type"),
}


@dataclass(frozen=True)
class Reader:
    kind: Kind
    read: Callable[..., pd.DataFrame]
    doc: str


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"expected file {path} does not exist")
    return path


def require_columns(columns: Iterable[str], required: Iterable[str], where: str) -> None:
    missing = [c for c in required if c not in set(columns)]
    if missing:
        raise DataError(f"{where}: missing required column(s) {missing}; found {list(columns)}")


def require_field(record: dict[str, Any], field: str, where: str) -> Any:
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: missing or empty field {field!r}")
    return value


# Label values that mean "missing" in spreadsheets and pandas, never a finding's name.
MISSING_LABELS = frozenset({"nan", "na", "n/a", "null", ""})


def check_labels(labels: Any, where: str) -> list[str]:
    """A non-empty list of label names, none of them a missing-value marker."""
    values = list(labels) if isinstance(labels, list | tuple) else [labels]
    bad = [v for v in values if not isinstance(v, str) or v.strip().lower() in MISSING_LABELS]
    if not values or bad:
        raise DataError(
            f"{where}: missing label value(s) {bad or values!r}; a label set names at least one "
            "finding (ChestX-ray14 writes 'No Finding' for none)"
        )
    return values


def finish(rows: list[dict[str, Any]], kind: Kind, where: str) -> pd.DataFrame:
    """Build the reader's frame, checking the contract (non-empty, unique source ids, labels
    that are names)."""
    if not rows:
        raise DataError(f"{where}: dataset is empty")
    if kind == "labels":
        for row in rows:
            check_labels(row["labels"], f"{where} item {row['source_id']!r}")
    # object dtype keeps None as None (pandas 3 would turn a partly-missing str column into NaN).
    frame = pd.DataFrame(rows, columns=[*COMMON_COLUMNS, *KIND_COLUMNS[kind]], dtype=object)
    duplicated = frame["source_id"][frame["source_id"].duplicated()]
    if not duplicated.empty:
        raise DataError(f"{where}: duplicate id(s) {sorted(set(duplicated))[:10]}")
    return frame
