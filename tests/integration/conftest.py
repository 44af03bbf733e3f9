"""Shared small data: a data root with a prepared corpus, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from medran import layout
from medran.params import PrepareDataParams, SynthesizeParams
from medran.pipeline import prepare_data, synthesize

SMALL = SynthesizeParams(
    n_upstream=60, n_targets=30, n_cls_patients=20, max_followups=2, n_vqa_images=15
)


# The synthetic corpus' layouts, relative to a data root that holds ``raw/``.
SOURCES = {
    "upstream": {"format": "rocov2_csv", "path": "raw/rocov2"},
    "targets": {"format": "medicat_jsonl", "path": "raw/medicat"},
    "cls": {"format": "chestxray14_csv", "path": "raw/chestxray14"},
    "vqa": {"format": "vqarad_json", "path": "raw/vqarad"},
}


def make_data_root(root: Path, synth: SynthesizeParams = SMALL, image_size: int = 64) -> Path:
    """``root/raw`` in the real layouts, ``root/prepared`` as prepare_data writes it."""
    synthesize.run(synth, root / "raw")
    params = PrepareDataParams.model_validate({"image_size": image_size, "sources": SOURCES})
    prepare_data.run(params, root, root / layout.PREPARED, seed=0)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only data root shared by the integration tests (copy it before changing it)."""
    return make_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real, empty SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
