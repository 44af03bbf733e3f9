"""The report's pure parts: params, seed statistics, the best method, problem listing, and
the plot data against its Vega-Lite template."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medran.params import BootstrapParams, ParamsError, parse_params
from medran.reporting import plot_data, tables
from medran.reporting.inputs import Expected, Problem, read_metrics
from medran.reporting.intervals import Intervals, ignores_image
from medran.reporting.outcomes import ModelOutcomes
from medran.reporting.results import MISSING, Downstream, Stat, best_methods, stat
from tests.unit.test_params import with_change

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Expected(
    (0.0, 0.5),
    ("cls",),
    ("lp", "ran", "advft"),
    (0, 1),
    (2.0, 8.0),
    (1,),
    (),
    "preset `t`",
    0.0,
    8,
    0.02,
)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("report.decimals", 9, r"report\.decimals = 9: .*less than or equal to 6"),
        ("report.strict", "maybe", r"report\.strict = 'maybe'"),
        ("report.example_rows", 0, r"report\.example_rows = 0: .*greater than or equal to 1"),
        ("report.colour", "red", r"report\.colour: unknown key"),
    ],
)
def test_bad_report_params_are_named(path: str, value: object, expected: str) -> None:
    with pytest.raises(ParamsError, match=expected):
        parse_params(with_change(path, value))


def test_stat_spreads_over_seeds_and_skips_missing_values() -> None:
    metrics = {"cls.lp.acc": 0.5, "cls.lp.seed-0.acc": 0.4, "cls.lp.seed-1.acc": 0.6}
    assert stat(metrics, "acc", (0, 1), "cls.lp.") == Stat(0.5, pytest.approx(0.1), 2)
    # A seed without a value (NaN in the JSON, or absent) does not count.
    assert stat(metrics | {"cls.lp.seed-1.acc": math.nan}, "acc", (0, 1), "cls.lp.").n == 1
    assert stat(metrics, "acc", (0, 1, 2), "cls.lp.").n == 2
    # No aggregate: the mean of the seeds; nothing at all, or a non-number: missing.
    assert stat({"seed-0.acc": 0.2, "seed-1.acc": 0.4}, "acc", (0, 1)).mean == pytest.approx(0.3)
    assert stat({"acc": "high"}, "acc", (0,)).missing
    assert stat(None, "acc", (0,)) is MISSING


def row(level: str, method: str, robust_top: float) -> Downstream:
    value = Stat(robust_top, 0.0, 1)
    return Downstream(level, "cls", method, value, value, {2.0: value, 8.0: value}, 16.0, ())


def test_best_method_is_per_level_counts_ties_and_ignores_missing() -> None:
    """At 0.3 every method ties (all attacked to zero): none is the best."""
    rows = [
        row("0.0", "lp", 0.2),
        row("0.0", "ran", 0.6),
        row("0.0", "advft", 0.6),
        row("0.5", "lp", math.nan),
        row("0.5", "ran", 0.1),
        row("0.5", "advft", 0.05),
        row("0.3", "lp", 0.0),
        row("0.3", "ran", 0.0),
    ]
    assert best_methods(rows, 8.0) == {
        ("0.0", "cls", "ran"),
        ("0.0", "cls", "advft"),
        ("0.5", "cls", "ran"),
    }
    table = tables.downstream_table("cls", rows, EXPECTED, best_methods(rows, 8.0), None, 2)
    assert "| 0.5 | lp | — | — | — | — | — | — | — | — | ok | — |" in table
    assert "| 0.0 | **advft** | 0.60 | — | — | — | — | 0.60 | 0.60 | **0.60** | ok | — |" in table
    assert "| 0.3 | ran | 0.00 | — | — | — | — | 0.00 | 0.00 | 0.00 | ok | — |" in table


def vqa_outcomes(robust: float, blind: float, clean: float = 0.7) -> ModelOutcomes:
    """3 seeds, 400 examples: the first ``robust`` share of them right under attack, the first
    ``blind`` share right with another example's image, the first ``clean`` share right."""

    def first(share: float) -> np.ndarray:
        return np.tile(np.arange(400) < round(share * 400), (3, 1)).astype(np.uint8)

    return ModelOutcomes(
        task="vqa",
        clean=first(clean),
        attacked_clean=first(clean),
        robust={8.0: first(robust)},
        blind=first(blind),
        test_blind=first(blind),
    )


