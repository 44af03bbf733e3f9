"""The report's account of the robust protocol: what was run, how far the embedded preset is
from the field's standard (``calibrate_robust``), and what each method costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medran.contracts import model_key, robust_accuracy_key
from medran.names import FULL_PRESET
from medran.reporting.tables import eps_label, markdown_table, number

if TYPE_CHECKING:
    from medran.reporting.inputs import Expected, Inputs


def calibration_warning(metrics: dict[str, Any] | None, max_gap: float) -> str:
    """A sentence for beside the robust tables when the preset overestimates; else ''."""
    if not metrics or not metrics.get("overestimates"):
        return ""
    return (
        f"**Caution:** on the calibration sample this preset overestimates robust accuracy by "
        f"up to {metrics['max_gap']:.3f} (more than {max_gap:g}) against the `{FULL_PRESET}` "
        'preset: see "Robust protocol calibration".'
    )


def calibration_table(
    metrics: dict[str, Any] | None, expected: Expected, examples: int, decimals: int
) -> str:
    """Task x method: robust accuracy under the preset and the full one, and the gap."""
    if metrics is None:
        return "Not available: no `calibrate_robust` metrics."
    if not metrics.get("n_models"):
        return f"Nothing to calibrate: the evaluation already uses the `{FULL_PRESET}` preset."
    header = ["task", "method", *(f"{eps_label(e)}: preset / full / gap" for e in expected.eps)]
    body = []
    for task in expected.tasks:
        for method in expected.methods:
            cells = [task, method]
            for e in expected.eps:
                key = robust_accuracy_key(e)
                values = [metrics.get(model_key(task, method, f"{p}.{key}")) for p in PARTS]
                cells.append(" / ".join(number(v, decimals) for v in values))
            body.append(cells)
    return markdown_table(header, body) + (
        f"\n\nThe first seed of every model at level {expected.calibration_level:g}, on the "
        f"first {examples} of the examples the evaluation attacks. Gap: the preset's robust "
        "accuracy minus the full preset's; positive where the cheaper protocol overestimates."
    )


PARTS = ("preset", FULL_PRESET, "gap")


COSTS = ("trainable_fraction", "wall_time_s")


def method_costs(inputs: Inputs, methods: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per method: the trainable fraction of the model (encoder included) and the wall time
    of one finetune stage (every seed), each the mean over levels and tasks."""
    out = {}
    for method in methods:
        runs = [m for (_, _, name), m in inputs.finetune.items() if name == method]
        values = {key: [float(r[key]) for r in runs if key in r] for key in COSTS}
        out[method] = {k: sum(v) / len(v) if v else None for k, v in values.items()}
    return out


def cost_table(inputs: Inputs, expected: Expected, decimals: int) -> str:
    """Per method: :func:`method_costs`."""
    costs = method_costs(inputs, expected.methods)
    body = [[m, *(number(c[k], decimals) for k in COSTS)] for m, c in costs.items()]
    text = markdown_table(["method", "trainable fraction", "finetune wall time (s)"], body)
    return text + (
        "\n\nTrainable fraction: trained parameters over all of the model's, encoder included. "
        "Wall time: one finetune stage (every seed), mean over levels and tasks."
    )
