"""The numbers the report shows, one record per noise level x task x method (and per level
upstream), pulled out of the stages' metrics mappings with their spread over seeds.

A value that is not there is NaN, which tables print as a dash and figures leave out.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

from medran.contracts import (
    CLEAN_ACCURACY,
    FINAL_LOSS,
    PIXEL_PROBE_AUROC,
    PROBE_AUROC,
    TEST_ACCURACY,
    ZERO_SHOT_ACCURACY,
    model_key,
    recall_key,
    robust_accuracy_key,
    seed_key,
)
from medran.reporting.inputs import Expected, Inputs
from medran.reporting.intervals import Interval, Intervals, ignores_image, image_gain
from medran.reporting.outcomes import ModelOutcomes, attacked_set, test_set

NAN = float("nan")


@dataclass(frozen=True)
class Stat:
    """A metric over seeds: the stage's mean, the population std of the seeds' values and,
    from the per-example outcomes, the 95% bootstrap interval over examples and seeds."""

    mean: float
    spread: float
    n: int  # seeds with a value
    low: float = NAN
    high: float = NAN

    @property
    def missing(self) -> bool:
        return math.isnan(self.mean)

    def within(self, interval: Interval) -> Stat:
        """This statistic with ``interval``'s bounds."""
        return replace(self, low=interval.low, high=interval.high)

    @classmethod
    def of(cls, interval: Interval, n: int) -> Stat:
        """A statistic known only from the outcomes."""
        return cls(
            interval.value,
            NAN,
            n if not math.isnan(interval.value) else 0,
            interval.low,
            interval.high,
        )


MISSING = Stat(NAN, NAN, 0)


@dataclass(frozen=True)
class Downstream:
    """One fine-tuned model (all its seeds): clean test accuracy from ``finetune``, accuracy
    under the robust protocol per eps from ``eval_robust`` with the clean accuracy of the
    attacked subset."""

    level: str
    task: str
    method: str
    clean: Stat  # the full test split
    attacked_clean: Stat  # the eval_robust subset, the eps = 0 point of robust curves
    robust: dict[float, Stat]
    n_attacked: float  # test rows attacked per seed (NaN when not evaluated)
    failed_checks: tuple[str, ...] | None  # gradient-masking checks failed; None: unknown
    auroc: Stat = MISSING  # cls: macro one-vs-rest AUROC
    label_accuracy: Stat = MISSING  # multi-label cls: mean per-label accuracy
    blind: Stat = MISSING  # accuracy with another example's image (VQA: the question alone)
    image_gain: Stat = MISSING  # clean - blind
    ignores_image: bool | None = None  # robust only as far as blind (intervals.ignores_image)


def stat(
    metrics: dict[str, Any] | None, key: str, seeds: tuple[int, ...], prefix: str = ""
) -> Stat:
    """``<prefix><key>`` as the stage averaged it, spread from ``<prefix>seed-<s>.<key>``
    (``prefix`` names a model in a metrics file of several: :func:`model_prefix`)."""
    if not metrics:
        return MISSING
    values = [_number(metrics.get(prefix + seed_key(s, key))) for s in seeds]
    values = [v for v in values if not math.isnan(v)]
    mean = _number(metrics.get(f"{prefix}{key}"))
    if math.isnan(mean) and values:
        mean = statistics.fmean(values)
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return Stat(mean, spread if not math.isnan(mean) else NAN, len(values))


def model_prefix(task: str, method: str) -> str:
    """What a model's keys start with in a metrics file of several (``eval_robust``)."""
    return model_key(task, method, "")


def downstream(
    inputs: Inputs, expected: Expected, intervals: Intervals | None = None
) -> list[Downstream]:
    """Every expected model, ordered by level, task, method; with ``intervals``, each
    number with its 95% interval from the model's outcomes (where there are any)."""
    rows = []
    for level in expected.level_names:
        robust = inputs.robust.get(level)
        for task in expected.tasks:
            for method in expected.methods:
                finetune = inputs.finetune.get((level, task, method))
                prefix = model_prefix(task, method)
                rows.append(
                    Downstream(
                        level=level,
                        task=task,
                        method=method,
                        clean=stat(finetune, TEST_ACCURACY, expected.seeds),
                        attacked_clean=stat(robust, CLEAN_ACCURACY, expected.seeds, prefix),
                        robust={
                            e: stat(robust, robust_accuracy_key(e), expected.seeds, prefix)
                            for e in expected.eps
                        },
                        n_attacked=_number((robust or {}).get(model_key(task, method, "n"))),
                        failed_checks=_failed_checks(robust, prefix),
                    )
                )
    if intervals is None:
        return rows
    largest = expected.largest_eps
    return [
        _with_intervals(
            row, inputs.outcomes.get((row.level, row.task, row.method)), intervals, largest
        )
        for row in rows
    ]


