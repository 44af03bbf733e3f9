"""The classification metrics agree with scikit-learn's reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from medran.evaluation.auroc import auroc
from medran.tasks.cls import _f1


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 200)
    truth[:2] = [0, 1]
    scores = np.round(rng.random(200) + 0.3 * truth, 1)  # rounding makes many ties
    assert auroc(truth, scores) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)


def test_auroc_extremes() -> None:
    truth = np.array([0, 0, 1, 1])
    assert auroc(truth, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auroc(truth, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auroc(truth, np.full(4, 0.5)) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, predicted = rng.integers(0, 5, 60), rng.integers(1, 6, 60)  # 0 never predicted
    expected = f1_score(labels, predicted, average="macro", zero_division=0)
    assert _f1(labels, predicted) == pytest.approx(expected, abs=1e-12)
    truth, pred = rng.integers(0, 2, (60, 4)), rng.integers(0, 2, (60, 4))
    pred[:, 3] = 0  # a label never predicted scores 0
    expected = f1_score(truth, pred, average="macro", zero_division=0)
    assert _f1(truth, pred) == pytest.approx(expected, abs=1e-12)
