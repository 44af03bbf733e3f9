"""Markdown sections of ``reports/summary.md``: one function per table, a dash wherever a
value is missing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from medran.contracts import (
    FINAL_LOSS,
    PIXEL_PROBE_AUROC,
    PROBE_AUROC,
    ZERO_SHOT_ACCURACY,
    gate_id,
    recall_key,
    stage_id,
)
from medran.reporting.inputs import Expected, Problem
from medran.reporting.results import Downstream, Stat

DASH = "—"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: Any, decimals: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return DASH
    return f"{value:.{decimals}f}"


def with_spread(value: Stat, decimals: int) -> str:
    """``mean [low, high]`` (the 95% interval) when the outcomes gave one, else
    ``mean ± std`` over seeds; the mean alone when one seed made it."""
    if value.missing:
        return DASH
    if not math.isnan(value.low):
        return f"{value.mean:.{decimals}f} [{value.low:.{decimals}f}, {value.high:.{decimals}f}]"
    if value.n > 1:
        return f"{value.mean:.{decimals}f} ± {value.spread:.{decimals}f}"
    return f"{value.mean:.{decimals}f}"


def eps_label(eps: float) -> str:
    return f"{eps:g}/255"


# Per task: the columns after the clean accuracy (name, the row's statistic), and the
# trivial baseline's name.
TASK_COLUMNS = {
    "cls": (("macro AUROC", "auroc"), ("mean per-label accuracy", "label_accuracy")),
    "vqa": (),
}
BLIND_COLUMNS = (("blind accuracy", "blind"), ("image gain", "image_gain"))
BASELINE = {"cls": "majority label set", "vqa": "question only (per-question majority)"}


def downstream_table(
    task: str,
    rows: Sequence[Downstream],
    expected: Expected,
    best: set[tuple[str, str, str]],
    baseline: Stat | None,
    decimals: int,
) -> str:
    """Noise level x method for one task, the trivial baseline first, the best method per
    level in bold, and a note saying how the numbers were made."""
    top = expected.largest_eps
    extra = (*TASK_COLUMNS.get(task, ()), *BLIND_COLUMNS)
    header = ["noise level", "method", "clean accuracy", *(name for name, _ in extra)]
    header += ["clean, attacked subset", *(f"robust @ {eps_label(e)}" for e in expected.eps)]
    header += ["gradient masking", "image reliance"]
    body = []
    if baseline is not None:
        cells = ["all", f"*{BASELINE.get(task, 'trivial baseline')}*"]
        body.append([*cells, with_spread(baseline, decimals)] + [DASH] * (len(header) - 3))
    attacked = set()
    for row in (r for r in rows if r.task == task):
        bold = (row.level, row.task, row.method) in best
        cells = [row.level, _bold(row.method, bold), with_spread(row.clean, decimals)]
        cells += [with_spread(getattr(row, field), decimals) for _, field in extra]
        cells.append(with_spread(row.attacked_clean, decimals))
        for eps in expected.eps:
            cells.append(_bold(with_spread(row.robust[eps], decimals), bold and eps == top))
        cells += [_masking(row.failed_checks), _reliance(row.ignores_image)]
        body.append(cells)
        if not math.isnan(row.n_attacked):
            attacked.add(int(row.n_attacked))
    return f"{markdown_table(header, body)}\n\n{_downstream_note(task, expected, attacked)}"


def _downstream_note(task: str, expected: Expected, attacked: set[int]) -> str:
    top, seeds = expected.largest_eps, len(expected.seeds)
    subset = "/".join(str(n) for n in sorted(attacked)) or DASH
    note = (
        f"Clean accuracy: the whole test split (finetune), and the {subset} test examples "
        f"that eval_robust attacks. Robust accuracy: the protocol above on those; an example "
        f"counts when it is right clean and no attack broke it. Mean over {seeds} seed(s) and its "
        "95% interval [low, high], bootstrap over test examples and seeds (docs/study.md)."
        f" **Bold**: the best method at each noise level by robust accuracy at the largest "
        f"configured eps, {eps_label(top)} (none where every method ties)"
    )
    note += (
        ", never a model robust by ignoring the image. Blind accuracy: each example answered "
        "with another example's image; image gain: clean - blind. Image reliance: *ignores the "
        f"image* where robust accuracy at {eps_label(top)} is above zero and either within its "
        "interval of the blind accuracy on the same examples or the image gain's interval "
        "reaches 0."
    )
    return note + (" Accuracy is the exact match of the label set." if task == "cls" else "")


def _reliance(ignores: bool | None) -> str:
    if ignores is None:
        return DASH
    return "**ignores the image**" if ignores else "uses the image"


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold and text != DASH else text


def _masking(failed: tuple[str, ...] | None) -> str:
    if failed is None:
        return DASH
    return f"suspected ({', '.join(failed)})" if failed else "ok"


def masking_summary(rows: Sequence[Downstream]) -> str:
    """One line: which models' robust accuracy may be inflated by gradient masking."""
    suspected = [r for r in rows if r.failed_checks]
    unknown = [r for r in rows if r.failed_checks is None]
    if suspected:
        lines = [
            f"- `{stage_id('eval_robust', float(r.level))}` {r.task}-{r.method}: "
            f"failed {', '.join(r.failed_checks)}"
            for r in suspected
        ]
        text = "Gradient masking suspected; treat these robust accuracies with care:\n\n"
        text += "\n".join(lines)
    else:
        text = "Every evaluated model passed the gradient-masking checks"
        text += (
            " (at a large eps robust accuracy reaches near zero, or for VQA"
            " what the question alone gets right; the attacks at least as strong as FGSM; every"
            " attacked image moves the logits)."
        )
    if unknown:
        text += f"\n\nNot evaluated: {len(unknown)} model(s) (see missing runs)."
    return text


