"""The report stage on small hand-made metrics trees: real files, real matplotlib, a real
SQLite MLflow store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medran.contracts import ReportPaths, gate_id, gate_result_path
from medran.params import Params
from medran.pipeline import report
from medran.reporting.inputs import Expected
from medran.tracking import stage_run
from tests.helpers import project_params

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "medran-test"


def params(**report_changes: object) -> Params:
    """A small pipeline's params; the report expects what they configure (every gate)."""
    return project_params(
        experiment=EXPERIMENT,
        noise_levels=[0.0, 0.5],
        finetune={"tasks": ["cls", "vqa"], "methods": ["lp", "ran"], "seeds": [0, 1]},
        eval_robust={"eps": [2.0, 8.0]},
        eval_upstream={"recall_at": [1, 5]},
        report=report_changes,
    )


EXPECTED = Expected.from_params(params())


def accuracy(level: float, method: str, seed: int, eps: float = 0.0) -> float:
    """Clean accuracy falls with noise; ran resists the attack; seeds differ by 0.02."""
    clean = 0.9 - 0.2 * level - 0.02 * seed
    resist = 0.9 if method == "ran" else 0.5
    return clean * (1 - eps / 16 * (1 - resist)) if eps else clean


def write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


N = 100  # test examples, all of them attacked


def right(value: float) -> np.ndarray:
    """Per example of ``N``: the first ``round(value * N)`` right (0/1)."""
    return (np.arange(N) < round(value * N)).astype(np.uint8)


def write_outcomes(reports: Path, level: str) -> None:
    """The per-example outcomes behind the metrics of every model of ``level``: the test
    split (finetune) and the attacked examples (eval_robust), the same N examples."""
    rng = np.random.default_rng(0)
    robust: dict[str, np.ndarray] = {}
    for task in EXPECTED.tasks:
        robust[f"{task}.rows"] = np.array([f"{task}{i}" for i in range(N)])
        for method in EXPECTED.methods:
            clean = np.stack([right(accuracy(float(level), method, s)) for s in EXPECTED.seeds])
            arrays = {"correct": clean, "prior": right(0.3), "rows": robust[f"{task}.rows"]}
            arrays["blind"] = np.stack([right(0.3)] * 2)
            if task == "cls":
                truth = rng.integers(0, 2, size=(N, 3)).astype(np.uint8)
                arrays |= {"truth": truth, "scores": np.stack([truth * 0.6 + 0.2] * 2)}
            path = reports / "finetune" / level / f"{task}-{method}" / "outcomes.npz"
            np.savez(path, **arrays)
            model = {"clean_accuracy": clean, "blind_accuracy": np.stack([right(0.3)] * 2)}
            for e in EXPECTED.eps:
                model[f"robust_accuracy_eps{e:g}"] = np.stack(
                    [right(accuracy(float(level), method, s, e)) for s in EXPECTED.seeds]
                )
            robust |= {f"{task}.{method}.{k}": v for k, v in model.items()}
    np.savez(reports / "eval_robust" / level / "outcomes.npz", **robust)


