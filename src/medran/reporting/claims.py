"""The paper's three claims, checked against the per-example outcomes; each gets a verdict
from the data alone, so the report can never state more than the runs show.

Definitions:

- A *level statistic* of a metric is the mean, over every configured (task, method) model of
  the level, of the model's mean outcome over seeds and examples. ``robust``: the model's
  (seeds, examples) array at ``eps`` on ``<task>/attacked``; ``clean``: its clean array on
  ``<task>/test``.
- An *effect* is the difference of two such means, bootstrapped by one :func:`bootstrap` call
  whose statistic computes both sides on the same draw (paired: same examples, same seed
  rows). Every effect of a claim resamples the example sets of all the claim's arrays from the
  same stream, so they all see the same draws. An interval is *above 0* when its low end is
  > 0 and *below 0* when its high end is < 0.
- (a) Moderate upstream noise raises robust accuracy or transfer over level 0. For each of
  the K levels strictly between 0 and the highest level, two effects against level 0: robust
  and transfer (clean accuracy). Intervals are Bonferroni-adjusted to confidence
  1 - 0.05 / (2K). ``supported`` if any lies above 0, ``contradicted`` if every one lies below
  0, else ``inconclusive``. The best level is the one with the largest robust point estimate.
- (b) The highest noise level lowers clean performance: clean(highest) - clean(0) at 95%.
  ``supported`` if below 0, ``contradicted`` if above 0, else ``inconclusive``.
- (c) RAN raises robust accuracy over lp, mlp and nmtune at ``eps`` while losing at most
  ``max_clean_loss`` clean points. Per baseline B present: robust(ran) - robust(B) and
  clean(ran) - clean(B), each side the mean over every level x task. ``supported`` if for
  every B the robust 95% interval is above 0 and the clean 95% interval's low end is
  >= -max_clean_loss (an intersection of tests: no adjustment). ``contradicted`` if for any B,
  at the Bonferroni confidence 1 - 0.05 / (2B), the robust interval is below 0 or the clean
  interval's high end is < -max_clean_loss. Else ``inconclusive``.

A claim whose inputs are missing or inconsistent (a model, its array at ``eps``, the levels it
needs, unequal seed or example counts) is ``not testable`` with the reason; never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medran.evaluation.bootstrap import CONFIDENCE, Draw, bootstrap
from medran.reporting.outcomes import ModelOutcomes, attacked_set, test_set

SUPPORTED, CONTRADICTED = "supported", "contradicted"
INCONCLUSIVE, NOT_TESTABLE = "inconclusive", "not testable"
CLAIMS = {
    "a": "Moderate upstream noise (the best level between 0 and the highest) raises robust "
    "accuracy (at {eps:g}/255) or transfer (clean accuracy) over level 0.",
    "b": "The highest noise level lowers clean downstream performance relative to level 0.",
    "c": "RAN raises robust accuracy over lp, mlp and nmtune at {eps:g}/255 while losing at "
    "most {loss:g} of clean accuracy.",
}
RAN, BASELINES = "ran", ("lp", "mlp", "nmtune")
ROBUST, CLEAN = "robust", "clean"
ALPHA = 1 - CONFIDENCE

Key = tuple[str, str, str]  # (level name, task, method)
Need = tuple[Key, str]  # a model and a metric
Outcomes = Mapping[Key, ModelOutcomes]


@dataclass(frozen=True)
class ClaimSettings:
    eps: float  # the budget (1/255 units) claims (a) and (c) read robust accuracy at
    max_clean_loss: float  # claim (c): clean points RAN may lose
    samples: int  # bootstrap draws
    seed: int  # bootstrap stream


class _NotTestable(Exception):
    """Internal: a claim's inputs do not allow a test; the message is the reason."""


@dataclass(frozen=True)
class _Side:
    """One side of an effect: the mean over models of each model's mean outcome."""

    label: str
    arrays: tuple[tuple[np.ndarray, str], ...]

    def value(self, draw: Draw) -> float:
        return float(np.mean([draw.take(array, name).mean() for array, name in self.arrays]))

    def observed(self) -> float:
        return float(np.mean([array.mean() for array, _ in self.arrays]))


