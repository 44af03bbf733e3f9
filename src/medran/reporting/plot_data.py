"""Plot data for ``dvc plots``: tidy JSON records, one file per figure.

Every record names its ``panel`` (a facet, placed by ``order``) and ``series`` (a line),
which the Vega-Lite template ``.dvc/plots/panels.json`` draws as small multiples with a line
per series, so the files need no per-method columns and ``dvc.yaml`` no method list. Missing
values are null, which Vega-Lite leaves out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medran.contracts import ZERO_SHOT_ACCURACY, recall_key
from medran.reporting.inputs import Expected
from medran.reporting.results import Downstream

ACCURACY_VS_NOISE = "accuracy_vs_noise.json"
ROBUST_VS_EPS = "robust_vs_eps.json"
RETRIEVAL_VS_NOISE = "retrieval_vs_noise.json"


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def accuracy_vs_noise(rows: Sequence[Downstream], expected: Expected) -> list[dict[str, Any]]:
    records = []
    for row in rows:
        points = [("clean", row.clean.mean)]
        points += [(f"robust, eps {e:g}/255", row.robust[e].mean) for e in expected.eps]
        for metric, value in points:
            records.append({
                "panel": f"{row.task}: {metric}",
                "series": row.method,
                "task": row.task,
                "method": row.method,
                "metric": metric,
                "noise_level": float(row.level),
                "accuracy": _plain(value),
            })  # fmt: skip
    return records


def robust_vs_eps(rows: Sequence[Downstream], expected: Expected) -> list[dict[str, Any]]:
    records = []
    by_task = sorted(rows, key=lambda r: expected.tasks.index(r.task))  # a task's levels together
    for row in by_task:
        points = [(0.0, row.attacked_clean.mean)] + [(e, row.robust[e].mean) for e in expected.eps]
        for eps, value in points:
            records.append({
                "panel": f"{row.task}, noise level {row.level}",
                "series": row.method,
                "task": row.task,
                "method": row.method,
                "noise_level": float(row.level),
                "eps": eps,
                "accuracy": _plain(value),
            })  # fmt: skip
    return records


def retrieval_vs_noise(
    table: dict[str, dict[str, float]], expected: Expected
) -> list[dict[str, Any]]:
    records = []
    for level, row in table.items():
        metrics = [
            (f"{d} R@{k}", row[recall_key(d, k)])
            for d in ("i2t", "t2i")
            for k in expected.recall_at
        ]
        metrics.append(("zero-shot accuracy", row[ZERO_SHOT_ACCURACY]))
        for metric, value in metrics:
            records.append({
                "panel": "zero-shot" if metric.startswith("zero") else "retrieval",
                "series": metric,
                "metric": metric,
                "noise_level": float(level),
                "value": _plain(value),
            })  # fmt: skip
    return records


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    """A JSON list of records (sorted keys: reruns on the same numbers give the same bytes).
    Panels are ordered as they first appear (clean before eps 2 before eps 16), not by name."""
    order: dict[str, int] = {}
    records = [r | {"order": order.setdefault(r["panel"], len(order))} for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    return path