def upstream_table(table: dict[str, dict[str, float]], expected: Expected, decimals: int) -> str:
    header = ["noise level", "adversarial pairs", "final loss"]
    header += [f"{d} R@{k}" for d in ("i2t", "t2i") for k in expected.recall_at]
    header += ["zero-shot accuracy", "probe AUROC", "pixel-probe AUROC"]
    body = []
    for level, row in table.items():
        pairs = DASH
        if not math.isnan(row["n_adversarial"]) and not math.isnan(row["n_train"]):
            pairs = f"{row['n_adversarial']:.0f} / {row['n_train']:.0f}"
        cells = [level, pairs, number(row[FINAL_LOSS], decimals)]
        cells += [
            number(row[recall_key(d, k)], decimals)
            for d in ("i2t", "t2i")
            for k in expected.recall_at
        ]
        cells += [
            number(row[k], decimals) for k in (ZERO_SHOT_ACCURACY, PROBE_AUROC, PIXEL_PROBE_AUROC)
        ]
        body.append(cells)
    note = (
        "Retrieval on the clean upstream test split; zero-shot on the chest X-ray test split. "
        "Probe AUROC: logistic regression fitted on the chest X-ray train split, macro AUROC "
        "on its test split, from the frozen image features; the pixel probe, from raw pixels, "
        "is the bar pre-training must clear to carry the findings."
    )
    return f"{markdown_table(header, body)}\n\n{note}"


def claims_section(claims: dict[str, dict[str, Any]], decimals: int) -> str:
    """The paper's claims: verdict and why, then every effect measured with its interval."""
    verdicts = [
        [
            f"({key})",
            entry.get("claim", DASH),
            f"**{entry.get('verdict', DASH)}**",
            entry.get("reason", DASH),
        ]
        for key, entry in claims.items()
    ]
    effects = []
    for key, entry in claims.items():
        for effect in entry.get("effects", []):
            compared = "; ".join(
                f"{side} {number(value, decimals)}"
                for side, value in effect.get("compared", {}).items()
            )
            low, high = (number(effect.get(k), decimals) for k in ("ci_low", "ci_high"))
            interval = f"[{low}, {high}]"
            effects.append(
                [
                    f"({key})",
                    effect.get("name", DASH),
                    compared,
                    number(effect.get("effect"), decimals),
                    interval,
                ]
            )
    text = markdown_table(["claim", "statement", "verdict", "why"], verdicts)
    if effects:
        text += "\n\n" + markdown_table(
            ["claim", "effect", "compared", "difference", "95% interval"], effects
        )
    return text + (
        '\n\nVerdicts come from the data alone (docs/study.md, "Claims"): *supported* or '
        "*contradicted* when the decisive intervals exclude 0 (Bonferroni-adjusted where a claim "
        "holds if any of several comparisons does), *inconclusive* otherwise, *not testable* "
        "when the run lacks the inputs. Also in `reports/report/claims.json`."
    )