def robust_metrics(level: float, task: str, method: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for seed in EXPECTED.seeds:
        values = {"n": float(N), "clean_accuracy": accuracy(level, method, seed)}
        values |= {
            f"robust_accuracy_eps{e:g}": accuracy(level, method, seed, e) for e in EXPECTED.eps
        }
        values |= {"check_near_zero_at_large_eps": float(method != "lp")}
        values["gradient_masking_suspected"] = float(method == "lp")
        out |= {f"{task}.{method}.seed-{seed}.{k}": v for k, v in values.items()}
    for key in values:
        seeds = [out[f"{task}.{method}.seed-{s}.{key}"] for s in EXPECTED.seeds]
        out[f"{task}.{method}.{key}"] = sum(seeds) / len(seeds)
    return out


def calibration(gap: float = 0.05) -> dict[str, float]:
    """calibrate_robust's metrics: the preset overestimates every model by ``gap``."""
    out = {"n_models": float(len(EXPECTED.tasks) * len(EXPECTED.methods)), "examples": 8.0}
    for task in EXPECTED.tasks:
        for method in EXPECTED.methods:
            for eps in EXPECTED.eps:
                key = f"{task}.{method}.{{}}.robust_accuracy_eps{eps:g}"
                out |= {key.format("preset"): 0.3, key.format("full"): 0.3 - gap}
                out[key.format("gap")] = gap
    return out | {"max_gap": gap, "overestimates": float(gap > 0.02)}


def make_tree(root: Path) -> tuple[Path, Path]:
    """A reports root and a data root as a CI-scale run leaves them."""
    reports, data = root / "reports", root / "data"
    for level in EXPECTED.level_names:
        write_json(
            reports / "pretrain" / level / "metrics.json",
            {"n_train": 96, "n_adversarial": int(96 * float(level)), "final_loss": 2.5},
        )
        upstream = {f"{d}_r{k}": 0.1 * k for d in ("i2t", "t2i") for k in EXPECTED.recall_at}
        write_json(
            reports / "eval_upstream" / level / "metrics.json",
            upstream | {"zero_shot_accuracy": 0.4},
        )
        robust: dict[str, float] = {}
        for task in EXPECTED.tasks:
            for method in EXPECTED.methods:
                seeds = {
                    f"seed-{s}.test.accuracy": accuracy(float(level), method, s)
                    for s in EXPECTED.seeds
                }
                finetune = {"test.accuracy": sum(seeds.values()) / len(seeds), **seeds}
                path = reports / "finetune" / level / f"{task}-{method}" / "metrics.json"
                write_json(path, finetune | {"test.accuracy_std": 0.01})
                robust |= robust_metrics(float(level), task, method)
        write_json(reports / "eval_robust" / level / "metrics.json", robust)
        write_outcomes(reports, level)
    write_json(reports / "calibrate_robust" / "metrics.json", calibration())
    attack = {"attacked": 48, "success_rate": 0.9, "cos_target_mean": 0.7, "linf_mean": 7.5}
    write_json(
        reports / "attack_images" / "metrics.json", attack | {"linf_max": 8, "psnr_mean": 38.0}
    )
    for gate, level in EXPECTED.gates:
        write_json(
            gate_result_path(gate, level, reports),
            {
                "suite": gate_id(gate, level),
                "success": gate == "clean",
                "n_expectations": 12,
                "n_failed": int(gate != "clean"),
            },
        )
    write_attacks(data, n=3)
    return reports, data


def write_attacks(data: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        clean = rng.integers(8, 248, size=(16, 16, 3), dtype=np.uint8)
        adv = (clean.astype(int) + rng.integers(-8, 9, size=clean.shape)).astype(np.uint8)
        paths = {
            "clean_image_path": f"prepared/images/upstream/u{i}.png",
            "adv_image_path": f"attacks/images/png/u{i}.png",
        }
        for key, pixels in (("clean_image_path", clean), ("adv_image_path", adv)):
            (data / paths[key]).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(data / paths[key])
        rows.append({
            "id": f"u{i}", "rank": n - i, **paths, "eps": 8, "linf": 8, "psnr": 38.0 + i,
            "cos_target": 0.7, "cos_clean": 0.5, "success": True,
        })  # fmt: skip
    pd.DataFrame(rows).to_parquet(data / "attacks" / "images" / "manifest.parquet")


def paths_for(root: Path, reports: Path, data: Path) -> ReportPaths:
    lock = root / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages: {}\n")
    return ReportPaths(
        reports=reports,
        data=data,
        lock=lock,
        benchmarks=reports / "benchmarks" / "pipeline.json",
        summary=reports / "summary.md",
        figures=reports / "figures",
        plots=reports / "report",
        metrics=reports / "report" / "metrics.json",
        claims=reports / "report" / "claims.json",
    )


def table(summary: str, task: str) -> list[dict[str, str]]:
    """The rows of the downstream table of ``task``, as column -> cell."""
    section = summary.split(f"## Downstream: {task}\n\n")[1].split("\n\n")[1]  # after the protocol
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()]
    return [dict(zip(lines[0], cells, strict=True)) for cells in lines[2:]]


def report_runs() -> pd.DataFrame:
    """The report runs in this test's store (an earlier test may have set another URI)."""
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.stage = 'report'")


def test_full_tree_gives_tables_figures_plot_data_and_a_tagged_run(
    tmp_path: Path, mlflow_uri: str
) -> None:
    reports, data = make_tree(tmp_path)
    paths = paths_for(tmp_path, reports, data)
    metrics = report.run(params(), paths=paths)
    assert metrics["complete"] == 1.0 and metrics["problems"] == 0.0

    summary = paths.summary.read_text()
    assert "None: every expected stage has its metrics" in summary
    for task in EXPECTED.tasks:
        baseline, *rows = table(summary, task)
        # The trivial baseline first: 30 of the 100 test examples, with its 95% interval.
        assert baseline["noise level"] == "all"
        assert baseline["clean accuracy"] == "0.300 [0.220, 0.390]"
        assert [(r["noise level"], r["method"].strip("*")) for r in rows] == [
            (level, method) for level in EXPECTED.level_names for method in EXPECTED.methods
        ]
        # ran resists the attack, so it is the bold one at every level; each number comes with
        # its bootstrap interval over the 100 examples and 2 seeds.
        lp_00, ran_00 = rows[:2]
        assert ran_00["method"] == "**ran**" and ran_00["robust @ 8/255"].startswith("**")
        assert ran_00["clean accuracy"] == "0.890 [0.820, 0.950]"
        assert lp_00["gradient masking"] == "suspected (near_zero_at_large_eps)"
        assert ran_00["gradient masking"] == "ok"
        # Blind: 30 of 100 right with another image; image gain 0.89 - 0.30.
        assert lp_00["blind accuracy"] == "0.300 [0.210, 0.390]"
        assert lp_00["image gain"] == "0.590 [0.500, 0.690]"
        assert lp_00["image reliance"] == "uses the image"
    # Macro AUROC of scores that separate the labels.
    assert table(summary, "cls")[1]["macro AUROC"] == "1.000 [1.000, 1.000]"
    claims = json.loads(paths.claims.read_text())
    assert claims["a"]["verdict"] == "not testable"  # no level between 0 and 0.5
    assert claims["b"]["verdict"] == "supported"  # 0.89 -> 0.79 clean, on 100 examples
    assert "## Claims" in summary and "| (b) |" in summary
    assert "largest configured eps, 8/255" in summary
    assert "| 0.5 | 48 / 96 | 2.500 | 0.100 | 0.500 | 0.100 | 0.500 | 0.400 |" in summary
    assert "| validate_data@adversarial | **FAIL** | 12 | 1 |" in summary
    assert "| validate_noisy@0.5 | **FAIL** | 12 | 1 |" in summary
    assert "Not measured: no run-budget file" in summary

    pngs = sorted(p.name for p in paths.figures.glob("*.png"))
    assert pngs == sorted([
        "accuracy_vs_noise_cls.png", "accuracy_vs_noise_vqa.png", "robust_vs_eps_cls.png",
        "robust_vs_eps_vqa.png", "retrieval_vs_noise.png", "attack_examples.png",
        "attack_statistics.png",
    ])  # fmt: skip
    for png in paths.figures.glob("*.png"):
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100
            image.verify()
        assert f"(figures/{png.name})" in summary
    records = json.loads((paths.plots / "accuracy_vs_noise.json").read_text())
    assert len(records) == 2 * 2 * 2 * 3  # levels x tasks x methods x (clean + 2 eps)
    assert {r["panel"] for r in records} >= {"cls: clean", "vqa: robust, eps 8/255"}

    run = report_runs().iloc[0]
    assert run["status"] == "FINISHED"
    assert run["tags.dvc_lock_md5"] == hashlib.md5(paths.lock.read_bytes()).hexdigest()
    assert run["tags.git_commit"] and run["params.report.strict"] == "False"
    assert run["metrics.complete"] == 1.0
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run["run_id"])}
    assert {"summary.md", "claims.json", "figures", "plots"} <= artifacts
    assert run["metrics.claim_b.supported"] == 1.0
    figures = {a.path for a in client.list_artifacts(run["run_id"], "figures")}
    assert "figures/attack_examples.png" in figures and len(figures) == len(pngs)


