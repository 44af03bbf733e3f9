"""95% confidence intervals by bootstrap over test examples and seeds (docs/study.md,
"Uncertainty").

A model's per-example outcomes are a (seeds, examples) array. One bootstrap draw resamples,
with replacement, the examples of every example set (a task's test split, or the subset
eval_robust attacks) and the seeds; a statistic is any function of a draw, so comparisons of
several models on the same examples are paired: every model sees the same draw. The interval
is the percentile interval of the statistic over ``samples`` draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Draw:
    """Resampled positions: per example set, indices into its examples; and seed rows."""

    examples: Mapping[str, np.ndarray]
    seeds: np.ndarray

    def take(self, values: np.ndarray, example_set: str) -> np.ndarray:
        """``values`` (seeds, examples, ...) at this draw's seeds and examples."""
        return values[self.seeds][:, self.examples[example_set]]


Statistic = Callable[[Draw], float]


@dataclass(frozen=True)
class Estimate:
    """A statistic on the observed data and its bootstrap distribution."""

    value: float
    samples: np.ndarray  # the statistic on each draw

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """Percentile interval; NaN when the statistic is undefined on the data."""
        if np.isnan(self.value) or not len(self.samples):
            return float("nan"), float("nan")
        tail = (1 - confidence) / 2
        low, high = np.nanquantile(self.samples, [tail, 1 - tail])
        return float(low), float(high)

    def as_dict(self, confidence: float = CONFIDENCE) -> dict[str, float]:
        low, high = self.interval(confidence)
        return {"value": self.value, "ci_low": low, "ci_high": high}


def bootstrap(
    statistic: Statistic,
    sizes: Mapping[str, int],
    n_seeds: int,
    samples: int,
    seed: int,
) -> Estimate:
    """``statistic`` on the data as observed and on ``samples`` draws over the example sets
    of ``sizes`` (name -> number of examples) and ``n_seeds`` seeds, from a seeded stream."""
    observed = Draw({k: np.arange(n) for k, n in sizes.items()}, np.arange(n_seeds))
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for b in range(samples):
        examples = {k: rng.integers(0, n, n) for k, n in sizes.items()}
        values[b] = statistic(Draw(examples, rng.integers(0, n_seeds, n_seeds)))
    return Estimate(float(statistic(observed)), values)


def mean_outcome(values: np.ndarray, example_set: str) -> Statistic:
    """The mean of per-example outcomes ``values`` (seeds, examples) over seeds and examples."""
    return lambda draw: float(draw.take(values, example_set).mean())
