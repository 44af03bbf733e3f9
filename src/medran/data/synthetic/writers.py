"""Write synthetic items in the real datasets' on-disk layouts (ROCOv2, MediCaT, ChestX-ray14,
VQA-RAD), so the project's format readers serve the synthetic default and real data alike.

Output is byte-identical for identical input: items are written in the order given, images
carry no timestamps or metadata (Pillow writes none for PNG, and its JPEG encoder is
deterministic), and CSV/JSON use fixed column and key orders.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medran.data.synthetic.text import QA

ROCOV2_SPLITS = ("train", "valid", "test")
MEDICAT_JSONL = "s2_full_figures_oa_nonroco_combined_medical_top4_public.jsonl"
MEDICAT_FIGURES = "figures"
CXR14_CSV = "Data_Entry_2017.csv"
# The real header: "OriginalImage[Width,Height]" is two columns split at the comma.
CXR14_HEADER = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
)
CXR14_IMAGES = "images"
VQARAD_JSON = "VQA_RAD Dataset Public.json"
VQARAD_IMAGES = "VQA_RAD Image Folder"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class CaptionItem:
    """One ROCOv2 image-caption pair; ``split`` is train/valid/test."""

    id: str
    split: str
    caption: str
    cuis: tuple[str, ...]
    image: np.ndarray


@dataclass(frozen=True)
class FigureItem:
    """One MediCaT figure of a paper (``pdf_hash``) with its caption."""

    pdf_hash: str
    fig_uri: str
    caption: str
    image: np.ndarray


@dataclass(frozen=True)
class ChestItem:
    """One ChestX-ray14 image: a patient's follow-up with its label names."""

    patient_id: int
    followup: int
    labels: tuple[str, ...]
    age: int
    gender: str
    view: str
    image: np.ndarray

    @property
    def index(self) -> str:
        return f"{self.patient_id:08d}_{self.followup:03d}.png"


@dataclass(frozen=True)
class VqaItem:
    """One VQA-RAD image with its questions; ``test`` marks the held-out images."""

    image_name: str
    organ: str
    qas: tuple[QA, ...]
    test: bool
    image: np.ndarray


def save_image(image: np.ndarray, path: Path, fmt: str) -> None:
    """Save a uint8 array (2-D grey or RGB) as PNG or JPEG without metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image)
    if fmt == "JPEG":
        picture.save(path, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(path, format="PNG")


def _write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_rocov2(root: Path, items: Iterable[CaptionItem]) -> int:
    """Per split: ``<split>_captions.csv`` (ID,Caption), ``<split>_concepts.csv`` (ID,CUIs)
    and the images ``<split>/<ID>.jpg``."""
    by_split: dict[str, list[CaptionItem]] = {split: [] for split in ROCOV2_SPLITS}
    for item in items:
        save_image(item.image, root / item.split / f"{item.id}.jpg", "JPEG")
        by_split[item.split].append(item)
    for split, rows in by_split.items():
        _write_csv(
            root / f"{split}_captions.csv", ("ID", "Caption"), ((r.id, r.caption) for r in rows)
        )
        concepts = ((r.id, ";".join(r.cuis)) for r in rows)
        _write_csv(root / f"{split}_concepts.csv", ("ID", "CUIs"), concepts)
    return sum(len(rows) for rows in by_split.values())


def write_medicat(root: Path, items: Iterable[FigureItem]) -> int:
    """One JSON object per figure in the JSONL, images at ``figures/<pdf_hash>_<fig_uri>``."""
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    with (root / MEDICAT_JSONL).open("w", encoding="utf-8") as f:
        for item in items:
            key = f"{item.pdf_hash}_{item.fig_uri}"
            save_image(item.image, root / MEDICAT_FIGURES / key, "PNG")
            record = {
                "pdf_hash": item.pdf_hash,
                "fig_uri": item.fig_uri,
                "fig_key": key,
                "s2_caption": item.caption,
                "radiology": True,
            }
            f.write(json.dumps(record) + "\n")
            count += 1
    return count


def write_chestxray14(root: Path, items: Iterable[ChestItem], test_patients: set[int]) -> int:
    """``Data_Entry_2017.csv``, ``images/<Image Index>`` (grey PNG) and the two split lists."""
    rows, train_val, test = [], [], []
    for item in items:
        save_image(item.image, root / CXR14_IMAGES / item.index, "PNG")
        height, width = item.image.shape[:2]
        # Real images are 1024 px at 0.143 mm; keep the field of view when downsampling.
        spacing = round(0.143 * 1024 / width, 4)
        labels = "|".join(item.labels)
        row = (item.index, labels, item.followup, item.patient_id, item.age, item.gender)
        rows.append((*row, item.view, width, height, spacing, spacing))
        (test if item.patient_id in test_patients else train_val).append(item.index)
    _write_csv(root / CXR14_CSV, CXR14_HEADER, rows)
    (root / "train_val_list.txt").write_text("".join(f"{i}\n" for i in train_val))
    (root / "test_list.txt").write_text("".join(f"{i}\n" for i in test))
    return len(rows)


def write_vqarad(root: Path, items: Iterable[VqaItem]) -> int:
    """``VQA_RAD Dataset Public.json`` (a list of QA records) and the JPEG image folder."""
    records = []
    for item in items:
        save_image(item.image, root / VQARAD_IMAGES / item.image_name, "JPEG")
        for qa in item.qas:
            records.append(
                {
                    "qid": len(records) + 1,
                    "image_name": item.image_name,
                    "image_organ": item.organ,
                    "question": qa.question,
                    "answer": qa.answer,
                    "answer_type": qa.answer_type,
                    "question_type": qa.question_type,
                    "phrase_type": "test_freeform" if item.test else "freeform",
                    "evaluation": "given",
                }
            )
    root.mkdir(parents=True, exist_ok=True)
    with (root / VQARAD_JSON).open("w", encoding="utf-8") as f:
        json.dump(records, f, indent=1)
        f.write("\n")
    return len(records)
