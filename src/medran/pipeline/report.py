"""``report``: the summary of the whole pipeline (docs/architecture.md, "Report").

Reads every stage's metrics JSON (what params.yaml says should exist), the attack manifest
and, when present, the run-budget file, and writes ``summary.md`` (noise level x method
tables with the seed spread, upstream retrieval, attack statistics, data-quality gates,
gradient-masking flags, missing or failed runs), PNG figures, and plot data for
``dvc plots``. Everything is logged to one MLflow run ``report``, tagged with the md5 of the
``dvc.lock`` it summarises. Missing metrics and unfinished MLflow runs are listed by stage
name; with ``strict`` they then fail the stage, after everything is written.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from medran.contracts import ReportPaths
from medran.data.errors import DataError
from medran.errors import InputError
from medran.fsutil import write_json
from medran.lineage import computed_md5, git_commit
from medran.params import Params, ReportParams
from medran.reporting import attack_figures, figures, plot_data
from medran.reporting.claims import DEFENSES, RAN, ClaimSettings, check_claims
from medran.reporting.inputs import Expected, Inputs, Problem, read_benchmarks, read_inputs
from medran.reporting.intervals import Intervals
from medran.reporting.outcomes import read_outcomes
from medran.reporting.results import Downstream, baselines, downstream, upstream
from medran.reporting.robust_tables import method_costs
from medran.reporting.runs import unfinished_runs
from medran.reporting.summary import Summary, render
from medran.tracking import stage_run

log = logging.getLogger(__name__)


class ReportIncompleteError(InputError):
    """``report.strict`` is set and some expected results are missing or failed."""


def lock_md5(path: Path) -> str:
    """md5 of the bytes of ``dvc.lock``: which pipeline state the report summarises."""
    if not Path(path).is_file():
        log.warning("no %s: the report is not tied to a pipeline state", path)
        return "none"
    return computed_md5(Path(path))


def run_budget(path: Path | None) -> tuple[dict[str, Any] | None, str]:
    """The run-budget file and what to say when there is none. It is written outside the
    pipeline, so a fault in it is a warning, never a failed report."""
    benchmarks, error = read_benchmarks(path)
    if error:
        log.warning("run budget left out: %s", error)
        return None, f"Left out: {error}."
    return benchmarks, f"Not measured: no run-budget file `{path}`."


def run(params: Params, *, paths: ReportPaths) -> dict[str, float]:
    """Write the summary, figures and plot data; return completeness metrics."""
    p, expected = params.report, Expected.from_params(params)
    inputs = read_inputs(paths.reports, expected)
    inputs.outcomes, inputs.priors = read_outcomes(paths.reports, expected, inputs.problems)
    intervals = Intervals(p.bootstrap)
    rows = downstream(inputs, expected, intervals)
    claims = claims_of(p, expected, inputs)
    write_json(paths.claims, claims)
    benchmarks, benchmark_note = run_budget(paths.benchmarks)
    digest, commit = lock_md5(paths.lock), git_commit()
    sources = {
        name: paths.reports / name
        for name in ("pretrain", "eval_upstream", "finetune", "eval_robust")
        if (paths.reports / name).is_dir()
    }
    run_params = {"report": p, "expected": dataclasses.asdict(expected)}
    tags = {"dvc_lock_md5": digest}
    with stage_run("report", params.experiment, run_params, sources, tags) as tracker:
        problems = inputs.problems + unfinished_runs(tracker.run_id, expected.stages())
        drawn = draw(p, expected, inputs, rows, problems, paths)
        summary = Summary(
            expected,
            inputs,
            rows,
            baselines(inputs, intervals),
            claims,
            problems,
            benchmarks,
            benchmark_note,
            digest,
            commit,
            drawn,
        )
        paths.summary.parent.mkdir(parents=True, exist_ok=True)
        paths.summary.write_text(render(summary, p, paths.summary.parent))
        tracker.log_artifact(paths.summary)
        tracker.log_artifact(paths.claims)
        tracker.log_artifact(paths.figures, "figures")
        tracker.log_artifact(paths.plots, "plots")
        missing = {x.stage for x in problems}
        metrics = {
            "expected_stages": float(len(expected.stages())),
            "stages_with_problems": float(len(missing)),
            "problems": float(len(problems)),
            "complete": float(not problems),
        }
        metrics |= {f"claim_{k}.{v['verdict'].replace(' ', '_')}": 1.0 for k, v in claims.items()}
        tracker.log_metrics(metrics)
        if problems and p.strict:
            raise ReportIncompleteError(
                f"{len(missing)} stage(s) have missing or failed results (report.strict is "
                f"true; the report was written to {paths.summary}):\n{_listing(problems)}"
            )
        if problems:
            log.warning("report is incomplete:\n%s", _listing(problems))
    return metrics


def claims_of(params: ReportParams, expected: Expected, inputs: Inputs) -> dict[str, dict]:
    """The paper's claims checked on the outcomes read (``claims.json``)."""
    claims, bootstrap = params.claims, params.bootstrap
    settings = ClaimSettings(claims.eps, claims.max_clean_loss, bootstrap.samples, bootstrap.seed)
    result = check_claims(
        inputs.outcomes, expected.level_names, expected.tasks, expected.methods, settings
    )
    compared = [m for m in (RAN, *DEFENSES) if m in expected.methods]
    result["d"]["costs"] = method_costs(inputs, compared)  # beside the verdict, not in it
    return result


def draw(
    params: ReportParams,
    expected: Expected,
    inputs: Inputs,
    rows: list[Downstream],
    problems: list[Problem],
    paths: ReportPaths,
) -> list[Path]:
    """Every figure and plot data file; a figure whose inputs are missing adds a problem."""
    table = upstream(inputs, expected)
    out, dpi = paths.figures, params.dpi
    for stale in out.glob("*.png"):  # a figure of a task no longer configured
        stale.unlink()
    drawn = []
    for task in expected.tasks:
        drawn.append(
            figures.accuracy_vs_noise(
                rows, task, expected, out / f"accuracy_vs_noise_{task}.png", dpi
            )
        )
        drawn.append(
            figures.robust_vs_eps(rows, task, expected, out / f"robust_vs_eps_{task}.png", dpi)
        )
    drawn.append(figures.retrieval_vs_noise(table, expected, out / "retrieval_vs_noise.png", dpi))
    try:
        attacks = attack_figures.read_attacks(paths.data)
        drawn.append(
            attack_figures.example_grid(
                attacks, paths.data, params.example_rows, out / "attack_examples.png", dpi
            )
        )
        drawn.append(attack_figures.statistics_figure(attacks, out / "attack_statistics.png", dpi))
    except DataError as e:
        problems.append(Problem("attack_images", f"no attack figures: {e}"))
    plot_data.write(
        paths.plots / plot_data.ACCURACY_VS_NOISE, plot_data.accuracy_vs_noise(rows, expected)
    )
    plot_data.write(paths.plots / plot_data.ROBUST_VS_EPS, plot_data.robust_vs_eps(rows, expected))
    plot_data.write(
        paths.plots / plot_data.RETRIEVAL_VS_NOISE, plot_data.retrieval_vs_noise(table, expected)
    )
    return drawn


def _listing(problems: list[Problem]) -> str:
    return "\n".join(f"  {p.stage}: {p.detail}" for p in sorted(set(problems)))
