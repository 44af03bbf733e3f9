"""``attack_images`` on a small prepared corpus with a random-init ``medran-tiny`` surrogate.

One attack is run into a copy of the shared data root; the other tests compare against it
(resume after a kill or a lost shard must give the same bytes) or break a copy of the inputs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medran import layout
from medran.attacks.selection import attack_order, n_replaced
from medran.attacks.shards import ShardStore
from medran.contracts import AttackImagesPaths
from medran.data.errors import DataError
from medran.data.manifest import ADV_IMAGE_COLUMNS, read_manifest
from medran.errors import InputError
from medran.models.factory import create_clip, save_local_dir
from medran.params import AttackImagesParams, ParamsError, parse_params
from medran.pipeline import attack_images
from tests.helpers import project_params

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "attack-test"
# 48 train pairs at max_fraction 0.25 -> 12 attacked, 3 shards of 4, 2 batches per shard.
ALL = project_params(
    experiment=EXPERIMENT,
    noise_levels=[0.0, 0.25],  # within max_fraction
    attack_images={"steps": 15, "max_fraction": 0.25, "batch_size": 2, "shard_size": 4},
)
PARAMS = ALL.attack_images


def fresh_root(data_root: Path, folder: Path) -> Path:
    """A data root of our own (the attack writes inside it): prepared data + a surrogate."""
    shutil.copytree(data_root / layout.PREPARED, folder / layout.PREPARED)
    save_local_dir(create_clip("medran-tiny", seed=0), folder / "surrogate" / "attack")
    return folder


def stage_paths(root: Path, out: Path) -> AttackImagesPaths:
    return AttackImagesPaths(
        data=root,
        surrogate=root / "surrogate" / "attack",
        out=out,
        metrics=root / "metrics.json",
        figure=root / "examples.png",
    )


def attack(root: Path, params: AttackImagesParams = PARAMS) -> dict:
    """The stage with ``params`` as its section (unvalidated when made by ``model_copy``)."""
    whole = ALL.model_copy(update={"attack_images": params})
    return attack_images.run(whole, paths=stage_paths(root, root / layout.ATTACK_IMAGES))


def output_bytes(root: Path) -> dict[str, bytes]:
    out = root / layout.ATTACK_IMAGES
    files = [*sorted((out / "png").iterdir()), out / "manifest.parquet", out / "attack.json"]
    return {f.relative_to(out).as_posix(): f.read_bytes() for f in files}


@pytest.fixture(scope="module")
def attacked(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("attacked")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.chdir(folder)  # the SQLite store puts artifacts in ./mlruns
        root = fresh_root(data_root, folder)
        metrics = attack(root)
        runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
        artifacts = [mlflow.artifacts.list_artifacts(run_id=r) for r in runs["run_id"]]
    return root, {"metrics": metrics, "runs": runs, "artifacts": artifacts}


def test_manifest_is_measured_on_the_saved_files(attacked: tuple[Path, dict]) -> None:
    root, _ = attacked
    frame = pd.read_parquet(root / layout.ATTACK_IMAGES / "manifest.parquet")
    assert tuple(frame.columns) == ADV_IMAGE_COLUMNS
    upstream = read_manifest(root / layout.PREPARED, "upstream")
    train = upstream.loc[upstream["split"] == "train", "id"]
    order = attack_order(train, PARAMS.seed)[: n_replaced(PARAMS.max_fraction, len(train))]
    assert frame["id"].tolist() == order and frame["rank"].tolist() == list(range(len(order)))
    assert sorted(p.name for p in (root / layout.ATTACK_IMAGES / "png").iterdir()) == sorted(
        f"{i}.png" for i in order
    )
    assert (frame["clean_body_part"] != frame["target_body_part"]).all()
    for row in frame.itertuples():
        data = (root / row.adv_image_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.adv_sha256
        with (
            Image.open(root / row.adv_image_path) as adv,
            Image.open(root / row.clean_image_path) as clean,
        ):
            assert adv.format == "PNG" and adv.mode == "RGB"
            levels = np.asarray(adv).astype(int) - np.asarray(clean).astype(int)
        assert np.abs(levels).max() == row.linf <= PARAMS.eps
    assert frame["success"].mean() > 0.5
    assert (frame["cos_target"] > frame["cos_clean_target"]).all()


def test_metrics_summary_figure_and_mlflow_run(attacked: tuple[Path, dict]) -> None:
    root, result = attacked
    metrics, runs = result["metrics"], result["runs"]
    assert metrics["attacked"] == 12 and metrics["shards"] == 3 and metrics["shards_computed"] == 3
    assert metrics["linf_max"] <= PARAMS.eps and metrics["throughput_image_steps_per_s"] > 0
    assert all(isinstance(v, float) for v in metrics.values())
    summary = json.loads((root / layout.ATTACK_IMAGES / "attack.json").read_text())
    assert summary["params"] == PARAMS.model_dump(mode="json")
    assert summary["surrogate"]["path"] == "surrogate/attack"
    assert summary["counts"]["attacked"] == 12
    with Image.open(root / "examples.png") as figure:
        assert figure.format == "PNG"
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["tags.stage"] == "attack_images"
    assert run["params.eps"] == str(PARAMS.eps)
    assert run["metrics.success_rate"] == pytest.approx(metrics["success_rate"])
    assert run["tags.data_md5.prepared"] and run["tags.data_md5.surrogate"]
    assert {a.path for a in result["artifacts"][0]} >= {"attack.json", "examples.png"}


def test_killed_run_resumes_to_the_same_bytes(
    attacked: tuple[Path, dict],
    data_root: Path,
    tmp_path: Path,
    mlflow_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    root = fresh_root(data_root, tmp_path)
    finish, finished = ShardStore.finish, []

    def killed_after_first_shard(self: ShardStore, shard: int, rows: list) -> None:
        if finished:
            raise KeyboardInterrupt("killed")
        finish(self, shard, rows)
        finished.append(shard)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShardStore, "finish", killed_after_first_shard)
        with pytest.raises(KeyboardInterrupt):
            attack(root)
    out = root / layout.ATTACK_IMAGES
    assert len(list(out.glob("shards/*/*.parquet"))) == 1
    assert not (out / "manifest.parquet").exists()

    resumed = attack(root)
    assert (resumed["shards_reused"], resumed["shards_computed"]) == (1, 2)
    assert output_bytes(root) == output_bytes(attacked[0])

    # A lost shard record is recomputed; the others are kept.
    sorted(out.glob("shards/*/*.parquet"))[1].unlink()
    again = attack(root)
    assert (again["shards_reused"], again["shards_computed"]) == (2, 1)
    assert output_bytes(root) == output_bytes(attacked[0])

    # Other attack params: a new fingerprint, the old shards go.
    old = {p.name for p in (out / "shards").iterdir()}
    changed = attack(root, PARAMS.model_copy(update={"steps": 2}))
    assert changed["shards_computed"] == 3
    assert {p.name for p in (out / "shards").iterdir()}.isdisjoint(old)
    assert set(pd.read_parquet(out / "manifest.parquet")["steps"]) == {2}


def params_with(**attack_images: object) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["attack_images"] = {**raw["attack_images"], **attack_images}
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eps": 0}, r"attack_images\.eps = 0"),
        ({"eps": 256}, r"attack_images\.eps = 256"),
        ({"steps": 0}, r"attack_images\.steps = 0"),
        ({"pairing": "nearest"}, r"attack_images\.pairing = 'nearest'.*different_body_part"),
    ],
)
def test_bad_params_fail_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_params(params_with(**change))


def test_unknown_pairing_rule_lists_the_rules(data_root: Path, tmp_path: Path) -> None:
    unchecked = PARAMS.model_copy(update={"pairing": "nearest"})  # bypasses params validation
    with pytest.raises(
        InputError, match=r"'nearest'; allowed: \['different_body_part', 'random'\]"
    ):
        attack(fresh_root(data_root, tmp_path), unchecked)


def test_unreadable_target_image_fails_before_any_attack_work(
    data_root: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    root = fresh_root(data_root, tmp_path)
    items, _ = attack_images.plan(PARAMS, root)
    victim = root / items[-1].target_path
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(DataError, match=rf"image {victim} cannot be read"):
        attack(root)
    assert not (root / layout.ATTACK_IMAGES).exists()
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run was started


def test_out_dir_outside_the_data_root_is_refused(data_root: Path, tmp_path: Path) -> None:
    root = fresh_root(data_root, tmp_path / "root")
    with pytest.raises(InputError, match="must be inside the data root"):
        attack_images.run(ALL, paths=stage_paths(root, tmp_path / "elsewhere"))
