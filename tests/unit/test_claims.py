"""Each claim's verdict on hand-made outcomes: a model right on 80% of the examples against one
right on 40% is a clear difference, identical models give intervals of exactly [0, 0]."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from medran.reporting.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    ClaimSettings,
    check_claims,
)
from medran.reporting.outcomes import ModelOutcomes

EPS, SEEDS = 2.0, 3
SIZES = {"cls": (400, 200), "vqa": (300, 100)}  # task -> (test examples, attacked examples)
SETTINGS = ClaimSettings(eps=EPS, max_clean_loss=0.02, samples=200, seed=0)
LEVELS = ("0.0", "0.1", "0.2", "0.5")
METHODS = ("lp", "mlp", "nmtune", "ran")
PLAIN = (0.6, 0.6)  # (clean, robust) accuracy of a model the test does not single out


def right(rate: float, n: int) -> np.ndarray:
    """(seeds, n) outcomes: right on the first ``rate`` of the examples, on every seed."""
    values = np.zeros((SEEDS, n))
    values[:, : round(rate * n)] = 1.0
    return values


def model(task: str, clean: float, robust: float) -> ModelOutcomes:
    n_test, n_attacked = SIZES[task]
    return ModelOutcomes(task, right(clean, n_test), None, {EPS: right(robust, n_attacked)}, None)


def grid(
    rates: dict[tuple[str, str], tuple[float, float]],
    levels: tuple[str, ...] = LEVELS,
    methods: tuple[str, ...] = METHODS,
    tasks: tuple[str, ...] = ("cls",),
) -> dict:
    """Every model; ``rates`` (level or "*", method or "*") -> (clean, robust), else PLAIN."""

    def rate(level: str, method: str) -> tuple[float, float]:
        for key in ((level, method), (level, "*"), ("*", method), ("*", "*")):
            if key in rates:
                return rates[key]
        return PLAIN

    return {(lv, t, m): model(t, *rate(lv, m)) for lv in levels for t in tasks for m in methods}


def claims(
    outcomes: dict,
    levels: tuple[str, ...] = LEVELS,
    methods: tuple[str, ...] = METHODS,
    tasks: tuple[str, ...] = ("cls",),
    **settings: float,
) -> dict:
    """check_claims with ``settings`` changed; checks what every entry must be."""
    result = check_claims(outcomes, levels, tasks, methods, replace(SETTINGS, **settings))
    for entry in result.values():  # every entry, whatever its verdict, is strict JSON
        json.dumps(entry, allow_nan=False)
        assert entry["verdict"] == NOT_TESTABLE or len(entry["effects"]) > 0
    return result


def effect(entry: dict, name: str) -> dict:
    return next(e for e in entry["effects"] if e["name"] == name)


# (a) moderate noise raises robust accuracy or transfer over level 0


def test_a_supported_names_the_best_level_and_adjusts_for_every_comparison() -> None:
    a = claims(
        grid({("0.1", "*"): (0.6, 0.7), ("0.2", "*"): (0.6, 0.8), ("0.0", "*"): (0.6, 0.4)})
    )["a"]
    assert a["verdict"] == SUPPORTED
    assert a["best_level"] == "0.2" and a["levels"] == ["0.0", "0.1", "0.2"]
    assert len(a["effects"]) == 4  # 2 intermediate levels x (robust, transfer)
    best = effect(a, "robust 0.2 vs 0.0")
    assert best["effect"] == pytest.approx(0.4)
    assert best["compared"] == pytest.approx({"level 0.2": 0.8, "level 0.0": 0.4})
    assert best["decision_confidence"] == pytest.approx(1 - 0.05 / 4)
    assert best["decision_ci_low"] <= best["ci_low"] <= best["ci_high"] <= best["decision_ci_high"]
    assert best["decision_ci_low"] > 0
    assert effect(a, "transfer 0.2 vs 0.0")["effect"] == pytest.approx(0.0)
    assert "robust 0.2 vs 0.0" in a["reason"]


def test_a_levels_are_sorted_numerically_and_transfer_alone_can_support() -> None:
    levels = ("10", "0", "2")  # as strings 10 < 2; as levels 0 < 2 < 10
    outcomes = grid({("2", "*"): (0.8, 0.6), ("0", "*"): (0.4, 0.6)}, levels=levels)
    a = claims(outcomes, levels=levels)["a"]
    assert a["levels"] == ["0", "2"] and a["best_level"] == "2"
    assert a["verdict"] == SUPPORTED
    assert effect(a, "transfer 2 vs 0")["decision_ci_low"] > 0


def test_a_contradicted_when_every_effect_is_below_zero() -> None:
    a = claims(
        grid({("0.0", "*"): (0.8, 0.8), ("0.1", "*"): (0.4, 0.4), ("0.2", "*"): (0.4, 0.5)})
    )["a"]
    assert a["verdict"] == CONTRADICTED
    assert all(e["decision_ci_high"] < 0 for e in a["effects"])
    assert a["best_level"] == "0.2"


def test_a_inconclusive_when_one_effect_is_below_and_none_above() -> None:
    """Robust accuracy falls but transfer is unchanged: not every effect is below 0."""
    a = claims(
        grid({("0.0", "*"): (0.6, 0.8), ("0.1", "*"): (0.6, 0.4), ("0.2", "*"): (0.6, 0.4)})
    )["a"]
    assert a["verdict"] == INCONCLUSIVE
    transfer = effect(a, "transfer 0.1 vs 0.0")
    assert transfer["decision_ci_low"] == transfer["decision_ci_high"] == 0.0


def test_a_inconclusive_on_identical_models() -> None:
    a = claims(grid({}))["a"]
    assert a["verdict"] == INCONCLUSIVE
    assert all(e["ci_low"] == e["ci_high"] == 0.0 for e in a["effects"])


def test_a_not_testable_without_an_intermediate_level() -> None:
    levels = ("0.0", "0.5")
    result = claims(grid({}, levels=levels), levels=levels)
    assert result["a"]["verdict"] == NOT_TESTABLE and result["a"]["effects"] == []
    assert "strictly between 0.0 and 0.5" in result["a"]["reason"]
    assert result["b"]["verdict"] == INCONCLUSIVE  # (b) needs no intermediate level


def test_a_and_b_not_testable_without_level_zero() -> None:
    levels = ("0.1", "0.2", "0.5")
    result = claims(grid({}, levels=levels), levels=levels)
    for name in "ab":
        assert result[name]["verdict"] == NOT_TESTABLE
        assert "no level 0" in result[name]["reason"]


# (b) the highest level lowers clean performance


@pytest.mark.parametrize(
    ("top", "verdict"), [(0.4, SUPPORTED), (0.8, CONTRADICTED), (0.6, INCONCLUSIVE)]
)
def test_b_compares_clean_accuracy_at_the_highest_level_with_level_zero(
    top: float, verdict: str
) -> None:
    b = claims(grid({("0.5", "*"): (top, 0.6), ("0.1", "*"): (0.0, 0.6)}))["b"]
    assert b["verdict"] == verdict, b["reason"]
    assert b["levels"] == ["0.0", "0.5"]
    (only,) = b["effects"]
    assert only["name"] == "clean 0.5 vs 0.0"
    assert only["effect"] == pytest.approx(top - 0.6)  # level 0.1 plays no part
    assert only["decision_confidence"] == 0.95
    assert (only["decision_ci_low"], only["decision_ci_high"]) == (only["ci_low"], only["ci_high"])


def test_b_not_testable_with_level_zero_only() -> None:
    b = claims(grid({}, levels=("0.0",)), levels=("0.0",))["b"]
    assert b["verdict"] == NOT_TESTABLE and "no level above 0" in b["reason"]


def test_b_needs_no_robust_array() -> None:
    """A model never attacked at eps blocks (a) and (c), naming it, but not (b)."""
    outcomes = grid({})
    outcomes["0.1", "cls", "lp"] = ModelOutcomes(
        "cls", right(0.6, 400), None, {8.0: right(0.6, 200)}, None
    )
    result = claims(outcomes)
    assert result["b"]["verdict"] == INCONCLUSIVE
    for name in "ac":
        assert result[name]["verdict"] == NOT_TESTABLE
        assert "0.1-cls-lp (robust at eps 2.0)" in result[name]["reason"]


# (c) RAN raises robust accuracy over the baselines at a small clean cost


def test_c_supported_over_every_baseline_and_task_with_a_small_clean_loss() -> None:
    tasks = ("cls", "vqa")
    rates = {("*", "ran"): (0.595, 0.8), ("*", "*"): (0.6, 0.4)}  # ran loses 0.5 clean points
    c = claims(grid(rates, tasks=tasks), tasks=tasks)["c"]
    assert c["verdict"] == SUPPORTED, c["reason"]
    assert c["baselines"] == ["lp", "mlp", "nmtune"] and c["missing_baselines"] == []
    assert c["levels"] == list(LEVELS)
    assert len(c["effects"]) == 6
    robust = effect(c, "robust ran vs mlp")
    assert robust["effect"] == pytest.approx(0.4)
    assert robust["compared"] == pytest.approx({"ran": 0.8, "mlp": 0.4})
    assert robust["decision_confidence"] == pytest.approx(1 - 0.05 / 6)
    clean = effect(c, "clean ran vs lp")
    assert clean["effect"] == pytest.approx(-0.005, abs=1e-3)
    assert clean["ci_low"] >= -0.02


def test_c_inconclusive_when_the_clean_loss_may_exceed_the_allowance() -> None:
    rates = {("*", "ran"): (0.595, 0.8), ("*", "*"): (0.6, 0.4)}
    c = claims(grid(rates), max_clean_loss=0.0)["c"]
    assert c["verdict"] == INCONCLUSIVE
    assert "clean ran vs lp" in c["reason"] and "robust ran" not in c["reason"]


@pytest.mark.parametrize("ran", [(0.6, 0.4), (0.4, 0.8)], ids=["robust-below", "clean-loss-beyond"])
def test_c_contradicted(ran: tuple[float, float]) -> None:
    c = claims(grid({("*", "ran"): ran, ("*", "*"): (0.8, 0.6)}))["c"]
    assert c["verdict"] == CONTRADICTED, c["reason"]


def test_c_contradicted_by_one_baseline_among_supporting_ones() -> None:
    rates = {("*", "ran"): (0.6, 0.6), ("*", "lp"): (0.6, 0.8), ("*", "*"): (0.6, 0.2)}
    c = claims(grid(rates))["c"]
    assert c["verdict"] == CONTRADICTED
    assert "robust ran vs lp" in c["reason"] and "ran vs mlp" not in c["reason"]


def test_c_inconclusive_on_identical_models() -> None:
    assert claims(grid({}))["c"]["verdict"] == INCONCLUSIVE


def test_c_uses_the_baselines_present_and_lists_the_absent() -> None:
    methods = ("lp", "ran", "advft")
    c = claims(grid({("*", "ran"): (0.6, 0.8)}, methods=methods), methods=methods)["c"]
    assert c["verdict"] == SUPPORTED
    assert c["baselines"] == ["lp"] and c["missing_baselines"] == ["mlp", "nmtune"]
    assert [e["name"] for e in c["effects"]] == ["robust ran vs lp", "clean ran vs lp"]
    assert c["effects"][0]["decision_confidence"] == pytest.approx(1 - 0.05 / 2)


@pytest.mark.parametrize("methods", [("lp", "mlp", "nmtune"), ("ran", "advft")])
def test_c_not_testable_without_ran_or_any_baseline(methods: tuple[str, ...]) -> None:
    c = claims(grid({}, methods=methods), methods=methods)["c"]
    assert c["verdict"] == NOT_TESTABLE and c["effects"] == []
    assert "needs ran" in c["reason"]


# Missing or inconsistent inputs


def test_a_missing_model_makes_the_claims_that_need_it_not_testable() -> None:
    outcomes = grid({})
    del outcomes["0.5", "cls", "lp"]
    result = claims(outcomes)
    assert result["a"]["verdict"] == INCONCLUSIVE  # (a) does not read the highest level
    for name in "bc":
        assert result[name]["verdict"] == NOT_TESTABLE
        assert "0.5-cls-lp (outcomes)" in result[name]["reason"]


def test_unequal_seed_counts_are_not_testable() -> None:
    outcomes = grid({})
    outcomes["0.0", "cls", "ran"] = ModelOutcomes(
        "cls", np.ones((2, 400)), None, {EPS: np.ones((2, 200))}, None
    )
    result = claims(outcomes)
    assert all(result[name]["verdict"] == NOT_TESTABLE for name in "abc")
    assert "number of seeds" in result["a"]["reason"]


def test_an_undefined_number_is_none_in_the_json() -> None:
    outcomes = grid({})
    outcomes["0.5", "cls", "lp"].clean[0, 0] = np.nan
    b = claims(outcomes)["b"]
    assert b["verdict"] == INCONCLUSIVE
    assert b["effects"][0]["effect"] is None and b["effects"][0]["ci_low"] is None
    assert b["effects"][0]["compared"]["level 0.5"] is None


def test_claims_at_an_eps_no_model_was_attacked_at_are_not_testable_and_say_so() -> None:
    result = claims(grid({}), eps=4.0)  # the models were attacked at 2/255 only
    for name in ("a", "c"):
        assert result[name]["verdict"] == NOT_TESTABLE
        assert result[name]["reason"] == "no model was attacked at 4/255 (not in eval_robust.eps)."
    assert result["b"]["verdict"] != NOT_TESTABLE  # clean accuracy only
    assert "4/255" in result["c"]["claim"] and "0.02 of clean accuracy" in result["c"]["claim"]


DEFENDED = (*METHODS, "fare", "tecoa")


@pytest.mark.parametrize(
    ("fare", "verdict"),
    [((0.6, 0.3), SUPPORTED), ((0.6, 0.8), CONTRADICTED), ((0.6, 0.6), INCONCLUSIVE)],
)
def test_d_compares_ran_with_the_encoder_tuning_defenses(
    fare: tuple[float, float], verdict: str
) -> None:
    rates = {("*", "ran"): (0.6, 0.6), ("*", "fare"): fare, ("*", "tecoa"): (0.6, 0.3)}
    d = claims(grid(rates, methods=DEFENDED), methods=DEFENDED)["d"]
    assert d["verdict"] == verdict, d["reason"]
    assert d["baselines"] == ["fare", "tecoa"] and d["missing_baselines"] == []
    assert effect(d, "clean ran vs fare")["effect"] == pytest.approx(0.0)


def test_d_not_testable_without_fare_or_tecoa() -> None:
    d = claims(grid({}))["d"]
    assert d["verdict"] == NOT_TESTABLE and "fare, tecoa" in d["reason"]
