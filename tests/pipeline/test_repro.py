"""The CI-scale pipeline under real ``dvc repro`` in a temporary git + DVC repo."""

from __future__ import annotations

import json
import re
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medran.contracts import gate_id, gate_result_path, gates
from tests.pipeline.conftest import Repo, ci_params

pytestmark = pytest.mark.slow


LEVELS = tuple(repr(float(level)) for level in ci_params()["noise_levels"])
HIGHEST = LEVELS[-1]


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


def test_pipeline_output_passes_every_data_gate(built_repo: Repo) -> None:
    prepared = built_repo.path / "data" / "prepared"
    for role in ("upstream", "targets", "cls", "vqa"):
        frame = pd.read_parquet(prepared / f"{role}.parquet")
        assert len(frame) >= 5
        assert (prepared / frame["image_path"].iloc[0]).is_file()
    for gate, level in gates(ci_params()["noise_levels"]):
        result = built_repo.path / gate_result_path(gate, level)
        assert json.loads(result.read_text())["success"] is True, gate_id(gate, level)
        assert (result.parent / "docs" / "index.html").is_file()


def test_second_repro_is_up_to_date_and_fast(built_repo: Repo) -> None:
    start = time.perf_counter()
    result = built_repo.repro()
    elapsed = time.perf_counter() - start
    assert ran(result.stdout) == set()
    assert "up to date" in result.stdout
    assert elapsed < 10, f"no-op dvc repro took {elapsed:.1f}s"


def directly_changed(repo: Repo, params: dict) -> set[str]:
    """Stages whose own deps a params change touches (``dvc status``; nothing runs).

    Their downstream stages rerun only if their outputs change, which DVC decides then."""
    original = repo.params()
    repo.set_params(params)
    try:
        return set(json.loads(repo.run("dvc", "status", "--json").stdout))
    finally:
        repo.set_params(original)


def changed(repo: Repo, section: str, key: str, value: object) -> dict:
    params = repo.params()
    params[section] = {**params[section], key: value}
    return params


def test_param_changes_touch_only_their_own_stages(repo_copy: Repo) -> None:
    noisy_gates = {f"validate_noisy@{p}" for p in LEVELS}
    gates = {"validate_data@clean", "validate_data@adversarial", "validate_data@nesting"}
    gates |= noisy_gates
    calibrate = {"calibrate_robust"}
    cases = [
        ("validate_data", "min_rows", 6, gates),
        ("attack_captions", "seed", 1, {"attack_captions"}),
        ("attack_images", "steps", 7, {"attack_images", "validate_data@adversarial"}),
        (
            "build_noisy",
            "caption",
            "target",
            {f"build_noisy@{p}" for p in LEVELS} | noisy_gates,
        ),
        ("train_surrogate", "epochs", 1, {"train_surrogate"}),
        ("pretrain", "lr", 0.001, {f"pretrain@{p}" for p in LEVELS}),
        ("eval_upstream", "batch_size", 64, {f"eval_upstream@{p}" for p in LEVELS}),
        ("synthesize", "pixel_noise", 0.07, {"synthesize"}),
        ("eval_robust", "tolerance", 0.04, {f"eval_robust@{p}" for p in LEVELS} | calibrate),
        ("calibrate_robust", "examples", 4, {"calibrate_robust"}),
    ]
    for section, key, value, expected in cases:
        assert directly_changed(repo_copy, changed(repo_copy, section, key, value)) == expected, key
    # The full preset is the calibration's reference: the evaluation of every model keeps.
    params = repo_copy.params()
    params["eval_robust"]["presets"]["full"]["apgd"]["steps"] += 1
    assert directly_changed(repo_copy, params) == calibrate
    fractions = repo_copy.params()["prepare_data"]["split_fractions"]
    fractions["vqa"] = {"train": 0.7, "val": 0.15, "test": 0.15}
    split_change = changed(repo_copy, "prepare_data", "split_fractions", fractions)
    assert directly_changed(repo_copy, split_change) == {"prepare_data"}
    # A method's weight reruns that method's stages only, at every level and task.
    params = repo_copy.params()
    params["finetune"]["ran"]["w_adv"] += 0.5  # any change of the default
    ran_stages = {f"finetune@{p}-{t}-ran" for p in LEVELS for t in params["finetune"]["tasks"]}
    assert directly_changed(repo_copy, params) == ran_stages


