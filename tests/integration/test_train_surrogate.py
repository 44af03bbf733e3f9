"""``train_surrogate``: both modes export open_clip local-dir folders that open_clip loads."""

from __future__ import annotations

from pathlib import Path

import mlflow
import open_clip
import torch

from medran.contracts import TrainSurrogatePaths
from medran.models.factory import create_clip, save_local_dir
from medran.params import Params
from medran.pipeline import train_surrogate
from tests.helpers import project_params


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return open_clip.create_model(f"local-dir:{folder}").state_dict()


def surrogate(params: Params, data_root: Path, out: Path) -> dict[str, float]:
    paths = TrainSurrogatePaths(data=data_root, out=out, metrics=out.parent / "metrics.json")
    return train_surrogate.run(params, paths=paths)


def test_train_mode_exports_two_different_encoders(
    data_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    params = project_params(
        experiment="medran-test", train_surrogate={"epochs": 2, "batch_size": 10}
    )
    metrics = surrogate(params, data_root, tmp_path / "surrogate")
    attack, captioner = (
        weights(tmp_path / "surrogate/attack"),
        weights(tmp_path / "surrogate/captioner"),
    )
    assert not torch.equal(attack["visual.conv1.weight"], captioner["visual.conv1.weight"])
    assert metrics["attack.final_loss"] > 0 and metrics["attack.parameters"] > 1e6
    run = mlflow.search_runs(experiment_names=["medran-test"]).iloc[0]
    assert run["tags.stage"] == "train_surrogate" and run["status"] == "FINISHED"
    assert run["tags.data_md5.prepared"].endswith(".dir")
    assert not list(tmp_path.glob(".surrogate*")), "temporary folder left behind"


def test_pretrained_mode_exports_a_named_local_dir_model_unchanged(
    data_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    released = save_local_dir(create_clip("medran-tiny", seed=7), tmp_path / "released")
    params = project_params(
        experiment="medran-test",
        train_surrogate={
            "mode": "pretrained",
            "model": f"local-dir:{released}",
            "captioner_model": f"local-dir:{released}",
        },
    )
    surrogate(params, data_root, tmp_path / "surrogate")
    exported = weights(tmp_path / "surrogate/attack")
    for name, value in weights(released).items():
        torch.testing.assert_close(exported[name], value)
