"""VQA-RAD: clinician-written questions and answers about radiology images.

Users get VQA-RAD from OSF (https://osf.io/89kps/). Layout::

    VQA_RAD Dataset Public.json     # a JSON list of question records
    VQA_RAD Image Folder/<image_name>

Each record has ``qid``, ``image_name``, ``question``, ``answer`` (sometimes a number),
``answer_type`` (CLOSED/OPEN, with stray case and whitespace in the release) and optionally
``phrase_type`` (``test_freeform``/``test_para`` are the official test questions, others
train). Questions about one image share a group (``image_name``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from medran.data.readers._common import image_file, image_folder, load_json_records, vqa_fields
from medran.data.readers.base import finish, require_field

log = logging.getLogger(__name__)


def read(
    root: Path,
    *,
    json_file: str = "VQA_RAD Dataset Public.json",
    images_dir: str = "VQA_RAD Image Folder",
) -> pd.DataFrame:
    """Read the VQA-RAD JSON and locate each question's image under ``images_dir``."""
    root = Path(root)
    path = root / json_file
    records = load_json_records(path)
    folder = image_folder(root, images_dir, "images_dir")
    rows: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        where = f"{path} record {index}"
        image_name = str(require_field(record, "image_name", where)).strip()
        rows.append(
            {
                "source_id": str(require_field(record, "qid", where)).strip(),
                "image": image_file(folder, image_name, where),
                "group_id": image_name,
                "source_split": _split(record.get("phrase_type")),
                **vqa_fields(record, where),
            }
        )
    log.info("read %d VQA-RAD questions from %s", len(rows), path)
    return finish(rows, "vqa", f"{path} (VQA-RAD)")


def _split(phrase_type: Any) -> str | None:
    if phrase_type is None or not str(phrase_type).strip():
        return None
    return "test" if str(phrase_type).strip().lower().startswith("test") else "train"
