"""The one training loop: learns, checkpoints, and resumes to the same result after a crash."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from medran.training.loop import (
    LoopConfig,
    LoopHooks,
    latest_checkpoint,
    make_accelerator,
    read_progress,
    train,
    warmup_cosine,
)

CFG = LoopConfig(epochs=3, batch_size=8, lr=0.05, weight_decay=0.0, warmup_steps=2, seed=0)


class Crash(RuntimeError):
    pass


def problem() -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) > 0).long()
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2)), TensorDataset(x, y)


def objective(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
    x, y = batch
    return {"loss": nn.functional.cross_entropy(model(x), y)}


def fit(checkpoint_dir: Path | None, crash_at: int | None = None, **changes) -> nn.Module:
    model, data = problem()
    losses = []

    def on_step(step: int, values: dict[str, float]) -> None:
        losses.append(values["loss"])
        if step == crash_at:
            raise Crash(step)

    cfg = LoopConfig(**{**CFG.__dict__, "checkpoint_dir": checkpoint_dir, **changes})
    trained = train(make_accelerator(cpu=True), model, data, objective, cfg, LoopHooks(on_step))
    trained.losses = losses
    return trained


def test_loss_decreases_and_schedule_warms_up() -> None:
    model = fit(None)
    assert len(model.losses) == 3 * 8
    assert sum(model.losses[-4:]) < sum(model.losses[:4])
    factor = warmup_cosine(2, 10)
    assert [round(factor(s), 3) for s in (0, 1, 2, 10)] == [0.5, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("crash_at", [8, 13])  # at an epoch boundary, and mid-epoch
def test_resume_after_crash_matches_uninterrupted_run(tmp_path: Path, crash_at: int) -> None:
    reference = fit(tmp_path / "ref", checkpoint_every_steps=1)
    with pytest.raises(Crash):
        fit(tmp_path / "ckpt", crash_at=crash_at, checkpoint_every_steps=1)
    resumed = fit(tmp_path / "ckpt", checkpoint_every_steps=1)
    assert len(resumed.losses) == 24 - crash_at + 1  # the crashed step was not checkpointed
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_state_killed_while_being_written_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(Crash):
        fit(tmp_path, crash_at=13, checkpoint_every_steps=1)
    (complete,) = tmp_path.glob("state-*")
    assert read_progress(tmp_path)["step"] == 12
    # A kill between save_state and progress.json leaves a newer folder without it.
    partial = tmp_path / "state-000000013-00001"
    shutil.copytree(complete, partial)
    (partial / "progress.json").unlink()
    assert latest_checkpoint(tmp_path) == complete
    resumed = fit(tmp_path, checkpoint_every_steps=1)
    assert len(resumed.losses) == 24 - 12


def test_a_lost_random_state_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Accelerate reports an RNG state it could not restore at INFO, among routine lines; the
    loop reports it as a warning instead."""
    with pytest.raises(Crash):
        fit(tmp_path, crash_at=13, checkpoint_every_steps=1)
    for rng_file in tmp_path.glob("state-*/random_states_*.pkl"):
        rng_file.write_bytes(b"not a pickle")
    with caplog.at_level(logging.INFO):
        resumed = fit(tmp_path, checkpoint_every_steps=1)
    assert len(resumed.losses) == 24 - 12
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("random-number states could not be restored" in r.message for r in warnings)
    assert not any("Could not load random states" in r.message for r in caplog.records)


def test_the_progress_bar_counts_every_batch_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("medran.progress.shown", lambda main=True: main)  # as on a terminal
    fit(None, label="finetune@0.0-cls-ran seed0")
    drawn = capsys.readouterr().err
    assert "finetune@0.0-cls-ran seed0:   0%|" in drawn and " 0/24 " in drawn
    assert "epoch=3/3" in drawn
    # A resumed run's bar starts where the checkpoint left off.
    with pytest.raises(Crash):
        fit(tmp_path, crash_at=13, checkpoint_every_steps=1)
    capsys.readouterr()
    fit(tmp_path, checkpoint_every_steps=1)
    assert " 12/24 " in capsys.readouterr().err