@dataclass(frozen=True)
class _Data:
    """A claim's arrays, and the example-set sizes and seed count all its draws share."""

    arrays: Mapping[Need, tuple[np.ndarray, str]]
    sizes: dict[str, int]
    n_seeds: int
    settings: ClaimSettings

    def side(self, label: str, needs: Sequence[Need]) -> _Side:
        return _Side(label, tuple(self.arrays[need] for need in needs))

    def effect(self, name: str, plus: _Side, minus: _Side, confidence: float) -> dict:
        """``plus - minus`` on the data, its 95% and its decision interval."""
        samples, seed = self.settings.samples, self.settings.seed

        def statistic(draw: Draw) -> float:
            return plus.value(draw) - minus.value(draw)

        estimate = bootstrap(statistic, self.sizes, self.n_seeds, samples, seed)
        (low, high), (d_low, d_high) = estimate.interval(), estimate.interval(confidence)
        return {
            "name": name,
            "compared": {plus.label: _num(plus.observed()), minus.label: _num(minus.observed())},
            **{"effect": _num(estimate.value), "ci_low": _num(low), "ci_high": _num(high)},
            **{"decision_ci_low": _num(d_low), "decision_ci_high": _num(d_high)},
            "decision_confidence": confidence,
        }


@dataclass(frozen=True)
class _Config:
    """What :func:`check_claims` was asked to check."""

    outcomes: Outcomes
    levels: tuple[str, ...]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    settings: ClaimSettings

    def models(self, methods: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """Every (task, method) of ``methods`` (default: all configured)."""
        return [(t, m) for t in self.tasks for m in (self.methods if methods is None else methods)]

    def gather(self, needs: Sequence[Need]) -> _Data:
        """The arrays ``needs`` names; any missing make the claim not testable."""
        arrays, missing, eps = {}, [], self.settings.eps
        for need in needs:
            found = _lookup(self.outcomes, need, eps)
            if found is None:
                what = "outcomes" if need[0] not in self.outcomes else f"robust at eps {eps}"
                missing.append(f"{_name(need[0])} ({what})")
            else:
                arrays[need] = found
        if missing:
            raise _NotTestable(self._why_missing(needs, arrays, missing))
        if not arrays:
            raise _NotTestable("no models configured (levels, tasks or methods are empty)")
        return _Data(arrays, *_shapes(arrays), self.settings)

    def _why_missing(self, needs: Sequence[Need], found: Mapping, missing: list[str]) -> str:
        """A run that attacked no model at eps says so once instead of naming every model."""
        every_model = all(key in self.outcomes for key, _ in needs)
        if every_model and not any(metric == ROBUST for _, metric in found):
            return f"no model was attacked at {self.settings.eps:g}/255 (not in eval_robust.eps)"
        return f"missing input: {', '.join(dict.fromkeys(missing))}"


def _needs(
    levels: Sequence[str], models: Sequence[tuple[str, str]], metrics: Sequence[str]
) -> list[Need]:
    """Each metric of each model, every model at every level."""
    return [((lv, t, m), metric) for lv in levels for t, m in models for metric in metrics]


def _num(value: float) -> float | None:
    """JSON has no NaN: an undefined number is None."""
    return None if math.isnan(value) else float(value)


def _name(key: Key) -> str:
    return "-".join(key)


def _lookup(outcomes: Outcomes, need: Need, eps: float) -> tuple[np.ndarray, str] | None:
    (_, task, _), metric = need
    model = outcomes.get(need[0])
    if model is None:
        return None
    if metric == CLEAN:
        return np.asarray(model.clean, dtype=float), test_set(task)
    array = model.robust.get(eps)
    return None if array is None else (np.asarray(array, dtype=float), attacked_set(task))


def _shapes(arrays: Mapping[Need, tuple[np.ndarray, str]]) -> tuple[dict[str, int], int]:
    """Example-set sizes and the seed count, which every array must agree on."""
    sizes: dict[str, int] = {}
    seeds: dict[int, str] = {}
    for (key, metric), (array, example_set) in arrays.items():
        if array.ndim != 2 or 0 in array.shape:
            raise _NotTestable(f"{_name(key)} {metric}: shape {array.shape}, no seeds x examples")
        seeds.setdefault(array.shape[0], _name(key))
        if sizes.setdefault(example_set, array.shape[1]) != array.shape[1]:
            raise _NotTestable(f"{_name(key)} {metric}: models differ in size of {example_set}")
    if len(seeds) > 1:
        raise _NotTestable(f"models differ in their number of seeds: {seeds}")
    return dict(sorted(sizes.items())), next(iter(seeds))


def _levels(levels: Sequence[str]) -> tuple[str, list[str], str]:
    """Level 0, the levels strictly between 0 and the highest (ascending), and the highest."""
    try:
        ordered = sorted(levels, key=float)
    except ValueError as e:
        raise _NotTestable(f"a level name is not a number: {e}") from e
    zero = next((level for level in ordered if float(level) == 0), None)
    if zero is None:
        raise _NotTestable(f"no level 0 among {ordered}")
    top = ordered[-1]
    if float(top) <= 0:
        raise _NotTestable(f"no level above 0 among {ordered}")
    return zero, [level for level in ordered if 0 < float(level) < float(top)], top


def _fmt(effect: dict, adjusted: bool = True) -> str:
    """An effect with the interval a decision read: ``robust 0.1 vs 0.0 +0.120 [0.05, 0.19]``."""
    low, high = ("decision_ci_low", "decision_ci_high") if adjusted else ("ci_low", "ci_high")
    conf = effect["decision_confidence"] if adjusted else CONFIDENCE
    nums = ["n/a" if effect[k] is None else f"{effect[k]:+.3f}" for k in ("effect", low, high)]
    return f"{effect['name']} {nums[0]} [{nums[1]}, {nums[2]}] at {conf:.2%}"


def _above(effect: dict, bound: float = 0.0, adjusted: bool = True) -> bool:
    low = effect["decision_ci_low" if adjusted else "ci_low"]
    return low is not None and low > bound


def _below(effect: dict, bound: float = 0.0, adjusted: bool = True) -> bool:
    high = effect["decision_ci_high" if adjusted else "ci_high"]
    return high is not None and high < bound


def _versus(data: _Data, config: _Config, levels: tuple[str, str], metric: str) -> list[_Side]:
    """The level statistics of ``metric`` at the two ``levels``, each over every model."""
    return [data.side(f"level {lv}", _needs([lv], config.models(), [metric])) for lv in levels]


def _claim_a(config: _Config) -> dict:
    zero, middle, top = _levels(config.levels)
    if not middle:
        raise _NotTestable(f"no level strictly between {zero} and {top}")
    data = config.gather(_needs([zero, *middle], config.models(), (ROBUST, CLEAN)))
    confidence = 1 - ALPHA / (2 * len(middle))
    effects = [
        data.effect(f"{label} {lv} vs {zero}", *_versus(data, config, (lv, zero), x), confidence)
        for lv in middle
        for x, label in ((ROBUST, "robust"), (CLEAN, "transfer"))
    ]
    robust = effects[::2]
    best = max(range(len(middle)), key=lambda i: _order(robust[i]["effect"]))
    if any(_above(e) for e in effects):
        verdict = SUPPORTED
        reason = f"adjusted interval above 0: {'; '.join(_fmt(e) for e in effects if _above(e))}."
    elif all(_below(e) for e in effects):
        verdict = CONTRADICTED
        worst = max(effects, key=lambda e: e["decision_ci_high"])
        reason = f"every adjusted interval lies below 0, the highest: {_fmt(worst)}."
    else:
        verdict = INCONCLUSIVE
        reason = f"no adjusted interval lies above 0 and not all below; best: {_fmt(robust[best])}."
    levels = [zero, *middle]
    return {"verdict": verdict, "reason": reason, "effects": effects} | {
        "best_level": middle[best],
        "levels": levels,
    }


def _order(value: float | None) -> float:
    return -math.inf if value is None else value


def _claim_b(config: _Config) -> dict:
    zero, _, top = _levels(config.levels)
    data = config.gather(_needs([zero, top], config.models(), [CLEAN]))
    sides = _versus(data, config, (top, zero), CLEAN)
    effect = data.effect(f"clean {top} vs {zero}", *sides, CONFIDENCE)
    if _below(effect):
        verdict, where = SUPPORTED, "lies below 0"
    elif _above(effect):
        verdict, where = CONTRADICTED, "lies above 0"
    else:
        verdict, where = INCONCLUSIVE, "contains 0"
    reason = f"the interval of {_fmt(effect)} {where}."
    return {"verdict": verdict, "reason": reason, "effects": [effect], "levels": [zero, top]}


def _claim_c(config: _Config) -> dict:
    baselines = [b for b in BASELINES if b in config.methods]
    if RAN not in config.methods or not baselines:
        methods = list(config.methods)
        raise _NotTestable(f"needs {RAN} and one of {', '.join(BASELINES)} among {methods}")
    data = config.gather(_needs(config.levels, config.models((RAN, *baselines)), (ROBUST, CLEAN)))
    confidence = 1 - ALPHA / (2 * len(baselines))

    def effect(metric: str, baseline: str) -> dict:
        sides = [
            data.side(m, _needs(config.levels, config.models([m]), [metric]))
            for m in (RAN, baseline)
        ]
        return data.effect(f"{metric} {RAN} vs {baseline}", *sides, confidence)

    robust = [effect(ROBUST, b) for b in baselines]
    clean = [effect(CLEAN, b) for b in baselines]
    verdict, reason = _verdict_c(robust, clean, -config.settings.max_clean_loss)
    return {"verdict": verdict, "reason": reason, "effects": robust + clean} | {
        "baselines": baselines,
        "missing_baselines": [b for b in BASELINES if b not in baselines],
        "levels": list(config.levels),
    }


def _verdict_c(robust: list[dict], clean: list[dict], floor: float) -> tuple[str, str]:
    """Supported: every robust 95% interval above 0 and every clean one's low end >= floor;
    contradicted: an adjusted robust interval below 0 or adjusted clean one below floor."""
    gains = [e for e in robust if _above(e, adjusted=False)]
    kept = [e for e in clean if e["ci_low"] is not None and e["ci_low"] >= floor]
    if len(gains) == len(robust) and len(kept) == len(clean):
        weakest = min(robust, key=lambda e: e["ci_low"])
        return SUPPORTED, (
            f"every robust interval lies above 0 (lowest: {_fmt(weakest, adjusted=False)}) "
            f"and every clean interval's low end is at least {floor:+.3f}."
        )
    losses = [f"{_fmt(e)} lies below 0" for e in robust if _below(e)]
    losses += [f"{_fmt(e)} lies below {floor:+.3f}" for e in clean if _below(e, floor)]
    if losses:
        return CONTRADICTED, f"adjusted interval {'; '.join(losses)}."
    undecided = [e for e in robust if e not in gains] + [e for e in clean if e not in kept]
    return INCONCLUSIVE, f"undecided: {'; '.join(_fmt(e, adjusted=False) for e in undecided)}."


def check_claims(
    outcomes: Outcomes,
    levels: Sequence[str],
    tasks: Sequence[str],
    methods: Sequence[str],
    settings: ClaimSettings,
) -> dict[str, dict]:
    """``{"a": {...}, "b": {...}, "c": {...}}``; JSON-serialisable (floats, strings, lists,
    dicts, None for an undefined number). A claim that cannot be tested says why."""
    unique = [tuple(dict.fromkeys(names)) for names in (levels, tasks, methods)]
    config = _Config(outcomes, *unique, settings)
    claims = {}
    for name, check in {"a": _claim_a, "b": _claim_b, "c": _claim_c}.items():
        text = CLAIMS[name].format(eps=settings.eps, loss=settings.max_clean_loss)
        head = {"claim": text, "eps": settings.eps, "confidence": CONFIDENCE}
        try:
            claims[name] = head | check(config)
        except _NotTestable as e:
            claims[name] = head | {"verdict": NOT_TESTABLE, "reason": f"{e}.", "effects": []}
    return claims