def test_a_model_robust_by_ignoring_the_image_is_flagged_and_never_best() -> None:
    intervals = Intervals(BootstrapParams(samples=300, seed=0))
    # Robust accuracy what the question alone answers: flagged.
    assert ignores_image(intervals, vqa_outcomes(robust=0.31, blind=0.31), 8.0)
    # Clearly above it (0.1 on 400 examples is many intervals wide): not flagged.
    assert not ignores_image(intervals, vqa_outcomes(robust=0.45, blind=0.35), 8.0)
    # Pushed well below it: the attack misleads a model that reads the image.
    assert not ignores_image(intervals, vqa_outcomes(robust=0.2, blind=0.5), 8.0)
    # ... unless the image adds nothing on the clean test split either.
    assert ignores_image(intervals, vqa_outcomes(robust=0.2, blind=0.5, clean=0.5), 8.0)
    # Not robust at all: nothing to explain.
    assert not ignores_image(intervals, vqa_outcomes(robust=0.0, blind=0.3), 8.0)
    # No blind measurement (classification): unknown.
    no_blind = replace(vqa_outcomes(0.4, 0.3), blind=None)
    assert ignores_image(intervals, no_blind, 8.0) is None
    # The flagged model has the highest robust accuracy, yet the one that uses the image wins.
    blind_ran = replace(row("0.0", "ran", 0.31), task="vqa", ignores_image=True)
    seeing_lp = replace(row("0.0", "lp", 0.2), task="vqa", ignores_image=False)
    assert best_methods([blind_ran, seeing_lp], 8.0) == {("0.0", "vqa", "lp")}
    table = tables.downstream_table("vqa", [blind_ran, seeing_lp], EXPECTED, set(), None, 2)
    assert "| 0.0 | ran | 0.31 | — | — | 0.31 | 0.31 | 0.31 | ok | **ignores the image** |" in table


def test_problems_are_grouped_by_stage_without_repeats() -> None:
    problems = [
        Problem("finetune@0.5-vqa-ran", "no metrics file a.json"),
        Problem("eval_robust@0.5", "no clean_accuracy for vqa-ran"),
        Problem("finetune@0.5-vqa-ran", "MLflow run 1 FAILED (vqa-ran, seed 0)"),
        Problem("finetune@0.5-vqa-ran", "no metrics file a.json"),
    ]
    assert tables.problems_list(problems).splitlines() == [
        "- `eval_robust@0.5`: no clean_accuracy for vqa-ran",
        "- `finetune@0.5-vqa-ran`: MLflow run 1 FAILED (vqa-ran, seed 0); no metrics file a.json",
    ]


def test_metrics_file_faults_are_described(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    assert read_metrics(path, []) == (None, f"no metrics file {path}")
    path.write_text("[1, 2]")
    assert read_metrics(path, [])[1] == f"{path} holds a list, not a mapping of metrics"
    path.write_text('{"test.accuracy": NaN}')
    metrics, problem = read_metrics(path, ["test.accuracy", "test.macro_f1"])
    assert math.isnan(metrics["test.accuracy"]) and problem == f"{path} lacks ['test.macro_f1']"


def test_plot_data_fills_the_panels_template(tmp_path: Path) -> None:
    """What dvc plots show does with dvc.yaml's plot definitions, on the project's template."""
    from dvc_render import VegaRenderer

    rows = [row("0.0", "lp", 0.5), row("0.5", "lp", math.nan)]
    path = plot_data.write(tmp_path / "a.json", plot_data.accuracy_vs_noise(rows, EXPECTED))
    records = json.loads(path.read_text())
    assert {r["accuracy"] for r in records} == {0.5, None}
    # Panels keep the report's order (clean first), not the alphabet's ("PGD" < "clean").
    order = {r["panel"]: r["order"] for r in records}
    assert order == {"cls: clean": 0, "cls: robust, eps 2/255": 1, "cls: robust, eps 8/255": 2}
    template = str(ROOT / ".dvc" / "plots" / "panels.json")
    renderer = VegaRenderer(records, "accuracy", template=template, x="noise_level", y="accuracy")
    spec = renderer.get_filled_template()
    assert spec["facet"]["field"] == "panel" and spec["facet"]["sort"]["field"] == "order"
    assert spec["spec"]["encoding"]["color"]["field"] == "series"
    assert spec["spec"]["encoding"]["x"]["field"] == "noise_level"
    assert "<DVC_METRIC" not in json.dumps(spec)
    assert len(spec["data"]["values"]) == len(records)
