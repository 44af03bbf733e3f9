"""Shared small data: a data root with a prepared corpus, made once per test session."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from medran import layout, names
from medran.contracts import PrepareDataPaths, SynthesizePaths, ValidateDataPaths
from medran.params import Params
from medran.pipeline import prepare_data, synthesize
from medran.runner import execute
from tests.helpers import project_params

# Changes to params.yaml's synthesize section: a small corpus.
SMALL = {
    "n_upstream": 60,
    "n_targets": 30,
    "n_cls_patients": 20,
    "max_followups": 2,
    "n_vqa_images": 15,
}


# A small corpus keeps most rows for training, so every label is seen there.
FRACTIONS = {role: {"train": 0.8, "val": 0.1, "test": 0.1} for role in names.ROLES}

# The synthetic corpus' layouts, relative to a data root that holds ``raw/``.
SOURCES = {
    "upstream": {"format": "rocov2_csv", "path": "raw/rocov2"},
    "targets": {"format": "medicat_jsonl", "path": "raw/medicat"},
    "cls": {"format": "chestxray14_csv", "path": "raw/chestxray14"},
    "vqa": {"format": "vqarad_json", "path": "raw/vqarad"},
}


def make_data_root(root: Path, synth: dict[str, Any] = SMALL, image_size: int = 64) -> Path:
    """``root/raw`` in the real layouts, ``root/prepared`` as prepare_data writes it.

    ``synth`` changes params.yaml's synthesize section; sources are read relative to ``root``
    (prepare_data reads them relative to the working directory, the project root)."""
    params = project_params(
        seed=0,
        synthesize=synth,
        prepare_data={"image_size": image_size, "sources": SOURCES, "split_fractions": FRACTIONS},
    )
    synthesize.run(params, paths=SynthesizePaths(out=root / "raw", metrics=root / "unused.json"))
    with contextlib.chdir(root):
        out = PrepareDataPaths(out=root / layout.PREPARED, metrics=root / "unused.json")
        prepare_data.run(params, paths=out)
    return root


def run_gate(gate: str, data_root: Path, out: Path, params: Params) -> dict[str, Any]:
    """A data-quality gate as the runner runs it: Data Docs in ``out/docs`` and its report
    written to ``out/result.json`` whether or not it passes (``medran.runner.run_stage``).
    ``gate`` is a ``validate_data`` gate, or ``noisy@<level>`` for ``validate_noisy``."""
    paths = ValidateDataPaths(data=data_root, docs=out / "docs", metrics=out / "result.json")
    if gate.startswith("noisy@"):
        return execute("validate_noisy", params, paths, level=float(gate.removeprefix("noisy@")))
    return execute("validate_data", params, paths, gate=gate)


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
