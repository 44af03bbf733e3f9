"""The CI-scale pipeline under real ``dvc repro`` in a temporary git + DVC repo."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest

from tests.pipeline.conftest import Repo

pytestmark = pytest.mark.slow

DATA_STAGES = {"synthesize", "prepare_data", "validate_data@clean"}


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def data_md5s(repo: Repo) -> dict[str, str]:
    """DVC md5 of every data output (reports such as Data Docs carry timestamps)."""
    lock = repo.lock()["stages"]
    return {
        out["path"]: out["md5"]
        for spec in lock.values()
        for out in spec.get("outs", [])
        if out["path"].startswith("data/")
    }


def test_pipeline_prepares_data_and_passes_the_clean_gate(built_repo: Repo) -> None:
    prepared = built_repo.path / "data" / "prepared"
    for role in ("upstream", "targets", "cls", "vqa"):
        frame = pd.read_parquet(prepared / f"{role}.parquet")
        assert len(frame) >= 5
        assert (prepared / frame["image_path"].iloc[0]).is_file()
    result = json.loads((built_repo.path / "reports/data_quality/clean/result.json").read_text())
    assert result["success"] is True
    assert (built_repo.path / "reports/data_quality/clean/docs/index.html").is_file()


def test_second_repro_is_up_to_date_and_fast(built_repo: Repo) -> None:
    start = time.perf_counter()
    result = built_repo.repro()
    elapsed = time.perf_counter() - start
    assert ran(result.stdout) == set()
    assert "up to date" in result.stdout
    assert elapsed < 10, f"no-op dvc repro took {elapsed:.1f}s"


def test_param_changes_rerun_only_dependent_stages(repo_copy: Repo) -> None:
    params = repo_copy.params()
    params["validate_data"]["min_rows"] += 1
    repo_copy.set_params(params)
    assert ran(repo_copy.repro().stdout) == {"validate_data@clean"}

    params["prepare_data"]["split_fractions"] = {"train": 0.7, "val": 0.15, "test": 0.15}
    repo_copy.set_params(params)
    assert ran(repo_copy.repro().stdout) == {"prepare_data", "validate_data@clean"}

    params["synthesize"]["pixel_noise"] += 0.01
    repo_copy.set_params(params)
    assert ran(repo_copy.repro().stdout) == DATA_STAGES


def test_same_seed_gives_byte_identical_datasets(repo_copy: Repo) -> None:
    before = data_md5s(repo_copy)
    assert set(before) == {"data/raw/synthetic", "data/prepared"}
    repo_copy.repro("--force")
    assert data_md5s(repo_copy) == before


def test_corrupt_prepared_image_fails_the_gate_naming_the_row(repo_copy: Repo) -> None:
    prepared = repo_copy.path / "data" / "prepared"
    row = pd.read_parquet(prepared / "cls.parquet").iloc[3]
    image = prepared / row["image_path"]
    image.write_bytes(image.read_bytes()[:40])
    result = repo_copy.repro("--single-item", "validate_data@clean", check=False)
    assert result.returncode != 0
    assert row["id"] in result.stderr + result.stdout


def test_duplicate_id_fails_the_gate_naming_the_id(repo_copy: Repo) -> None:
    path = repo_copy.path / "data" / "prepared" / "upstream.parquet"
    frame = pd.read_parquet(path)
    duplicate = frame.iloc[[0]].assign(sha256="0" * 64)
    pd.concat([frame, duplicate]).to_parquet(path, index=False)
    result = repo_copy.repro("--single-item", "validate_data@clean", check=False)
    assert result.returncode != 0
    assert frame["id"].iloc[0] in result.stderr + result.stdout