def test_the_robust_protocol_its_calibration_and_the_costs_are_stated(
    tmp_path: Path, mlflow_uri: str
) -> None:
    reports, data = make_tree(tmp_path)
    paths = paths_for(tmp_path, reports, data)
    report.run(params(), paths=paths)
    summary = paths.summary.read_text()
    # The protocol above each robust table, and its calibration against the full preset.
    assert summary.count("Robust protocol: preset `default`, white-box L∞") == len(EXPECTED.tasks)
    assert "**Caution:** on the calibration sample this preset overestimates" in summary
    assert "| cls | lp | 0.300 / 0.250 / 0.050 | 0.300 / 0.250 / 0.050 |" in summary
    assert "## Cost of each method" in summary
    claims = json.loads(paths.claims.read_text())
    assert claims["d"]["verdict"] == "not testable"  # no fare or tecoa in this tree
    # Within the allowance, no caution.
    write_json(reports / "calibrate_robust" / "metrics.json", calibration(gap=0.01))
    report.run(params(), paths=paths)
    assert "**Caution:**" not in paths.summary.read_text()


def test_missing_metrics_and_failed_runs_are_named_and_shown_as_dashes(
    tmp_path: Path, mlflow_uri: str
) -> None:
    reports, data = make_tree(tmp_path)
    (reports / "finetune" / "0.5" / "vqa-ran" / "metrics.json").unlink()
    robust = reports / "eval_robust" / "0.5" / "metrics.json"
    metrics = json.loads(robust.read_text())
    write_json(
        robust, {k: v for k, v in metrics.items() if "eps8" not in k or not k.startswith("cls.lp.")}
    )
    (reports / "eval_upstream" / "0.0" / "metrics.json").write_text("{not json")
    (data / "attacks" / "images" / "manifest.parquet").unlink()
    # A failed seed that no rerun replaced, and an interrupted run that a rerun finished.
    with (
        pytest.raises(RuntimeError),
        stage_run("finetune@0.5-cls-lp", EXPERIMENT, {}, tags={"seed": 1}),
    ):
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), stage_run("pretrain@0.0", EXPERIMENT, {}, tags={"seed": 0}):
        raise RuntimeError("interrupted")
    with stage_run("pretrain@0.0", EXPERIMENT, {}, tags={"seed": 0}):
        pass

    paths = paths_for(tmp_path, reports, data)
    result = report.run(params(), paths=paths)
    assert result["complete"] == 0.0 and result["stages_with_problems"] == 5.0

    summary = paths.summary.read_text()
    problems = summary.split("## Missing or failed runs\n\n")[1].split("\n\n")[0]
    assert "`finetune@0.5-vqa-ran`: no metrics file" in problems
    assert "`finetune@0.5-cls-lp`: MLflow run" in problems and "FAILED (seed 1)" in problems
    assert "`eval_robust@0.5`: no robust_accuracy_eps8 for cls-lp" in problems
    assert "`eval_upstream@0.0`: unreadable metrics file" in problems
    assert "`attack_images`: no attack figures: " in problems and "manifest.parquet" in problems
    assert not (paths.figures / "attack_examples.png").exists()
    assert "pretrain@0.0" not in problems
    vqa_ran_05 = table(summary, "vqa")[4]
    assert (vqa_ran_05["noise level"], vqa_ran_05["method"]) == ("0.5", "**ran**")
    assert vqa_ran_05["clean accuracy"] == "—"  # robust accuracy is there, clean is not
    cls_lp_05 = table(summary, "cls")[3]
    assert cls_lp_05["robust @ 8/255"] == "—" and cls_lp_05["robust @ 2/255"] != "—"
    assert "| 0.0 | 0 / 96 | 2.500 | — | — | — | — | — |" in summary
    assert report_runs().iloc[0]["status"] == "FINISHED"  # not strict: the report succeeds