def test_new_noise_level_adds_only_its_own_branch(repo_copy: Repo) -> None:
    params = repo_copy.params()
    params["noise_levels"].append(0.4)
    new_branch = {
        f"{stage}@0.4" for stage in ("build_noisy", "validate_noisy", "pretrain", "eval_upstream")
    }
    finetune = params["finetune"]
    new_branch |= {f"finetune@0.4-{t}-{m}" for t in finetune["tasks"] for m in finetune["methods"]}
    new_branch |= {"eval_robust@0.4"}
    # The nesting gate reruns too: it checks nesting across all levels, and so does the
    # report, which lists every level. (That a new branch runs is what building the pipeline
    # shows; here nothing runs.)
    expected = new_branch | {"validate_data@nesting", "report"}
    assert directly_changed(repo_copy, params) == expected


def test_same_seed_gives_byte_identical_datasets(repo_copy: Repo) -> None:
    before = data_md5s(repo_copy)
    assert {"data/raw/synthetic", "data/prepared", "data/attacks/images"} <= set(before)
    # Rerun the data-making stages from scratch (the attack's own resume-vs-fresh identity is
    # tested in tests/integration/test_attack_images.py); every md5 must come back the same.
    for stage in ("synthesize", "prepare_data", "train_surrogate", "attack_captions"):
        repo_copy.repro("--force", "--single-item", stage)
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


def commit_and_pretrain(repo: Repo, producer: str) -> subprocess.CompletedProcess[str]:
    """Record the changed data as ``producer``'s output (as a faulty stage would have written
    it), then ask for the highest level's pre-training, which must stop at the data's gate."""
    repo.run("dvc", "commit", "--force", producer)
    before = repo.lock()["stages"][f"pretrain@{HIGHEST}"]
    result = repo.repro(f"pretrain@{HIGHEST}", check=False)
    assert result.returncode != 0
    assert f"Running stage 'pretrain@{HIGHEST}'" not in result.stdout
    assert repo.lock()["stages"][f"pretrain@{HIGHEST}"] == before
    return result


def test_amplified_adversarial_image_stops_pretraining_at_its_gate(repo_copy: Repo) -> None:
    data = repo_copy.path / "data"
    row = pd.read_parquet(data / "attacks/images/manifest.parquet").iloc[2]
    clean = np.asarray(Image.open(data / row["clean_image_path"]), dtype=np.int16)
    adv = np.asarray(Image.open(data / row["adv_image_path"]), dtype=np.int16)
    amplified = np.clip(clean + 3 * (adv - clean) + 1, 0, 255).astype(np.uint8)
    Image.fromarray(amplified).save(data / row["adv_image_path"])
    result = commit_and_pretrain(repo_copy, "attack_images")
    output = result.stderr + result.stdout
    assert "data-quality gate validate_data@adversarial failed" in output
    assert row["id"] in output


def test_flipped_adversarial_flag_stops_pretraining_at_its_gate(repo_copy: Repo) -> None:
    path = repo_copy.path / "data" / "noisy" / HIGHEST / "manifest.parquet"
    frame = pd.read_parquet(path)
    victim = frame.index[(frame["split"] == "train") & ~frame["is_adversarial"]][0]
    frame.loc[victim, "is_adversarial"] = True
    frame.to_parquet(path, index=False)
    result = commit_and_pretrain(repo_copy, f"build_noisy@{HIGHEST}")
    output = result.stderr + result.stdout
    assert f"data-quality gate validate_noisy@{HIGHEST} failed" in output
    assert frame.loc[victim, "id"] in output


