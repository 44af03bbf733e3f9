"""Each number of the downstream tables with its 95% bootstrap interval over test examples and
seeds (``medran.evaluation.bootstrap``), from a model's per-example outcomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medran.evaluation.auroc import macro_auroc
from medran.evaluation.bootstrap import Draw, Estimate, bootstrap, mean_outcome
from medran.params import BootstrapParams
from medran.reporting.outcomes import ModelOutcomes, attacked_set, test_set


@dataclass(frozen=True)
class Interval:
    """A statistic and its 95% interval; NaN throughout when the outcomes are missing."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, estimate: Estimate) -> Interval:
        return cls(estimate.value, *estimate.interval())


NONE = Interval(float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class Intervals:
    """Bootstraps the statistics of one model's outcomes with the report's settings."""

    settings: BootstrapParams

    def run(
        self, statistic: Callable[[Draw], float], sizes: dict[str, int], seeds: int
    ) -> Estimate:
        return bootstrap(statistic, sizes, seeds, self.settings.samples, self.settings.seed)

    def mean(self, values: np.ndarray | None, example_set: str) -> Interval:
        """The mean of (seeds, examples) outcomes, or of (examples,) ones (one 'seed')."""
        if values is None:
            return NONE
        values = np.atleast_2d(values).astype(float)
        estimate = self.run(
            mean_outcome(values, example_set), {example_set: values.shape[1]}, len(values)
        )
        return Interval.of(estimate)

    def difference(
        self, a: np.ndarray | None, b: np.ndarray | None, example_set: str
    ) -> Estimate | None:
        """Paired mean(a) - mean(b) over the same examples and seed rows."""
        if a is None or b is None:
            return None
        a, b = a.astype(float), b.astype(float)
        return self.run(
            lambda d: float(d.take(a, example_set).mean() - d.take(b, example_set).mean()),
            {example_set: a.shape[1]},
            len(a),
        )

    def auroc(self, outcomes: ModelOutcomes) -> Interval:
        """Macro one-vs-rest AUROC, averaged over the drawn seeds."""
        scores, truth = outcomes.scores, outcomes.truth
        if scores is None or truth is None:
            return NONE
        example_set = test_set(outcomes.task)

        def statistic(draw: Draw) -> float:
            rows = draw.examples[example_set]
            values = [macro_auroc(truth[rows], scores[s][rows])["auroc"] for s in draw.seeds]
            return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")

        return Interval.of(self.run(statistic, {example_set: len(truth)}, len(scores)))


def image_gain(intervals: Intervals, outcomes: ModelOutcomes) -> Interval:
    """Clean minus blind accuracy on the whole test split: what the image adds (VQA)."""
    estimate = intervals.difference(outcomes.clean, outcomes.test_blind, test_set(outcomes.task))
    return NONE if estimate is None else Interval.of(estimate)


def ignores_image(intervals: Intervals, outcomes: ModelOutcomes, eps: float) -> bool | None:
    """Robust by ignoring the image: robust accuracy at ``eps`` is above zero (its 95%
    interval), and either it is within its interval of the blind accuracy on the same attacked
    examples (the interval of robust - blind, paired, contains 0) or the image adds nothing
    measurable on the test split (the interval of the image gain reaches 0). None without the
    outcomes."""
    robust, attacked = outcomes.robust.get(eps), attacked_set(outcomes.task)
    versus_blind = intervals.difference(robust, outcomes.blind, attacked)
    gain = intervals.difference(outcomes.clean, outcomes.test_blind, test_set(outcomes.task))
    if versus_blind is None or gain is None:
        return None
    low, high = versus_blind.interval()
    robust_at_all = intervals.mean(robust, attacked).low > 0
    return bool(robust_at_all and (low <= 0 <= high or gain.interval()[0] <= 0))
