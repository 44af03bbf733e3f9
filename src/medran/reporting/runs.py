"""Which expected stages' latest MLflow runs did not finish.

A stage can have several runs (one per seed, or per evaluated model for ``eval_robust``) and
a history of reruns: an interrupted run is FAILED or KILLED, and the rerun that resumed it
FINISHED. Only the newest run of each (stage, task, method, seed) counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from medran.reporting.inputs import Problem

KEY_TAGS = ("task", "method", "seed")


def unfinished_runs(own_run_id: str, stages: Iterable[str]) -> list[Problem]:
    """Problems for the newest runs of ``stages`` that are not FINISHED, in the experiment of
    the active run ``own_run_id`` (the report's, which is left out)."""
    import mlflow

    experiment = mlflow.get_run(own_run_id).info.experiment_id
    expected = set(stages)
    candidates = mlflow.search_runs(
        [experiment], filter_string="attributes.status != 'FINISHED'", output_format="list"
    )
    suspects = {r.data.tags.get("stage") for r in candidates if r.info.run_id != own_run_id}
    problems = []
    for stage in sorted(suspects & expected):
        runs = mlflow.search_runs(
            [experiment],
            filter_string=f"tags.stage = '{stage}'",
            order_by=["attributes.start_time DESC"],
            output_format="list",
        )
        newest = {}
        for run in runs:  # newest first
            newest.setdefault(tuple(run.data.tags.get(t) for t in KEY_TAGS), run)
        for key, run in newest.items():
            if run.info.status != "FINISHED":
                problems.append(Problem(stage, _describe(run.info.run_id, run.info.status, key)))
    return problems


def _describe(run_id: str, status: str, key: tuple[str | None, ...]) -> str:
    task, method, seed = key
    model = "-".join(v for v in (task, method) if v)
    where = ", ".join(v for v in (model, f"seed {seed}" if seed is not None else "") if v)
    return f"MLflow run {run_id} {status}" + (f" ({where})" if where else "")