def stage_command(root: Path, params: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    command = [
        sys.executable,
        str(ROOT / "stages" / "report.py"),
        "--reports",
        "reports",
        "--data",
        "data",
    ]
    command += ["--summary", "reports/summary.md"]
    command += ["--figures", "reports/figures", "--plots", "reports/report"]
    command += ["--metrics", "reports/report/metrics.json"]
    command += ["--claims", "reports/report/claims.json", *extra]
    return subprocess.run(
        command, cwd=root, env=os.environ, capture_output=True, text=True, check=False
    )


def ci_scale_params(strict: bool) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["experiment"] = EXPERIMENT
    params["noise_levels"] = list(EXPECTED.levels)
    params["finetune"] |= {
        "tasks": list(EXPECTED.tasks),
        "methods": list(EXPECTED.methods),
        "seeds": list(EXPECTED.seeds),
    }
    params["eval_robust"]["eps"] = list(EXPECTED.eps)
    params["eval_upstream"]["recall_at"] = list(EXPECTED.recall_at)
    params["report"]["strict"] = strict
    return params


def test_strict_report_writes_what_it_can_then_exits_2_naming_the_stages(
    tmp_path: Path, mlflow_uri: str
) -> None:
    reports, _ = make_tree(tmp_path)
    (reports / "finetune" / "0.5" / "vqa-ran" / "metrics.json").unlink()
    (reports / "data_quality" / "adversarial" / "result.json").unlink()

    result = stage_command(tmp_path, ci_scale_params(strict=True))
    assert result.returncode == 2, result.stderr
    assert "report: error: 2 stage(s) have missing or failed results" in result.stderr
    assert "finetune@0.5-vqa-ran: no metrics file" in result.stderr
    assert "validate_data@adversarial: no metrics file" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "reports" / "summary.md").is_file()
    assert (tmp_path / "reports" / "figures" / "attack_examples.png").is_file()
    assert not (tmp_path / "reports" / "report" / "metrics.json").exists()
    assert report_runs().iloc[0]["status"] == "FAILED"

    relaxed = stage_command(tmp_path, ci_scale_params(strict=False), "--lock", "missing.lock")
    assert relaxed.returncode == 0, relaxed.stderr
    written = json.loads((tmp_path / "reports" / "report" / "metrics.json").read_text())
    assert written["complete"] == 0.0 and written["stages_with_problems"] == 2.0
    assert report_runs().iloc[0]["tags.dvc_lock_md5"] == "none"


def test_run_budget_is_read_tolerantly(tmp_path: Path, mlflow_uri: str) -> None:
    reports, data = make_tree(tmp_path)
    paths = paths_for(tmp_path, reports, data)
    budget = {
        "total_wall_s": 301.4,
        "peak_rss_mb": "lots",  # not a number: shown as a dash
        "stages": {
            "pretrain@0.0": {"wall_s": 120.0, "peak_rss_mb": 900.0},
            "odd": 3,
            "report": {"wall_s": 9.0},
        },
    }
    write_json(paths.benchmarks, budget)
    report.run(params(budget_stages=2), paths=paths)
    section = paths.summary.read_text().split("## Run budget\n\n")[1].split("\n\n## ")[0]
    assert section.startswith(
        "Whole pipeline: 301 s wall, peak memory — MB. The 2 slowest of 3 stages:"
    )
    assert "| `pretrain@0.0` | 120.0 | 900 |" in section and "| `report` | 9.0 | — |" in section
    assert "odd" not in section

    paths.benchmarks.write_text("{truncated")
    assert report.run(params(), paths=paths)["complete"] == 1.0
    assert "Left out: unreadable metrics file" in paths.summary.read_text()
