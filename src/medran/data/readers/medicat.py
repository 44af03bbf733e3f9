"""MediCaT: medical figures and captions from open-access papers (the target pool).

Users request MediCaT from AllenAI (https://github.com/allenai/medicat). Layout::

    s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl   # one JSON record per line
    figures/<pdf_hash>_<fig_uri>                                     # e.g. ab12..._2-Figure1-1.png

Each record has ``pdf_hash``, ``fig_uri`` and the caption field (``s2_caption``). Figures of
one paper share a group (``pdf_hash``); MediCaT has no official split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from medran.data.errors import DataError
from medran.data.readers._common import image_file, image_folder, read_utf8
from medran.data.readers.base import finish, require_field, require_file

log = logging.getLogger(__name__)


def read(
    root: Path,
    *,
    jsonl: str = "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl",
    caption_field: str = "s2_caption",
    figures_dir: str = "figures",
) -> pd.DataFrame:
    """Read the MediCaT JSONL and locate each figure under ``figures_dir``."""
    root = Path(root)
    path = require_file(root / jsonl)
    folder = image_folder(root, figures_dir, "figures_dir")
    rows: list[dict[str, Any]] = []
    for number, record in _records(path):
        where = f"{path} line {number}"
        pdf_hash = str(require_field(record, "pdf_hash", where)).strip()
        fig_uri = str(require_field(record, "fig_uri", where)).strip()
        source_id = f"{pdf_hash}_{fig_uri}"
        rows.append(
            {
                "source_id": source_id,
                "image": image_file(folder, source_id, where),
                "group_id": pdf_hash,
                "source_split": None,
                "caption": str(require_field(record, caption_field, where)).strip(),
            }
        )
    log.info("read %d MediCaT figures from %s", len(rows), path)
    return finish(rows, "captions", f"{path} (MediCaT)")


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The (line number, record) pairs of a JSONL file; blank lines are skipped."""
    lines = read_utf8(path).split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {number}: malformed JSON: {e}") from e
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected an object, got {line:.80}")
        records.append((number, record))
    return records
