"""Format readers for real datasets' layouts, looked up by name (contract: ``base``)."""

from __future__ import annotations

from medran.data.readers import chestxray14, imagefolder, medicat, rocov2, slake, vqarad
from medran.data.readers.base import Reader

READERS: dict[str, Reader] = {
    "rocov2_csv": Reader("captions", rocov2.read_csv, "ROCOv2 captions CSVs + image folders"),
    "rocov2_parquet": Reader("captions", rocov2.read_parquet, "ROCOv2 Hugging Face parquet"),
    "medicat_jsonl": Reader("captions", medicat.read, "MediCaT JSONL + figures folder"),
    "chestxray14_csv": Reader("labels", chestxray14.read, "ChestX-ray14 Data_Entry CSV + images"),
    "imagefolder": Reader("labels", imagefolder.read, "one folder per class"),
    "vqarad_json": Reader("vqa", vqarad.read, "VQA-RAD JSON + image folder"),
    "slake_json": Reader("vqa", slake.read, "SLAKE train/validate/test JSON + imgs"),
}


def get_reader(name: str) -> Reader:
    if name not in READERS:
        raise ValueError(f"unknown data format {name!r}; allowed: {sorted(READERS)}")
    return READERS[name]
