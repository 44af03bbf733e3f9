"""``reports/summary.md``: the report's sections in reading order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medran.params import ReportParams
from medran.reporting import robust_tables, tables
from medran.reporting.inputs import Expected, Inputs, Problem
from medran.reporting.results import Downstream, Stat, best_methods, upstream


@dataclass(frozen=True)
class Summary:
    expected: Expected
    inputs: Inputs
    rows: list[Downstream]  # every model, with intervals
    baselines: dict[str, Stat]  # per task: the trivial baseline
    claims: dict[str, dict[str, Any]]  # claims.json
    problems: list[Problem]
    benchmarks: dict[str, Any] | None
    benchmark_note: str  # shown instead of the run budget when there is none
    lock_md5: str
    git_commit: str
    figures: list[Path]  # PNGs written, linked from the summary


def render(summary: Summary, params: ReportParams, where: Path) -> str:
    """The markdown document; figure links are relative to ``where`` (its folder)."""
    expected, inputs, decimals = summary.expected, summary.inputs, params.decimals
    rows = summary.rows
    best = best_methods(rows, expected.largest_eps)
    levels = ", ".join(expected.level_names)
    parts = [
        "# medran report",
        f"Pipeline state: `dvc.lock` md5 `{summary.lock_md5}`, git commit "
        f"`{summary.git_commit}`. Noise levels {levels}; tasks {', '.join(expected.tasks)}; "
        f"methods {', '.join(expected.methods)}; seeds "
        f"{', '.join(str(s) for s in expected.seeds)}; attack eps "
        f"{', '.join(tables.eps_label(e) for e in expected.eps)}.",
        "## Missing or failed runs",
        tables.problems_list(summary.problems),
    ]
    protocol = f"Robust protocol: {expected.protocol}."
    warning = robust_tables.calibration_warning(inputs.calibration, expected.max_gap)
    for task in expected.tasks:
        parts += [
            f"## Downstream: {task}",
            " ".join(filter(None, (protocol, warning))),
            tables.downstream_table(
                task, rows, expected, best, summary.baselines.get(task), decimals
            ),
        ]
    parts += [
        "## Robust protocol calibration",
        robust_tables.calibration_table(
            inputs.calibration, expected, expected.calibration_examples, decimals
        ),
        "## Cost of each method",
        robust_tables.cost_table(inputs, expected, decimals),
        "## Claims",
        tables.claims_section(summary.claims, decimals),
        "## Gradient-masking checks (eval_robust)",
        tables.masking_summary(rows),
        "## Upstream: pre-training and retrieval",
        tables.upstream_table(upstream(inputs, expected), expected, decimals),
        "## Image attack (attack_images)",
        tables.attack_table(inputs.attack, decimals),
        "## Data-quality gates (validate_data)",
        tables.gates_table(inputs.gates, expected),
        "## Run budget",
        tables.budget_table(summary.benchmarks, params.budget_stages)
        if summary.benchmarks is not None
        else summary.benchmark_note,
        "## Figures",
        "\n\n".join(
            f"![{png.stem}]({Path(os.path.relpath(png, where)).as_posix()})"
            for png in summary.figures
        ),
    ]
    return "\n\n".join(parts) + "\n"