# attack_images metrics: (key, column, decimals or None for the report's own)
ATTACK_COLUMNS = (
    ("attacked", "attacked images", 0),
    ("success_rate", "success rate", None),
    ("cos_target_mean", "mean cos to target", None),
    ("cos_clean_mean", "mean cos to clean", None),
    ("linf_mean", "mean L∞ (/255)", 2),
    ("linf_max", "max L∞ (/255)", 0),
    ("psnr_mean", "mean PSNR (dB)", 1),
)


def attack_table(metrics: dict[str, Any] | None, decimals: int) -> str:
    metrics = metrics or {}
    header = [column for _, column, _ in ATTACK_COLUMNS]
    cells = [number(metrics.get(k), decimals if d is None else d) for k, _, d in ATTACK_COLUMNS]
    note = (
        "Measured on the saved PNGs under the attack's surrogate encoder; success: closer to "
        "the target than to the clean image."
    )
    return f"{markdown_table(header, [cells])}\n\n{note}"


def gates_table(gates: dict[str, dict[str, Any]], expected: Expected) -> str:
    body = []
    for gate in (gate_id(*pair) for pair in expected.gates):
        result = gates.get(gate)
        if result is None:
            body.append([gate, DASH, DASH, DASH])
            continue
        verdict = {True: "pass", False: "**FAIL**"}.get(result.get("success"), DASH)
        body.append(
            [
                gate,
                verdict,
                number(result.get("n_expectations"), 0),
                number(result.get("n_failed"), 0),
            ]
        )
    return markdown_table(["gate", "result", "expectations", "failed"], body)


def budget_table(benchmarks: dict[str, Any], top: int) -> str:
    """Whole-run wall time and peak memory, and the ``top`` slowest stages. The file comes
    from outside the pipeline, so any part of it may be absent or odd: shown as a dash."""
    total = number(benchmarks.get("total_wall_s"), 0)
    peak = number(benchmarks.get("peak_rss_mb"), 0)
    text = f"Whole pipeline: {total} s wall, peak memory {peak} MB."
    stages = benchmarks.get("stages")
    if not isinstance(stages, dict) or not stages:
        return text

    def wall(item: tuple[str, Any]) -> float:
        value = item[1].get("wall_s") if isinstance(item[1], dict) else None
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else -1.0
        )

    ranked = sorted(stages.items(), key=wall, reverse=True)
    body = []
    for name, spec in ranked[:top]:
        spec = spec if isinstance(spec, dict) else {}
        body.append(
            [f"`{name}`", number(spec.get("wall_s"), 1), number(spec.get("peak_rss_mb"), 0)]
        )
    shown = f"The {min(top, len(ranked))} slowest of {len(ranked)} stages:"
    return f"{text} {shown}\n\n{markdown_table(['stage', 'wall (s)', 'peak RSS (MB)'], body)}"


def problems_list(problems: Sequence[Problem]) -> str:
    """One bullet per stage with everything wrong with it."""
    if not problems:
        return "None: every expected stage has its metrics and no run failed."
    by_stage: dict[str, list[str]] = {}
    for problem in sorted(set(problems)):
        by_stage.setdefault(problem.stage, []).append(problem.detail)
    return "\n".join(f"- `{stage}`: {'; '.join(details)}" for stage, details in by_stage.items())
