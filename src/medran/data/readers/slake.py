"""SLAKE: a bilingual (English/Chinese) medical VQA set with an official split.

Users get SLAKE 1.0 from https://www.med-vqa.com/slake/ (or the ``BoKelvin/SLAKE`` hub copy).
Layout::

    train.json   validate.json   test.json     # JSON lists of question records (at least one)
    imgs/<img_name>                            # img_name like "xmlab0/source.jpg"

Each record has ``qid``, ``img_id``, ``img_name``, ``question``, ``answer``, ``answer_type``
(CLOSED/OPEN) and ``q_lang`` ("en" or "zh"); only English questions are kept by default.
Questions about one image share a group (``img_id``). A ``qid`` found in two files is
prefixed with its split (``"test:12"``) so ids stay unique.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from medran.data.errors import DataError
from medran.data.readers._common import image_file, image_folder, load_json_records, vqa_fields
from medran.data.readers.base import finish, require_field

log = logging.getLogger(__name__)

FILES = {"train.json": "train", "validate.json": "val", "test.json": "test"}


def read(root: Path, *, english_only: bool = True, images_dir: str = "imgs") -> pd.DataFrame:
    """Read the SLAKE split files (English questions only by default) and locate each image."""
    root = Path(root)
    present = [name for name in FILES if (root / name).is_file()]
    if not present:
        raise DataError(f"{root}: no SLAKE split file; expected one of {list(FILES)}")
    folder = image_folder(root, images_dir, "images_dir")
    records = {name: load_json_records(root / name) for name in present}
    # Decided on all records, before the language filter, so ids do not depend on it.
    files_per_qid = Counter(
        qid for name in present for qid in {str(r.get("qid")).strip() for r in records[name]}
    )
    rows: list[dict[str, Any]] = []
    for name in present:
        path, split = root / name, FILES[name]
        for index, record in enumerate(records[name]):
            where = f"{path} record {index}"
            if english_only and str(require_field(record, "q_lang", where)).strip() != "en":
                continue
            qid = str(require_field(record, "qid", where)).strip()
            rows.append(
                {
                    "source_id": f"{split}:{qid}" if files_per_qid[qid] > 1 else qid,
                    "image": image_file(
                        folder, str(require_field(record, "img_name", where)).strip(), where
                    ),
                    "group_id": str(require_field(record, "img_id", where)).strip(),
                    "source_split": split,
                    **vqa_fields(record, where),
                }
            )
    log.info("read %d SLAKE questions (english_only=%s) from %s", len(rows), english_only, root)
    return finish(rows, "vqa", f"{root} (SLAKE, english_only={english_only})")
