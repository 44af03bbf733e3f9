"""``pretrain@<level>`` and ``eval_upstream@<level>`` on a small noisy corpus."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from medran import layout
from medran.contracts import EvalUpstreamPaths, PretrainPaths, registered_model_name
from medran.data.errors import DataError
from medran.data.manifest import ADV_CAPTION_COLUMNS, ADV_IMAGE_COLUMNS, read_manifest
from medran.errors import InputError
from medran.models.factory import load_local_dir
from medran.models.wrappers import ImageEncoder
from medran.params import ParamsError, PretrainParams
from medran.pipeline import eval_upstream, pretrain
from medran.pipeline.build_noisy import noisy_manifest
from medran.training.data import load_images
from medran.training.loop import read_progress
from tests.helpers import project_params
from tests.integration.conftest import SOURCES, make_data_root

BASE = project_params(experiment="medran-test")
PARAMS = project_params(
    pretrain={"epochs": 2, "global_batch_size": 16, "warmup_steps": 2, "lr": 1e-3}
).pretrain


@pytest.fixture(scope="module")
def noisy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a clean (level 0.0) noisy corpus: no attack needed for level 0."""
    root = make_data_root(tmp_path_factory.mktemp("noisy") / "data")
    upstream = read_manifest(root / layout.PREPARED, "upstream")
    empty_attacks = pd.DataFrame(columns=list(ADV_IMAGE_COLUMNS))
    empty_captions = pd.DataFrame(columns=list(ADV_CAPTION_COLUMNS))
    frame = noisy_manifest(upstream, empty_attacks, empty_captions, 0.0, "rewrite")
    (root / layout.noisy_dir(0.0)).mkdir(parents=True)
    frame.to_parquet(root / layout.noisy_dir(0.0) / "manifest.parquet", index=False)
    return root


def train(root: Path, out: Path, params: PretrainParams = PARAMS) -> dict:
    paths = PretrainPaths(
        data=root,
        model=out / "model",
        checkpoints=out / "checkpoints",
        metrics=out / "metrics.json",
        curve=out / "loss.csv",
    )
    return pretrain.run(BASE.model_copy(update={"pretrain": params}), paths=paths, level=0.0)


