"""The ``synthesize`` stage on small sizes: byte-identical reruns, the real datasets' layouts,
and a classification benchmark that is learnable but not trivial."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medran.contracts import SynthesizePaths
from medran.data.synthetic.attributes import (
    BODY_PART_CUIS,
    BODY_PART_SYNONYMS,
    CXR14_LABELS,
    MODALITY_CUIS,
)
from medran.data.synthetic.writers import CXR14_HEADER, MEDICAT_JSONL, VQARAD_JSON
from medran.params import Params
from medran.pipeline import synthesize
from tests.helpers import project_params

SMALL = project_params(
    synthesize={
        "seed": 3,
        "image_size": 48,
        "n_upstream": 60,
        "n_targets": 30,
        "n_cls_patients": 30,
        "n_vqa_images": 40,
    }
)


def run(params: Params, out: Path) -> dict[str, float]:
    return synthesize.run(
        params, paths=SynthesizePaths(out=out, metrics=out.parent / "metrics.json")
    )


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("synth") / "synthetic"
    return out, run(SMALL, out)


def test_rerun_is_byte_identical_and_replaces_the_old_folder(
    corpus: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    first, metrics = corpus
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    assert run(SMALL, out) == metrics
    assert _tree_digest(out) == _tree_digest(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"], "temporary folders left"


def test_rocov2_layout(corpus: tuple[Path, dict[str, float]]) -> None:
    root, metrics = corpus
    sizes = {}
    for split in ("train", "valid", "test"):
        captions = pd.read_csv(root / "rocov2" / f"{split}_captions.csv")
        concepts = pd.read_csv(root / "rocov2" / f"{split}_concepts.csv")
        assert list(captions.columns) == ["ID", "Caption"]
        assert list(concepts.columns) == ["ID", "CUIs"]
        assert captions["ID"].tolist() == concepts["ID"].tolist()
        assert captions["ID"].str.fullmatch(rf"ROCOv2_2023_{split}_\d{{6}}").all()
        assert concepts["CUIs"].str.fullmatch(r"C\d{7}(;C\d{7})+").all()
        for item_id in captions["ID"]:
            with Image.open(root / "rocov2" / split / f"{item_id}.jpg") as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (48, 48))
        sizes[split] = len(captions)
    assert sizes == {"train": 48, "valid": 6, "test": 6}
    assert metrics["n_upstream"] == 60


def test_medicat_layout(corpus: tuple[Path, dict[str, float]]) -> None:
    root, metrics = corpus
    lines = (root / "medicat" / MEDICAT_JSONL).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == metrics["n_targets"] == 30
    for record in records:
        assert re.fullmatch(r"[0-9a-f]{40}", record["pdf_hash"])
        assert record["radiology"] is True and record["s2_caption"]
        path = root / "medicat" / "figures" / f"{record['pdf_hash']}_{record['fig_uri']}"
        with Image.open(path) as image:
            assert (image.format, image.mode) == ("PNG", "RGB")
    assert len({r["pdf_hash"] for r in records}) < len(records), "papers should share figures"
    for part, words in BODY_PART_SYNONYMS.items():
        assert any(any(w in r["s2_caption"].lower() for w in words) for r in records), part


def test_chestxray14_layout(corpus: tuple[Path, dict[str, float]]) -> None:
    root = corpus[0] / "chestxray14"
    frame = pd.read_csv(root / "Data_Entry_2017.csv")
    assert tuple(frame.columns) == CXR14_HEADER
    assert frame["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()
    for labels in frame["Finding Labels"]:
        names = labels.split("|")
        assert set(names) <= set(CXR14_LABELS.values()), labels
        assert "No Finding" not in names or len(names) == 1, labels
    assert frame["Finding Labels"].str.contains("|", regex=False).any()
    train = set((root / "train_val_list.txt").read_text().split())
    test = set((root / "test_list.txt").read_text().split())
    assert train | test == set(frame["Image Index"]) and not train & test
    patient = frame.set_index("Image Index")["Patient ID"]
    assert not set(patient[list(train)]) & set(patient[list(test)]), "patients cross splits"
    with Image.open(root / "images" / frame["Image Index"].iloc[0]) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (48, 48))


def test_vqarad_layout(corpus: tuple[Path, dict[str, float]]) -> None:
    root, metrics = corpus
    records = json.loads((root / "vqarad" / VQARAD_JSON).read_text())
    frame = pd.DataFrame(records)
    assert frame["qid"].is_unique and len(frame) == metrics["n_vqa_questions"]
    assert set(frame["answer_type"]) == {"CLOSED", "OPEN"}
    assert (frame["answer_type"] == "CLOSED").sum() == metrics["n_vqa_closed"]
    assert set(frame["phrase_type"]) == {"freeform", "test_freeform"}
    # The held-out split is by image: no image has questions in both.
    assert frame.groupby("image_name")["phrase_type"].nunique().max() == 1
    assert (frame["answer"] == frame["answer"].str.lower()).all()
    assert frame["image_name"].nunique() == metrics["n_vqa_images"] == 40
    with Image.open(root / "vqarad" / "VQA_RAD Image Folder" / records[0]["image_name"]) as image:
        assert (image.format, image.mode) == ("JPEG", "RGB")


def _pixels(folder: Path, names: pd.Series) -> np.ndarray:
    rows = []
    for name in names:
        with Image.open(folder / name) as image:
            small = image.convert("L").resize((16, 16), Image.Resampling.BILINEAR)
        rows.append(np.asarray(small, dtype=np.float64).ravel() / 255.0)
    return np.stack(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_is_learnable_but_not_trivial(tmp_path: Path, seed: int) -> None:
    """A linear probe on 16x16 pixels, split by patient, lands well between chance and 100%."""
    params = project_params(
        synthesize={
            "seed": seed,
            "n_upstream": 10,
            "n_targets": 10,
            "n_cls_patients": 300,
            "n_vqa_images": 10,
        }
    )
    root = tmp_path / "synthetic" / "chestxray14"
    run(params, root.parent)
    frame = pd.read_csv(root / "Data_Entry_2017.csv")
    frame = frame[~frame["Finding Labels"].str.contains("|", regex=False)]
    test = frame["Image Index"].isin(set((root / "test_list.txt").read_text().split()))
    pixels, labels = _pixels(root / "images", frame["Image Index"]), frame["Finding Labels"]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(pixels[~test.to_numpy()], labels[~test])
    accuracy = probe.score(pixels[test.to_numpy()], labels[test])
    chance = labels[test].value_counts(normalize=True).max()
    assert accuracy > chance + 0.15, (
        f"seed {seed}: accuracy {accuracy:.3f} is too close to chance {chance:.3f}; "
        "lesions are too hard to see"
    )
    assert accuracy < 0.95, f"seed {seed}: accuracy {accuracy:.3f}; the benchmark is trivial"


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_upstream_chest_xray_fraction(tmp_path: Path, fraction: float) -> None:
    """The share of chest radiographs among upstream pairs follows the param (60 pairs)."""
    params = SMALL.model_copy(
        update={
            "synthesize": SMALL.synthesize.model_copy(
                update={"upstream_chest_xray_fraction": fraction}
            )
        }
    )
    run(params, tmp_path / "synthetic")
    chest_xray = f"{MODALITY_CUIS['x-ray']};{BODY_PART_CUIS['chest']}"
    concepts = pd.concat(
        pd.read_csv(tmp_path / "synthetic" / "rocov2" / f"{split}_concepts.csv")
        for split in ("train", "valid", "test")
    )
    share = (concepts["CUIs"] == chest_xray).mean()
    expected = {0.0: (0.0, 0.25), 0.5: (0.35, 0.75), 1.0: (1.0, 1.0)}[fraction]
    assert expected[0] <= share <= expected[1], share
