"""Helpers the format readers share: split names, image lookup, CSV/JSON loading, VQA fields.

Every helper raises :class:`DataError` with a message that names the file, the row and the
value, so each reader stays a short description of its dataset's layout.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from medran.data.errors import DataError
from medran.data.paths import resolve_under
from medran.data.readers.base import require_columns, require_field, require_file

# Split names as datasets spell them -> the canonical "train" / "val" / "test".
SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
}
ANSWER_TYPES = ("closed", "open")


def normalise_split(name: str) -> str | None:
    """Return the canonical split for a dataset's split name, or None if it is not one."""
    return SPLIT_NAMES.get(name.strip().lower())


def image_folder(root: Path, relative: str, option: str) -> Path:
    """Resolve an image folder named by a reader option; it must exist under ``root``."""
    folder = resolve_under(root, relative, f"option {option}={relative!r}")
    if not folder.is_dir():
        raise DataError(f"image folder {folder} (option {option}={relative!r}) does not exist")
    return folder


def image_file(folder: Path, name: str, where: str) -> Path:
    """Return the image ``folder / name``: confined under ``folder`` and existing."""
    path = resolve_under(folder, name, where)
    if not path.is_file():
        raise DataError(f"{where}: image file {name!r} not found at {path}")
    return path


def read_utf8(path: Path) -> str:
    """A text file's content; a file in another encoding is named with the first bad byte."""
    try:
        return require_file(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        bad = e.object[e.start : e.start + 1]
        raise DataError(
            f"{path}: not UTF-8 text (byte {bad!r} at offset {e.start}); re-encode it, e.g. "
            f"iconv -f latin1 -t utf-8"
        ) from e


def load_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV as strings (no NA guessing), checking it exists and has ``required``."""
    text = read_utf8(path)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a readable CSV file: {e}") from e
    require_columns(frame.columns, required, str(path))
    return frame


def load_json_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSON file holding a list of objects (records)."""
    text = read_utf8(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not a valid JSON file: {e}") from e
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise DataError(f"{path} record {index}: expected an object, got {record!r:.80}")
    return data


def vqa_fields(record: dict[str, Any], where: str) -> dict[str, str]:
    """The ``question``, ``answer`` and ``answer_type`` columns of one VQA record.

    Answers may be numbers in the real data (VQA-RAD), so they are compared as text:
    stripped and lower-cased. ``answer_type`` must be CLOSED or OPEN (any case/whitespace).
    """
    question = str(require_field(record, "question", where)).strip()
    answer = str(require_field(record, "answer", where)).strip().lower()
    raw_type = require_field(record, "answer_type", where)
    answer_type = str(raw_type).strip().lower()
    if answer_type not in ANSWER_TYPES:
        raise DataError(
            f"{where}: answer_type {raw_type!r} is not one of {[t.upper() for t in ANSWER_TYPES]}"
        )
    return {"question": question, "answer": answer, "answer_type": answer_type}
