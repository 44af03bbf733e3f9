"""``kill -9`` of a pre-training run, then ``dvc repro``: it resumes from the last checkpoint
(or, killed while exporting, only exports) and ends where an uninterrupted run ends, with the
whole run's loss curve and MLflow history."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from medran.training.loop import read_progress
from tests.pipeline.conftest import Repo

pytestmark = pytest.mark.slow
LEVEL = "0.5"
STAGE = f"pretrain@{LEVEL}"
CHECKPOINT = f"checkpoints/pretrain/{LEVEL}"
METRICS = f"reports/pretrain/{LEVEL}/metrics.json"
CURVE = f"reports/pretrain/{LEVEL}/loss.csv"
KILL_HOOK = Path(__file__).parent / "kill_hook"


def killed_run(repo: Repo, **fault: str) -> None:
    """Run the stage with its training process SIGKILLed at the point ``fault`` names
    (``kill_hook/sitecustomize.py``): deterministic, however fast the machine trains."""
    env = repo.env | fault
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(KILL_HOOK), repo.env.get("PYTHONPATH")]))
    killed = subprocess.run(
        ["dvc", "repro", "--single-item", STAGE],
        cwd=repo.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode != 0, killed.stdout + killed.stderr


def reference_run(repo: Repo) -> dict:
    """An uninterrupted run with per-step checkpoints; its metrics, and a clean slate after."""
    params = repo.params()
    params["pretrain"] |= {"epochs": 4, "checkpoint_every_steps": 1}
    repo.set_params(params)
    repo.repro("--single-item", STAGE)
    reference = json.loads((repo.path / METRICS).read_text())
    shutil.rmtree(repo.path / CHECKPOINT)
    return reference | {"steps": curve_steps(repo)}


def curve_steps(repo: Repo) -> list[int]:
    with (repo.path / CURVE).open() as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def pretrain_runs(repo: Repo) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo.path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["medran"], filter_string=f"tags.stage = '{STAGE}'")
    return runs.sort_values("start_time")


def assert_carries_on_from_the_killed_run(repo: Repo, steps: list[int]) -> None:
    """The curve has every step once, and the last run links to the killed one and holds the
    whole loss history."""
    import mlflow

    assert curve_steps(repo) == steps
    runs = pretrain_runs(repo)
    killed, resumed = runs.iloc[-2], runs.iloc[-1]
    assert killed["status"] == "KILLED" and resumed["status"] == "FINISHED"
    assert resumed["tags.resumed_from_run_id"] == killed["run_id"]
    history = mlflow.MlflowClient().get_metric_history(resumed["run_id"], "loss")
    assert sorted(m.step for m in history) == steps


def test_kill_9_then_repro_resumes_to_the_uninterrupted_result(repo_copy: Repo) -> None:
    reference = reference_run(repo_copy)
    killed_run(repo_copy, MEDRAN_KILL_AFTER_STEP="3")  # mid-epoch: resuming skips seen batches
    assert read_progress(repo_copy.path / CHECKPOINT)["step"] == 3
    resumed = repo_copy.repro("--single-item", STAGE)
    assert "resumed from" in resumed.stderr + resumed.stdout

    metrics = json.loads((repo_copy.path / METRICS).read_text())
    # Same batches and RNG state after resume; CPU float rounding is the only difference.
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], abs=1e-5)
    assert_carries_on_from_the_killed_run(repo_copy, reference["steps"])


def test_a_kill_while_exporting_only_exports_again(repo_copy: Repo) -> None:
    reference = reference_run(repo_copy)
    killed_run(repo_copy, MEDRAN_KILL_IN_EXPORT="1")
    final = read_progress(repo_copy.path / CHECKPOINT)
    assert final["step"] == reference["steps"][-1]  # training had finished
    repo_copy.repro("--single-item", STAGE)
    # Resumed at the last step (zero steps left) rather than trained again from step 0: the
    # record survived and the new run carries the killed run's history.
    assert read_progress(repo_copy.path / CHECKPOINT) == final
    metrics = json.loads((repo_copy.path / METRICS).read_text())
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], abs=1e-5)
    assert (repo_copy.path / f"data/models/pretrain/{LEVEL}").is_dir()
    assert_carries_on_from_the_killed_run(repo_copy, reference["steps"])