def test_pretrain_exports_a_model_and_logs_lineage(
    noisy_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    metrics = train(noisy_root, tmp_path)
    clip = load_local_dir(tmp_path / "model")
    assert clip.image_size == 64 and metrics["n_adversarial"] == 0
    run_id = json.loads((tmp_path / "model" / "run.json").read_text())["run_id"]
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "pretrain@0.0"
    tags = run.data.tags
    assert tags["stage"] == "pretrain@0.0" and tags["noise_level"] == "0.0" and tags["seed"] == "0"
    assert tags["data_md5.noisy"].endswith(".dir") and len(tags["data_md5.model_config"]) == 32
    assert "git_commit" in tags and run.data.params["global_batch_size"] == "16"
    history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
    n_train = metrics["n_train"]
    assert len(history) == 2 * (n_train // 16)  # drop_last: full global batches only
    for name in ("lr", "images_per_s", "epoch_loss"):
        assert mlflow.MlflowClient().get_metric_history(run_id, name), name
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["noisy"]
    with (tmp_path / "loss.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(history)
    # The released model, registered: unit embeddings in CLIP space, as open_clip gives them.
    model = mlflow.pyfunc.load_model(f"models:/{registered_model_name(0.0)}/latest")
    assert model.metadata.run_id == run_id
    files = sorted((noisy_root / layout.PREPARED).rglob("*.png"))[:3]
    frame = pd.DataFrame(
        {"image": [f.read_bytes() for f in files] + [None], "text": [None] * 3 + ["no finding"]}
    )
    embeddings = np.array(model.predict(frame)["embedding"].tolist())
    assert embeddings.shape == (4, clip.model_cfg["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    clip.model.eval()
    with torch.no_grad():
        pixels = load_images(files, clip.image_size).float().div(255.0)
        direct = ImageEncoder(clip)(pixels)  # L2-normalised
        text = clip.model.encode_text(clip.tokenizer()(["no finding"]))
    np.testing.assert_allclose(embeddings[:3], direct.numpy(), atol=1e-5)
    np.testing.assert_allclose(embeddings[3], torch.nn.functional.normalize(text)[0], atol=1e-5)
    with pytest.raises(InputError, match="an 'image' or a 'text'"):
        model.predict(pd.DataFrame({"image": [None], "text": [None]}))


def test_crash_marks_run_failed_and_rerun_resumes_to_the_same_model(
    noisy_root: Path, tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference"
    train(noisy_root, reference)

    calls = {"n": 0}
    real_log = mlflow.log_metrics

    def crash_at_step_3(metrics, step=None, **kwargs):  # dies mid-epoch 1, after its checkpoint
        calls["n"] += 1
        if step == 3 and "loss" in metrics:
            raise KeyboardInterrupt("simulated kill")
        return real_log(metrics, step=step, **kwargs)

    crashed = tmp_path / "crashed"
    params = PARAMS.model_copy(update={"checkpoint_every_steps": 1})
    monkeypatch.setattr(mlflow, "log_metrics", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(noisy_root, crashed, params)
    monkeypatch.setattr(mlflow, "log_metrics", real_log)
    runs = mlflow.search_runs(experiment_names=["medran-test"], order_by=["start_time DESC"])
    assert runs.iloc[0]["status"] in {"FAILED", "KILLED"}
    assert read_progress(crashed / "checkpoints")["step"] == 2

    train(noisy_root, crashed, params)  # resumes from the step-2 checkpoint
    a = load_local_dir(reference / "model").model.state_dict()
    b = load_local_dir(crashed / "model").model.state_dict()
    # Same data order and RNG state after resume: equal to float rounding on CPU.
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_rerun_of_a_finished_run_trains_again_to_the_same_result(
    noisy_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    first = train(noisy_root, tmp_path)
    again = train(noisy_root, tmp_path)  # same params, data and checkpoint folder
    assert again["final_loss"] == pytest.approx(first["final_loss"], abs=1e-5)
    with (tmp_path / "loss.csv").open() as f:
        assert len(list(csv.DictReader(f))) > 0


def test_changed_params_discard_the_old_checkpoint(
    noisy_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    train(noisy_root, tmp_path)
    stamp = (tmp_path / "checkpoints" / "fingerprint.txt").read_text()
    train(noisy_root, tmp_path, PARAMS.model_copy(update={"lr": 2e-3}))
    assert (tmp_path / "checkpoints" / "fingerprint.txt").read_text() != stamp


def test_eval_upstream_reports_retrieval_and_zero_shot(
    noisy_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    train(noisy_root, tmp_path)
    paths = EvalUpstreamPaths(
        data=noisy_root, model=tmp_path / "model", metrics=tmp_path / "upstream.json"
    )
    metrics = eval_upstream.run(BASE, paths=paths, level=0.0)
    for key in ("i2t_r1", "t2i_r10", "zero_shot_accuracy", "mean_recall"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["i2t_r10"] >= metrics["i2t_r1"]
    # The probes: fitted on the chest X-ray train split, scored on its test split.
    for key in ("probe_auroc", "pixel_probe_auroc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    cls = pd.read_parquet(noisy_root / layout.PREPARED / "cls.parquet")
    assert metrics["n_probe_test"] == (cls["split"] == "test").sum() > 0
    assert metrics["n_probe_train"] == (cls["split"] == "train").sum()
    pretrain_run = json.loads((tmp_path / "model" / "run.json").read_text())["run_id"]
    found = mlflow.search_runs(
        experiment_names=["medran-test"], filter_string="tags.stage = 'eval_upstream@0.0'"
    )
    assert found.iloc[0]["tags.upstream_run_id"] == pretrain_run


def test_empty_noisy_corpus_is_refused(noisy_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / layout.noisy_dir(0.0)).mkdir(parents=True)
    frame = pd.read_parquet(noisy_root / layout.noisy_dir(0.0) / "manifest.parquet")
    frame[frame["split"] != "train"].to_parquet(root / layout.noisy_dir(0.0) / "manifest.parquet")
    with pytest.raises(DataError, match="no training rows"):
        train(root, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"global_batch_size": 30, "num_processes": 4}, r"global_batch_size 30 must divide by"),
        ({"lr": 0.0}, r"pretrain\.lr = 0\.0: .*greater than 0"),
        ({"model": "ViT-B-23"}, r"unknown open_clip model 'ViT-B-23'; close matches: \['ViT-B-32'"),
        ({"model": "local-dir:/nonexistent"}, r"open_clip_config\.json does not exist"),
    ],
)
def test_bad_pretrain_params_fail_before_training(change: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        project_params(prepare_data={"sources": SOURCES}, pretrain=change)
