"""The one adapter to Great Expectations (GX Core 1.x); no other module imports it.

Suites are plain :class:`Expect` specs over pandas frames (:class:`TableCheck`). This module
turns them into GX expectation suites, validates each frame with ``result_format=COMPLETE`` and
the row id as ``unexpected_index_column_names`` (so a failure names the offending rows), returns
plain-python outcomes and renders GX Data Docs HTML. A throw-away file-backed GX context lives
in a temporary folder; only the rendered site is copied out, so the output folder holds no GX
project state.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from medran.errors import InputError

log = logging.getLogger(__name__)
# GX logs every store write and metric at INFO; the stage's own log should stay readable.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

_SITE = Path("uncommitted") / "data_docs" / "local_site"


class QualityGateError(InputError):
    """A data-quality gate failed; the message lists every failed expectation and ``metrics``
    holds the gate's report, which the runner writes before the stage fails."""

    def __init__(self, message: str, metrics: dict[str, Any] | None = None):
        super().__init__(message)
        self.metrics = metrics


@dataclass(frozen=True)
class Expect:
    """One GX expectation: its snake_case type (as in GX results), kwargs and why it exists."""

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    notes: str | None = None


@dataclass(frozen=True)
class TableCheck:
    """A frame and the expectations it must meet; ``name`` becomes the GX suite name."""

    name: str
    frame: pd.DataFrame
    expectations: Sequence[Expect]
    id_column: str = "id"


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation, as plain python (JSON-ready)."""

    type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    unexpected_count: int | None
    example_ids: list[Any]
    example_values: list[Any]
    observed_value: Any = None
    details: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class SuiteOutcome:
    name: str
    success: bool
    n_rows: int
    outcomes: list[Outcome]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success]


def expectation(spec: Expect) -> gxe.Expectation:
    """Build the GX expectation object for a spec; an unknown type fails naming it."""
    class_name = "".join(part.capitalize() for part in spec.type.split("_"))
    cls = getattr(gxe, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, gxe.Expectation)):
        raise ValueError(f"{spec.type!r} is not a GX Core expectation (no gxe.{class_name})")
    return cls(**spec.kwargs, notes=spec.notes)


def plain(value: Any) -> Any:
    """Numpy scalars/arrays and NaN to JSON-ready python (NaN/NA becomes None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _distinct(values: Sequence[Any], limit: int) -> list[Any]:
    """The first ``limit`` distinct values, in order (a duplicated id is listed once)."""
    seen: list[Any] = []
    for value in map(plain, values):
        if value not in seen:
            seen.append(value)
            if len(seen) == limit:
                break
    return seen


def _outcome(result: Any, id_column: str, max_examples: int) -> Outcome:
    config = result.expectation_config
    kwargs = {k: plain(v) for k, v in config.kwargs.items() if k != "batch_id"}
    details = result.result or {}
    exception = result.exception_info or {}
    # A metric failure (e.g. a missing column) is reported per metric id, one level down.
    messages = [exception.get("exception_message")] + [
        v.get("exception_message") for v in exception.values() if isinstance(v, dict)
    ]
    error = next((m for m in messages if m), None)
    index_list = details.get("unexpected_index_list") or []
    return Outcome(
        type=config.type,
        column=kwargs.get("column"),
        kwargs=kwargs,
        success=bool(result.success),
        unexpected_count=plain(details.get("unexpected_count")),
        example_ids=_distinct([row.get(id_column) for row in index_list], max_examples),
        example_values=_distinct(details.get("unexpected_list") or [], max_examples),
        observed_value=plain(details.get("observed_value")),
        details=plain(details["details"]) if "details" in details else None,
        error=error,
    )


def _context(root: Path) -> Any:
    context = gx.get_context(mode="file", project_root_dir=root)
    # tqdm bars on stderr for every suite are noise in a pipeline log.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_tables(
    checks: Sequence[TableCheck], docs_dir: Path | None = None, max_examples: int = 10
) -> list[SuiteOutcome]:
    """Validate each frame against its expectations; optionally render Data Docs to ``docs_dir``.

    Outcomes come back in the order of ``checks`` and, within a suite, of its expectations.
    ``docs_dir`` is replaced by the GX site (``docs_dir/index.html``) for these validations.
    """
    names = [check.name for check in checks]
    if len(set(names)) != len(names):
        raise ValueError(f"suite names must be unique, got {names}")
    with tempfile.TemporaryDirectory(prefix="medran-gx-") as tmp:
        context = _context(Path(tmp))
        source = context.data_sources.add_pandas("frames")
        outcomes = []
        for check in checks:
            asset = source.add_dataframe_asset(check.name)
            batch = asset.add_batch_definition_whole_dataframe("whole")
            # One store write for the whole suite; add_expectation would write once per call.
            specs = [expectation(spec) for spec in check.expectations]
            suite = context.suites.add(gx.ExpectationSuite(name=check.name, expectations=specs))
            ids = [e.id for e in suite.expectations]
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=check.name, data=batch, suite=suite)
            )
            # Storing the result (done by run) is what lets build_data_docs render it.
            result = definition.run(
                batch_parameters={"dataframe": check.frame},
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [check.id_column],
                },
                run_id=RunIdentifier(run_name=check.name),
            )
            by_id = {r.expectation_config.id: r for r in result.results}
            items = [_outcome(by_id[i], check.id_column, max_examples) for i in ids]
            outcomes.append(SuiteOutcome(check.name, bool(result.success), len(check.frame), items))
            log.info("suite %s: %s", check.name, "passed" if result.success else "FAILED")
        if docs_dir is not None:
            context.build_data_docs()
            docs_dir = Path(docs_dir)
            if docs_dir.exists():  # stale pages from an earlier run must not linger
                shutil.rmtree(docs_dir)
            shutil.copytree(Path(context.root_directory) / _SITE, docs_dir)
    return outcomes


def failure_line(label: str, outcome: Outcome) -> str:
    """One line per failed expectation: ``label: type(column): N unexpected, e.g. [ids]``."""
    where = f"({outcome.column})" if outcome.column else ""
    if outcome.error:
        detail = f"error: {outcome.error}"
    elif outcome.unexpected_count is None:
        # Table-level expectations have no rows to name; GX's "details" say what differs.
        detail = f"observed {outcome.details or outcome.observed_value!r}"
    else:
        detail = f"{outcome.unexpected_count} unexpected, e.g. {outcome.example_ids}"
    return f"{label}: {outcome.type}{where}: {detail}"
