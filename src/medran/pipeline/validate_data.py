"""``validate_data@<gate>``: run a data-quality gate and fail the stage if any expectation fails.

A suite builder turns the data root (``data/``) and the params into one GX table check per
role; the GX adapter validates them and renders Data Docs. The report (``result.json``, a DVC
metric, written by the runner) and the Data Docs are written whether or not the gate passes,
so a failure can be inspected; the failure is raised as
:class:`~medran.quality.gx.QualityGateError` naming each failed expectation and example row
ids, with the report as its ``metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medran import layout
from medran.contracts import ValidateDataPaths, gate_id
from medran.errors import InputError
from medran.params import Params
from medran.quality.adversarial import adversarial_checks
from medran.quality.gx import (
    QualityGateError,
    SuiteOutcome,
    TableCheck,
    failure_line,
    validate_tables,
)
from medran.quality.noisy import nesting_checks
from medran.quality.suites import clean_checks

log = logging.getLogger(__name__)

# (data root, params) -> {role: check}
SuiteBuilder = Callable[[Path, Params], dict[str, TableCheck]]


def _clean(data_root: Path, params: Params) -> dict[str, TableCheck]:
    return clean_checks(
        data_root / layout.PREPARED, params.validate_data, params.prepare_data.image_size
    )


# Gate name -> builder: clean reads data/prepared; adversarial data/attacks (+ prepared);
# nesting the manifest of every params.noise_levels. Each level's own gate is validate_noisy.
SUITES: dict[str, SuiteBuilder] = {
    "clean": _clean,
    "adversarial": adversarial_checks,
    "nesting": nesting_checks,
}


def _observed(result: SuiteOutcome) -> dict[str, Any]:
    """Aggregates GX measured (row count, success rate, fallback count, fractions), by name."""
    observed = {}
    for o in result.outcomes:
        value = o.observed_value
        if o.unexpected_count is None and isinstance(value, int | float) and o.error is None:
            name = o.type.removeprefix("expect_").split("_to_")[0]
            observed[f"{name}({o.column})" if o.column else name] = value
    return observed


def build_report(suite: str, outcomes: dict[str, SuiteOutcome]) -> dict[str, Any]:
    """The ``result.json`` content: plain top-level numbers and every failure with examples."""
    roles = {
        role: {
            "success": result.success,
            "n_rows": result.n_rows,
            "n_expectations": len(result.outcomes),
            "n_failed": len(result.failed),
            "observed": _observed(result),
        }
        for role, result in outcomes.items()
    }
    failures = [
        {
            "role": role,
            "expectation_type": o.type,
            "column": o.column,
            "kwargs": o.kwargs,
            "unexpected_count": o.unexpected_count,
            "example_ids": o.example_ids,
            "example_values": o.example_values,
            "observed_value": o.observed_value,
            "details": o.details,
            "error": o.error,
        }
        for role, result in outcomes.items()
        for o in result.failed
    ]
    return {
        "suite": suite,
        "success": all(r["success"] for r in roles.values()),
        "n_expectations": sum(r["n_expectations"] for r in roles.values()),
        "n_failed": len(failures),
        "roles": roles,
        "failures": failures,
    }


def run(params: Params, *, paths: ValidateDataPaths, gate: str) -> dict[str, Any]:
    """Validate the data root (``data/``) with ``gate``; see :func:`validate`."""
    if gate not in SUITES:
        raise InputError(f"unknown data-quality suite {gate!r}; allowed: {sorted(SUITES)}")
    return validate(gate_id(gate), SUITES[gate](Path(paths.data), params), params, paths)


def validate(
    gate: str, checks: dict[str, TableCheck], params: Params, paths: ValidateDataPaths
) -> dict[str, Any]:
    """Run ``checks`` as the gate named ``gate`` (its DVC stage); Data Docs to ``paths.docs``.

    Returns the report (the runner writes it to ``paths.metrics``, ``result.json``); if any
    expectation fails, raises :class:`QualityGateError` carrying the report as ``.metrics``,
    so the runner writes it before the stage fails.
    """
    results = validate_tables(
        list(checks.values()),
        docs_dir=paths.docs,
        max_examples=params.validate_data.max_examples,
    )
    outcomes = dict(zip(checks, results, strict=True))
    report = build_report(gate, outcomes)
    log.info(
        "%s: %d expectations, %d failed; report %s",
        gate,
        report["n_expectations"],
        report["n_failed"],
        paths.metrics,
    )
    if not report["success"]:
        lines = [failure_line(role, o) for role, r in outcomes.items() for o in r.failed]
        raise QualityGateError(
            f"data-quality gate {gate} failed {report['n_failed']} of "
            f"{report['n_expectations']} expectations (details in {paths.metrics}, "
            f"{paths.docs / 'index.html'}):\n  " + "\n  ".join(lines),
            metrics=report,
        )
    return report