def _with_intervals(
    row: Downstream, outcomes: ModelOutcomes | None, intervals: Intervals, eps: float
) -> Downstream:
    """``row`` with the intervals its outcomes give, and its image-reliance numbers."""
    if outcomes is None:
        return row
    tested, attacked = test_set(row.task), attacked_set(row.task)
    seeds = len(outcomes.clean)
    return replace(
        row,
        clean=row.clean.within(intervals.mean(outcomes.clean, tested)),
        attacked_clean=row.attacked_clean.within(intervals.mean(outcomes.attacked_clean, attacked)),
        robust={
            e: stat.within(intervals.mean(outcomes.robust.get(e), attacked))
            for e, stat in row.robust.items()
        },
        auroc=Stat.of(intervals.auroc(outcomes), seeds),
        label_accuracy=Stat.of(intervals.mean(outcomes.label_accuracy, tested), seeds),
        blind=Stat.of(intervals.mean(outcomes.test_blind, tested), seeds),
        image_gain=Stat.of(image_gain(intervals, outcomes), seeds),
        ignores_image=ignores_image(intervals, outcomes, eps),
    )


def baselines(inputs: Inputs, intervals: Intervals) -> dict[str, Stat]:
    """Per task, the trivial baseline's accuracy on the test split, with its interval."""
    return {
        task: Stat.of(intervals.mean(prior, test_set(task)), 1)
        for task, prior in inputs.priors.items()
    }


def best_methods(rows: list[Downstream], eps: float) -> set[tuple[str, str, str]]:
    """(level, task, method) of the highest mean robust accuracy at ``eps`` per level and
    task. Ties all count, but when every model of a level ties nothing stands out and none
    is returned; models without a value, and models robust by ignoring the image, never
    count."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if not row.robust[eps].missing and not row.ignores_image:
            values.setdefault((row.level, row.task), {})[row.method] = row.robust[eps].mean
    best = set()
    for (level, task), by_method in values.items():
        top = max(by_method.values())
        winners = {m for m, v in by_method.items() if v == top}
        if len(winners) < len(by_method) or len(by_method) == 1:
            best |= {(level, task, m) for m in winners}
    return best


def upstream(inputs: Inputs, expected: Expected) -> dict[str, dict[str, float]]:
    """Per level: the pre-training corpus and loss, retrieval R@k both ways, zero-shot, and
    the linear probes (frozen features, raw pixels)."""
    table = {}
    for level in expected.level_names:
        pretrain = inputs.pretrain.get(level, {})
        evals = inputs.upstream.get(level, {})
        row = {k: _number(pretrain.get(k)) for k in ("n_train", "n_adversarial", FINAL_LOSS)}
        for k in expected.recall_at:
            for direction in ("i2t", "t2i"):
                row[recall_key(direction, k)] = _number(evals.get(recall_key(direction, k)))
        for key in (ZERO_SHOT_ACCURACY, PROBE_AUROC, PIXEL_PROBE_AUROC):
            row[key] = _number(evals.get(key))
        table[level] = row
    return table


def _failed_checks(robust: dict[str, Any] | None, prefix: str) -> tuple[str, ...] | None:
    checks = {k.removeprefix(prefix): v for k, v in (robust or {}).items() if _is_check(k, prefix)}
    if not checks:
        return None
    return tuple(sorted(k.removeprefix("check_") for k, v in checks.items() if _number(v) < 1))


def _is_check(key: str, prefix: str) -> bool:
    return key.startswith(f"{prefix}check_")


def _number(value: Any) -> float:
    """A metric as a float; anything else (absent, a string, a bool) is NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NAN
    return float(value)
