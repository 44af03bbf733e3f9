"""Sweeps are ``dvc exp run -S``: the RAN ablation reruns only what it touches, lands in
``dvc exp show`` / ``dvc metrics diff``, and with its adversarial terms off equals nmtune."""

from __future__ import annotations

import json
import re

import pytest

from tests.pipeline.conftest import Repo

pytestmark = pytest.mark.slow


def test_ran_ablation_sweep_reruns_ran_only_and_matches_nmtune(repo_copy: Repo) -> None:
    repo_copy.run("git", "add", "-A")
    repo_copy.run("git", "commit", "-q", "-m", "baseline results")
    params = repo_copy.params()
    levels = [repr(float(level)) for level in params["noise_levels"]]
    tasks = params["finetune"]["tasks"]

    result = repo_copy.run(
        "dvc",
        "exp",
        "run",
        "-n",
        "no-adv",
        "-S",
        "finetune.ran.w_adv=0",
        "-S",
        "finetune.ran.w_rect=0",
    )
    finetunes = {
        s for s in re.findall(r"Running stage '([^']+)'", result.stdout) if "finetune" in s
    }
    assert finetunes == {f"finetune@{p}-{t}-ran" for p in levels for t in tasks}

    for level in levels:
        for task in tasks:
            folder = repo_copy.path / "reports" / "finetune" / level
            ran = json.loads((folder / f"{task}-ran" / "metrics.json").read_text())
            nmtune = json.loads((folder / f"{task}-nmtune" / "metrics.json").read_text())
            scores = [k for k in nmtune if k.startswith(("test.", "val.")) and "wall" not in k]
            assert {k: ran[k] for k in scores} == {k: nmtune[k] for k in scores}, (level, task)

    shown = json.loads(repo_copy.run("dvc", "exp", "show", "--json").stdout)
    names = {
        exp.get("name")
        for rev in shown
        for exp in rev.get("experiments") or []
        for exp in exp["revs"]
    }
    assert "no-adv" in names
    diff = json.loads(repo_copy.run("dvc", "metrics", "diff", "--json").stdout)
    changed = diff.get("diff", diff)
    assert any(f"{tasks[0]}-ran" in path for path in changed)


def test_the_full_robust_preset_runs_as_an_experiment(repo_copy: Repo) -> None:
    """``-S eval_robust.preset=full``: every model under APGD-CE, APGD-T and PGD on the whole
    test split; only the robust stages rerun, and the report names the preset."""
    repo_copy.run("git", "add", "-A")
    repo_copy.run("git", "commit", "-q", "-m", "baseline results")
    result = repo_copy.run("dvc", "exp", "run", "-n", "full", "-S", "eval_robust.preset=full")
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    levels = [repr(float(level)) for level in repo_copy.params()["noise_levels"]]
    assert ran == {f"eval_robust@{p}" for p in levels} | {"calibrate_robust", "report"}
    calibration = json.loads((repo_copy.path / "reports/calibrate_robust/metrics.json").read_text())
    assert calibration == {"n_models": 0.0}  # nothing to calibrate against itself
    summary = (repo_copy.path / "reports" / "summary.md").read_text()
    # configs/ci.yaml keeps the full preset's attacks and test split, at 10 steps and 3 targets.
    assert "preset `full`" in summary and "APGD-T (10 steps, 3 target classes" in summary
    for level in levels:
        metrics = json.loads(
            (repo_copy.path / f"reports/eval_robust/{level}/metrics.json").read_text()
        )
        tests = {k: v for k, v in metrics.items() if k.endswith(".n")}
        assert tests and all(v >= 1 for v in tests.values())


def test_queued_experiments_log_to_the_projects_store(repo_copy: Repo) -> None:
    """``--queue`` runs each experiment in a copy under .dvc/tmp/exps; its MLflow runs must
    still land in the project's own store, tagged with the experiment's name."""
    import mlflow

    repo_copy.run("git", "add", "-A")
    repo_copy.run("git", "commit", "-q", "-m", "baseline results")
    names = {"calibrate-4": 4, "calibrate-6": 6}
    for name, examples in names.items():
        setting = f"calibrate_robust.examples={examples}"
        repo_copy.run("dvc", "exp", "run", "--queue", "-n", name, "-S", setting)
    repo_copy.run("dvc", "exp", "run", "--run-all")

    mlflow.set_tracking_uri(f"sqlite:///{repo_copy.path / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["medran"], filter_string="tags.stage = 'calibrate_robust'"
    )
    tagged = runs[runs["tags.dvc_exp_name"].isin(list(names))]
    assert set(tagged["tags.dvc_exp_name"]) == set(names)
    assert set(tagged["status"]) == {"FINISHED"}
    baseline = repo_copy.run("git", "rev-parse", "HEAD").stdout.strip()
    assert set(tagged["tags.dvc_exp_baseline_rev"]) == {baseline}
    assert not list((repo_copy.path / ".dvc" / "tmp").rglob("mlflow.db"))
