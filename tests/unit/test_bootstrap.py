"""The bootstrap's intervals against cases small enough to compute by hand: the percentile
rule, the exact resampling distribution over examples and over seeds, the seeded stream, and
pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medran.evaluation.bootstrap import Draw, Estimate, bootstrap, mean_outcome

DRAWS = 4000


def test_interval_is_numpys_linear_percentile() -> None:
    """Samples 0..100: the q-quantile is at position 100 q, which is the value itself."""
    estimate = Estimate(50.0, np.arange(101.0))
    assert estimate.interval() == pytest.approx((2.5, 97.5), abs=1e-12)
    assert estimate.interval(0.5) == pytest.approx((25.0, 75.0), abs=1e-12)
    assert estimate.as_dict() == pytest.approx({"value": 50.0, "ci_low": 2.5, "ci_high": 97.5})


def test_interval_of_an_undefined_statistic_is_nan() -> None:
    low, high = Estimate(math.nan, np.arange(10.0)).interval()
    assert math.isnan(low) and math.isnan(high)
    low, high = Estimate(0.5, np.empty(0)).interval()
    assert math.isnan(low) and math.isnan(high)


def _exact_coin(estimate: Estimate) -> None:
    """The mean of two resampled 0/1 outcomes [0, 1]: 0, 0.5, 1 with p 1/4, 1/2, 1/4."""
    assert estimate.value == 0.5
    assert set(np.unique(estimate.samples)) == {0.0, 0.5, 1.0}
    assert 0.47 <= np.mean(estimate.samples == 0.5) <= 0.53
    assert 0.22 <= np.mean(estimate.samples == 0.0) <= 0.28
    # 1/4 of the mass sits on each end, so both 2.5% tails fall on the extremes.
    assert estimate.interval() == (0.0, 1.0)


def test_two_examples_one_seed_resamples_the_examples() -> None:
    values = np.array([[0.0, 1.0]])
    _exact_coin(bootstrap(mean_outcome(values, "s"), {"s": 2}, 1, DRAWS, seed=0))


def test_one_example_two_seeds_resamples_the_seeds() -> None:
    values = np.array([[0.0], [1.0]])
    _exact_coin(bootstrap(mean_outcome(values, "s"), {"s": 1}, 2, DRAWS, seed=0))


def test_the_stream_is_seeded() -> None:
    values = np.random.default_rng(0).integers(0, 2, (3, 50)).astype(float)

    def run(seed: int) -> np.ndarray:
        return bootstrap(mean_outcome(values, "s"), {"s": 50}, 3, 200, seed).samples

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_draws_resample_every_example_set_and_the_seeds() -> None:
    seen: list[Draw] = []

    def statistic(draw: Draw) -> float:
        seen.append(draw)
        return 0.0

    bootstrap(statistic, {"a": 5, "b": 7}, 3, 10, seed=0)
    observed, *draws = seen[::-1]  # the observed data is scored last
    assert len(draws) == 10
    np.testing.assert_array_equal(observed.examples["b"], np.arange(7))
    np.testing.assert_array_equal(observed.seeds, np.arange(3))
    for draw in draws:
        assert draw.examples["a"].shape == (5,) and draw.examples["b"].shape == (7,)
        assert draw.seeds.shape == (3,) and draw.seeds.max() < 3
    assert any(not np.array_equal(d.examples["b"], np.arange(7)) for d in draws)


def test_paired_difference_of_identical_models_is_zero_on_every_draw() -> None:
    """Both models see the same draw, so the example-to-example spread cancels."""
    one = np.random.default_rng(0).integers(0, 2, (3, 100)).astype(float)
    two = one.copy()

    def difference(draw: Draw) -> float:
        return float(draw.take(one, "s").mean() - draw.take(two, "s").mean())

    estimate = bootstrap(difference, {"s": 100}, 3, 500, seed=0)
    assert estimate.value == 0.0
    np.testing.assert_array_equal(estimate.samples, np.zeros(500))
    assert estimate.interval() == (0.0, 0.0)
    # A model that differs on one example does not cancel: the check above can fail.
    two[:, 0] = 1 - two[:, 0]
    assert np.any(bootstrap(difference, {"s": 100}, 3, 500, seed=0).samples != 0)
