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
- (d) RAN raises robust accuracy over FARE and TeCoA (the encoder-tuning defenses) at
  ``eps``. Effects as in (c); ``supported`` if every robust 95% interval is above 0,
  ``contradicted`` if an adjusted one is below 0, else ``inconclusive``. The clean effects
  are reported beside them; the report adds each method's cost.

A claim whose inputs are missing or inconsistent (a model, its array at ``eps``, the levels it
needs, unequal seed or example counts) is ``not testable`` with the reason; never an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from medran.evaluation.bootstrap import CONFIDENCE
from medran.reporting.effects import (
    CLEAN,
    ROBUST,
    ClaimConfig,
    ClaimData,
    ClaimSettings,
    NotTestable,
    Outcomes,
    Side,
    needs,
)

SUPPORTED, CONTRADICTED = "supported", "contradicted"
INCONCLUSIVE, NOT_TESTABLE = "inconclusive", "not testable"
CLAIMS = {
    "a": "Moderate upstream noise (the best level between 0 and the highest) raises robust "
    "accuracy (at {eps:g}/255) or transfer (clean accuracy) over level 0.",
    "b": "The highest noise level lowers clean downstream performance relative to level 0.",
    "c": "RAN raises robust accuracy over lp, mlp and nmtune at {eps:g}/255 while losing at "
    "most {loss:g} of clean accuracy.",
    "d": "RAN, which trains a head on a frozen encoder, raises robust accuracy at {eps:g}/255 "
    "over FARE and TeCoA, which fine-tune the whole image encoder.",
}
RAN, BASELINES, DEFENSES = "ran", ("lp", "mlp", "nmtune"), ("fare", "tecoa")
ALPHA = 1 - CONFIDENCE


def _levels(levels: Sequence[str]) -> tuple[str, list[str], str]:
    """Level 0, the levels strictly between 0 and the highest (ascending), and the highest."""
    try:
        ordered = sorted(levels, key=float)
    except ValueError as e:
        raise NotTestable(f"a level name is not a number: {e}") from e
    zero = next((level for level in ordered if float(level) == 0), None)
    if zero is None:
        raise NotTestable(f"no level 0 among {ordered}")
    top = ordered[-1]
    if float(top) <= 0:
        raise NotTestable(f"no level above 0 among {ordered}")
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


def _versus(
    data: ClaimData, config: ClaimConfig, levels: tuple[str, str], metric: str
) -> list[Side]:
    """The level statistics of ``metric`` at the two ``levels``, each over every model."""
    return [data.side(f"level {lv}", needs([lv], config.models(), [metric])) for lv in levels]


def _claim_a(config: ClaimConfig) -> dict:
    zero, middle, top = _levels(config.levels)
    if not middle:
        raise NotTestable(f"no level strictly between {zero} and {top}")
    data = config.gather(needs([zero, *middle], config.models(), (ROBUST, CLEAN)))
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


def _claim_b(config: ClaimConfig) -> dict:
    zero, _, top = _levels(config.levels)
    data = config.gather(needs([zero, top], config.models(), [CLEAN]))
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


def _against(
    config: ClaimConfig, wanted: Sequence[str]
) -> tuple[list[str], list[dict], list[dict]]:
    """RAN against each of ``wanted`` present: robust and clean effects, each side the mean
    over every level x task, at the Bonferroni confidence over the baselines."""
    baselines = [b for b in wanted if b in config.methods]
    if RAN not in config.methods or not baselines:
        methods = list(config.methods)
        raise NotTestable(f"needs {RAN} and one of {', '.join(wanted)} among {methods}")
    data = config.gather(needs(config.levels, config.models((RAN, *baselines)), (ROBUST, CLEAN)))
    confidence = 1 - ALPHA / (2 * len(baselines))

    def effect(metric: str, baseline: str) -> dict:
        sides = [
            data.side(m, needs(config.levels, config.models([m]), [metric]))
            for m in (RAN, baseline)
        ]
        return data.effect(f"{metric} {RAN} vs {baseline}", *sides, confidence)

    robust = [effect(ROBUST, b) for b in baselines]
    return baselines, robust, [effect(CLEAN, b) for b in baselines]


def _claim_c(config: ClaimConfig) -> dict:
    baselines, robust, clean = _against(config, BASELINES)
    verdict, reason = _verdict_c(robust, clean, -config.settings.max_clean_loss)
    return {"verdict": verdict, "reason": reason, "effects": robust + clean} | {
        "baselines": baselines,
        "missing_baselines": [b for b in BASELINES if b not in baselines],
        "levels": list(config.levels),
    }


def _claim_d(config: ClaimConfig) -> dict:
    defenses, robust, clean = _against(config, DEFENSES)
    if all(_above(e, adjusted=False) for e in robust):
        verdict, reason = SUPPORTED, "every robust 95% interval lies above 0."
    elif any(_below(e) for e in robust):
        worse = "; ".join(_fmt(e) for e in robust if _below(e))
        verdict, reason = CONTRADICTED, f"adjusted interval below 0: {worse}."
    else:
        undecided = "; ".join(_fmt(e, adjusted=False) for e in robust)
        verdict, reason = INCONCLUSIVE, f"not every robust interval lies above 0: {undecided}."
    return {"verdict": verdict, "reason": reason, "effects": robust + clean} | {
        "baselines": defenses,
        "missing_baselines": [b for b in DEFENSES if b not in defenses],
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
    """``{"a": {...}, ..., "d": {...}}``; JSON-serialisable (floats, strings, lists,
    dicts, None for an undefined number). A claim that cannot be tested says why."""
    unique = [tuple(dict.fromkeys(names)) for names in (levels, tasks, methods)]
    config = ClaimConfig(outcomes, *unique, settings)
    claims = {}
    for name, check in {"a": _claim_a, "b": _claim_b, "c": _claim_c, "d": _claim_d}.items():
        text = CLAIMS[name].format(eps=settings.eps, loss=settings.max_clean_loss)
        head = {"claim": text, "eps": settings.eps, "confidence": CONFIDENCE}
        try:
            claims[name] = head | check(config)
        except NotTestable as e:
            claims[name] = head | {"verdict": NOT_TESTABLE, "reason": f"{e}.", "effects": []}
    return claims
