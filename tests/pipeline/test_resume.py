"""``kill -9`` of a pre-training run, then ``dvc repro``: it resumes from the last checkpoint
and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from medran.training.loop import read_progress
from tests.pipeline.conftest import Repo

pytestmark = pytest.mark.slow
LEVEL = "0.5"
STAGE = f"pretrain@{LEVEL}"
CHECKPOINT = f"checkpoints/pretrain/{LEVEL}"
METRICS = f"reports/pretrain/{LEVEL}/metrics.json"
KILL_HOOK = Path(__file__).parent / "kill_hook"


def kill_9_after_step(repo: Repo, step: int) -> None:
    """Run the stage with its training process SIGKILLed right after the checkpoint of
    ``step`` is complete (``kill_hook/sitecustomize.py``): deterministic, however fast
    the machine trains."""
    env = repo.env | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(KILL_HOOK), repo.env.get("PYTHONPATH")])),
        "MEDRAN_KILL_AFTER_STEP": str(step),
    }
    killed = subprocess.run(
        ["dvc", "repro", "--single-item", STAGE],
        cwd=repo.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert not (repo.path / METRICS).exists() or read_progress(repo.path / CHECKPOINT)


def test_kill_9_then_repro_resumes_to_the_uninterrupted_result(repo_copy: Repo) -> None:
    params = repo_copy.params()
    params["pretrain"] |= {"epochs": 4, "checkpoint_every_steps": 1}
    repo_copy.set_params(params)
    repo_copy.repro("--single-item", STAGE)  # uninterrupted reference with these params
    reference = json.loads((repo_copy.path / METRICS).read_text())

    shutil.rmtree(repo_copy.path / CHECKPOINT)
    kill_9_after_step(repo_copy, step=3)  # mid-epoch: resuming skips the batches already seen
    resumed = repo_copy.repro("--single-item", STAGE)
    assert "resumed from" in resumed.stderr + resumed.stdout

    metrics = json.loads((repo_copy.path / METRICS).read_text())
    # Same batches and RNG state after resume; CPU float rounding is the only difference.
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], abs=1e-5)