def test_an_absolute_manifest_path_stops_the_consumer_itself(repo_copy: Repo) -> None:
    """Past its gate too (``--single-item``), a stage refuses a path that leaves the data root."""
    path = repo_copy.path / "data" / "noisy" / HIGHEST / "manifest.parquet"
    frame = pd.read_parquet(path)
    row = frame.index[frame["split"] == "train"][0]  # a row pre-training reads
    frame.loc[row, "image_path"] = str(repo_copy.path / "data" / frame.loc[row, "image_path"])
    frame.to_parquet(path, index=False)
    result = repo_copy.repro("--single-item", f"pretrain@{HIGHEST}", check=False)
    assert result.returncode != 0
    assert f"image path '{frame.loc[row, 'image_path']}' escapes" in result.stderr + result.stdout


def test_a_symlink_cache_checkout_runs_the_stages_that_read_images(repo_copy: Repo) -> None:
    repo_copy.run("dvc", "config", "cache.type", "symlink")
    repo_copy.run("dvc", "checkout", "--relink")
    image = next((repo_copy.path / "data" / "prepared" / "images").rglob("*.png"))
    assert image.is_symlink() and ".dvc/cache" in str(image.readlink())
    for stage in ("validate_data@clean", f"eval_upstream@{HIGHEST}", f"finetune@{HIGHEST}-cls-lp"):
        repo_copy.repro("--force", "--single-item", stage)


def search(repo: Repo, filter_string: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo.path / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["medran"], filter_string=filter_string)


def test_one_pretrain_run_per_level_linked_to_its_data_version(built_repo: Repo) -> None:
    runs = search(built_repo, "tags.stage LIKE 'pretrain@%'")
    assert sorted(runs["tags.noise_level"]) == sorted(LEVELS)
    assert set(runs["status"]) == {"FINISHED"}
    lock = built_repo.lock()["stages"]
    for _, run in runs.iterrows():
        level = run["tags.noise_level"]
        noisy_md5 = next(o["md5"] for o in lock[f"build_noisy@{level}"]["outs"])
        assert run["tags.data_md5.noisy"] == noisy_md5, level
    evals = search(built_repo, f"tags.stage = 'eval_upstream@{HIGHEST}'").iloc[0]
    pretrain_run = runs[runs["tags.noise_level"] == HIGHEST].iloc[0]
    assert evals["tags.upstream_run_id"] == pretrain_run["run_id"]


def test_downstream_runs_link_to_the_run_they_build_on(built_repo: Repo) -> None:
    params = ci_params()["finetune"]
    models = {
        (t, m, str(s)) for t in params["tasks"] for m in params["methods"] for s in params["seeds"]
    }
    lock = built_repo.lock()["stages"]
    pretrains = search(built_repo, "tags.stage LIKE 'pretrain@%'")
    for level in LEVELS:
        pretrain_run = pretrains[pretrains["tags.noise_level"] == level].iloc[0]["run_id"]
        finetunes = search(
            built_repo, f"tags.stage LIKE 'finetune@%' and tags.noise_level = '{level}'"
        )
        tags = finetunes[["tags.task", "tags.method", "tags.seed"]]
        assert set(tags.itertuples(index=False, name=None)) == models
        assert set(finetunes["status"]) == {"FINISHED"}
        assert set(finetunes["tags.upstream_run_id"]) == {pretrain_run}
        pretrain_md5 = next(
            o["md5"] for o in lock[f"pretrain@{level}"]["outs"] if "models" in o["path"]
        )
        assert set(finetunes["tags.data_md5.pretrain"]) == {pretrain_md5}
        robust = search(built_repo, f"tags.stage = 'eval_robust@{level}'")
        assert len(robust) == len(models)
        assert set(robust["tags.upstream_run_id"]) == set(finetunes["run_id"])
        metrics = json.loads(
            (built_repo.path / f"reports/eval_robust/{level}/metrics.json").read_text()
        )
        assert metrics["n_models"] == len(models)
