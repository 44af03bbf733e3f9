"""The machinery of the claims (``medran.reporting.claims``): the outcome arrays a claim
needs, and paired bootstrap effects between two sides, each a mean over models."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medran.evaluation.bootstrap import Draw, bootstrap
from medran.reporting.outcomes import ModelOutcomes, attacked_set, test_set

ROBUST, CLEAN = "robust", "clean"

Key = tuple[str, str, str]  # (level name, task, method)
Need = tuple[Key, str]  # a model and a metric
Outcomes = Mapping[Key, ModelOutcomes]


@dataclass(frozen=True)
class ClaimSettings:
    eps: float  # the budget (1/255 units) claims (a) and (c) read robust accuracy at
    max_clean_loss: float  # claim (c): clean points RAN may lose
    samples: int  # bootstrap draws
    seed: int  # bootstrap stream


class NotTestable(Exception):
    """Internal: a claim's inputs do not allow a test; the message is the reason."""


@dataclass(frozen=True)
class Side:
    """One side of an effect: the mean over models of each model's mean outcome."""

    label: str
    arrays: tuple[tuple[np.ndarray, str], ...]

    def value(self, draw: Draw) -> float:
        return float(np.mean([draw.take(array, name).mean() for array, name in self.arrays]))

    def observed(self) -> float:
        return float(np.mean([array.mean() for array, _ in self.arrays]))


@dataclass(frozen=True)
class ClaimData:
    """A claim's arrays, and the example-set sizes and seed count all its draws share."""

    arrays: Mapping[Need, tuple[np.ndarray, str]]
    sizes: dict[str, int]
    n_seeds: int
    settings: ClaimSettings

    def side(self, label: str, needs: Sequence[Need]) -> Side:
        return Side(label, tuple(self.arrays[need] for need in needs))

    def effect(self, name: str, plus: Side, minus: Side, confidence: float) -> dict:
        """``plus - minus`` on the data, its 95% and its decision interval."""
        samples, seed = self.settings.samples, self.settings.seed

        def statistic(draw: Draw) -> float:
            return plus.value(draw) - minus.value(draw)

        estimate = bootstrap(statistic, self.sizes, self.n_seeds, samples, seed)
        (low, high), (d_low, d_high) = estimate.interval(), estimate.interval(confidence)
        return {
            "name": name,
            "compared": {plus.label: num(plus.observed()), minus.label: num(minus.observed())},
            **{"effect": num(estimate.value), "ci_low": num(low), "ci_high": num(high)},
            **{"decision_ci_low": num(d_low), "decision_ci_high": num(d_high)},
            "decision_confidence": confidence,
        }


@dataclass(frozen=True)
class ClaimConfig:
    """What :func:`check_claims` was asked to check."""

    outcomes: Outcomes
    levels: tuple[str, ...]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    settings: ClaimSettings

    def models(self, methods: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Every (task, method) of ``methods`` (default: all configured)."""
        return [(t, m) for t in self.tasks for m in (self.methods if methods is None else methods)]

    def gather(self, needs: Sequence[Need]) -> ClaimData:
        """The arrays ``needs`` names; any missing make the claim not testable."""
        arrays, missing, eps = {}, [], self.settings.eps
        for need in needs:
            found = lookup(self.outcomes, need, eps)
            if found is None:
                what = "outcomes" if need[0] not in self.outcomes else f"robust at eps {eps}"
                missing.append(f"{key_name(need[0])} ({what})")
            else:
                arrays[need] = found
        if missing:
            raise NotTestable(self._why_missing(needs, arrays, missing))
        if not arrays:
            raise NotTestable("no models configured (levels, tasks or methods are empty)")
        return ClaimData(arrays, *shapes(arrays), self.settings)

    def _why_missing(self, needs: Sequence[Need], found: Mapping, missing: list[str]) -> str:
        """A run that attacked no model at eps says so once instead of naming every model."""
        every_model = all(key in self.outcomes for key, _ in needs)
        if every_model and not any(metric == ROBUST for _, metric in found):
            return f"no model was attacked at {self.settings.eps:g}/255 (not in eval_robust.eps)"
        return f"missing input: {', '.join(dict.fromkeys(missing))}"


def needs(
    levels: Sequence[str], models: Sequence[tuple[str, str]], metrics: Sequence[str]
) -> list[Need]:
    """Each metric of each model, every model at every level."""
    return [((lv, t, m), metric) for lv in levels for t, m in models for metric in metrics]


def num(value: float) -> float | None:
    """JSON has no NaN: an undefined number is None."""
    return None if math.isnan(value) else float(value)


def key_name(key: Key) -> str:
    return "-".join(key)


def lookup(outcomes: Outcomes, need: Need, eps: float) -> tuple[np.ndarray, str] | None:
    (_, task, _), metric = need
    model = outcomes.get(need[0])
    if model is None:
        return None
    if metric == CLEAN:
        return np.asarray(model.clean, dtype=float), test_set(task)
    array = model.robust.get(eps)
    return None if array is None else (np.asarray(array, dtype=float), attacked_set(task))


def shapes(arrays: Mapping[Need, tuple[np.ndarray, str]]) -> tuple[dict[str, int], int]:
    """Example-set sizes and the seed count, which every array must agree on."""
    sizes: dict[str, int] = {}
    seeds: dict[int, str] = {}
    for (key, metric), (array, example_set) in arrays.items():
        if array.ndim != 2 or 0 in array.shape:
            raise NotTestable(f"{key_name(key)} {metric}: shape {array.shape}, no seeds x examples")
        seeds.setdefault(array.shape[0], key_name(key))
        if sizes.setdefault(example_set, array.shape[1]) != array.shape[1]:
            raise NotTestable(f"{key_name(key)} {metric}: models differ in size of {example_set}")
    if len(seeds) > 1:
        raise NotTestable(f"models differ in their number of seeds: {seeds}")
    return dict(sorted(sizes.items())), next(iter(seeds))
