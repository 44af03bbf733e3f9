"""``kill -9`` of a pre-training run, then ``dvc repro``: it resumes from the last checkpoint
and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import psutil
import pytest

from medran.training.loop import read_progress
from tests.pipeline.conftest import Repo

pytestmark = pytest.mark.slow
LEVEL = "0.5"
STAGE = f"pretrain@{LEVEL}"
CHECKPOINT = f"checkpoints/pretrain/{LEVEL}"
METRICS = f"reports/pretrain/{LEVEL}/metrics.json"


def training_process(dvc: subprocess.Popen) -> psutil.Process | None:
    for child in psutil.Process(dvc.pid).children(recursive=True):
        if "stages/pretrain.py" in " ".join(child.cmdline()):
            return child
    return None


def kill_after_step(repo: Repo, step: int, timeout: float = 300) -> None:
    """Start the stage and SIGKILL its training process once a checkpoint passes ``step``."""
    dvc = subprocess.Popen(
        ["dvc", "repro", "--single-item", STAGE],
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = repo.path / CHECKPOINT
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = read_progress(checkpoint) if checkpoint.is_dir() else None
        if progress and progress["step"] >= step:
            trainer = training_process(dvc)
            assert trainer is not None, "training finished before it could be killed"
            trainer.send_signal(signal.SIGKILL)
            dvc.wait(timeout=60)
            assert dvc.returncode != 0
            return
        if dvc.poll() is not None:
            raise AssertionError("the stage ended before reaching the checkpoint to kill at")
        time.sleep(0.2)
    dvc.kill()
    raise AssertionError("no checkpoint appeared in time")


def test_kill_9_then_repro_resumes_to_the_uninterrupted_result(repo_copy: Repo) -> None:
    params = repo_copy.params()
    params["pretrain"] |= {"epochs": 4, "checkpoint_every_steps": 1}
    repo_copy.set_params(params)
    repo_copy.repro("--single-item", STAGE)  # uninterrupted reference with these params
    reference = json.loads((repo_copy.path / METRICS).read_text())

    shutil.rmtree(repo_copy.path / CHECKPOINT)
    kill_after_step(repo_copy, step=4)
    resumed = repo_copy.repro("--single-item", STAGE)
    assert "resumed from" in resumed.stderr + resumed.stdout

    metrics = json.loads((repo_copy.path / METRICS).read_text())
    # Same batches and RNG state after resume; CPU float rounding is the only difference.
    assert metrics["final_loss"] == pytest.approx(reference["final_loss"], abs=1e-5)
