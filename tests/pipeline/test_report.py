"""The ``report`` stage of the CI-scale pipeline: its summary, figures, MLflow run, its
params touching nothing else, and its DVC plots rendering offline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from tests.pipeline.conftest import ROOT, Repo, ci_params

pytestmark = pytest.mark.slow

PARAMS = ci_params()
LEVELS = [repr(float(level)) for level in PARAMS["noise_levels"]]
TASKS, METHODS = PARAMS["finetune"]["tasks"], PARAMS["finetune"]["methods"]
CHROMIUM = Path("/usr/bin/chromium")


INTERVAL = r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]"
VERDICTS = ("supported", "contradicted", "inconclusive", "not testable")


def test_summary_has_a_row_per_level_and_method_and_valid_figures(built_repo: Repo) -> None:
    summary = (built_repo.path / "reports" / "summary.md").read_text()
    assert "None: every expected stage has its metrics and no run failed." in summary
    for task in TASKS:
        section = summary.split(f"## Downstream: {task}\n\n")[1].split("\n\n")[
            1
        ]  # after the protocol
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()]
        baseline, models = rows[2], rows[3:]  # the trivial baseline first
        assert baseline[0] == "all" and re.fullmatch(INTERVAL, baseline[2])
        assert [(r[0], r[1].strip("*")) for r in models] == [
            (level, method) for level in LEVELS for method in METHODS
        ]
        # Every number with its 95% interval: clean, blind, image gain, robust at each eps.
        numbers = [cell for r in models for cell in r[2:-2] if cell != "—"]
        assert len(numbers) >= len(models) * 5
        assert all(re.fullmatch(rf"\**{INTERVAL}\**", cell) for cell in numbers), numbers
    metrics = json.loads((built_repo.path / "reports" / "report" / "metrics.json").read_text())
    assert metrics["complete"] == 1.0
    claims = json.loads((built_repo.path / "reports" / "report" / "claims.json").read_text())
    assert sorted(claims) == ["a", "b", "c", "d"]
    assert set(claims["d"]["costs"]) == {"ran", "fare", "tecoa"}  # beside the verdict
    assert claims["a"]["verdict"] == "not testable"  # no level between the two of CI scale
    assert all(c["verdict"] in VERDICTS for c in claims.values())
    assert "## Claims" in summary
    # The full preset ran on the calibration sample of every level-0 model.
    calibration = json.loads(
        (built_repo.path / "reports/calibrate_robust/metrics.json").read_text()
    )
    assert calibration["n_models"] == len(TASKS) * len(METHODS)
    assert all(f"{t}.{m}.gap.robust_accuracy_eps8" in calibration for t in TASKS for m in METHODS)
    assert "## Robust protocol calibration" in summary
    figures = sorted((built_repo.path / "reports" / "figures").glob("*.png"))
    names = {p.name for p in figures}
    assert {f"accuracy_vs_noise_{t}.png" for t in TASKS} | {"attack_examples.png"} <= names
    for png in figures:
        with Image.open(png) as image:
            assert image.format == "PNG"
            image.verify()
        assert f"(figures/{png.name})" in summary


def test_summary_run_is_logged_with_artifacts_and_lineage_tags(built_repo: Repo) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{built_repo.path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["medran"], filter_string="tags.stage = 'report'")
    assert len(runs) == 1 and runs["status"].tolist() == ["FINISHED"]
    run = runs.iloc[0]
    head = built_repo.run("git", "rev-parse", "HEAD").stdout.strip()
    assert run["tags.git_commit"] == head
    # The md5 of dvc.lock as the report saw it (before its own entry was written).
    digest = run["tags.dvc_lock_md5"]
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert f"`dvc.lock` md5 `{digest}`" in (built_repo.path / "reports" / "summary.md").read_text()
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(run["run_id"])} >= {"summary.md", "figures"}
    logged = {Path(a.path).name for a in client.list_artifacts(run["run_id"], "figures")}
    assert logged == {p.name for p in (built_repo.path / "reports" / "figures").glob("*.png")}


def test_report_params_rerun_only_the_report(repo_copy: Repo) -> None:
    params = repo_copy.params()
    params["report"] = {**params["report"], "dpi": 120, "strict": True}
    repo_copy.set_params(params)
    assert set(json.loads(repo_copy.run("dvc", "status", "--json").stdout)) == {"report"}


def test_dvc_plots_render_offline(repo_copy: Repo, tmp_path: Path) -> None:
    """The report's plot data through the project's template, in the offline page; drawn by
    a headless Chromium with every network request refused."""
    shown = json.loads(repo_copy.run("dvc", "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown["errors"]
    ours = {k: v for k, v in shown["data"].items() if k.startswith("reports/report/")}
    assert len(ours) == 3 and all(spec[0]["type"] == "vega" for spec in ours.values())
    images = [k for k, v in shown["data"].items() if v[0]["type"] == "image"]
    assert "reports/figures/attack_examples.png" in images

    missing = [
        name
        for name in ("vega", "vega-lite", "vega-embed")
        if not (ROOT / "node_modules" / name).is_dir()
    ]
    if missing:
        pytest.skip(
            f"the offline page needs node_modules/{missing} (`npm ci`, as `make plots` runs)"
        )
    template = tmp_path / "template.html"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "plots_template.py"), "--out", str(template)],
        check=True,
    )
    out = tmp_path / "plots"
    repo_copy.run("dvc", "plots", "show", "--html-template", str(template), "--out", str(out))
    page = (out / "index.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=", page)  # everything inline
    n_vega = page.count("vegaEmbed(")
    assert n_vega == 3 + len(LEVELS)  # ours and each level's pretrain loss curve
    if not CHROMIUM.is_file():
        pytest.skip("drawing the page needs Chromium (`make browser` installs it)")
    dom = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--proxy-server=127.0.0.1:9",  # nothing listens: any network request fails
            "--virtual-time-budget=10000",
            "--dump-dom",
            (out / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<canvas") == n_vega  # vega-embed drew every plot
