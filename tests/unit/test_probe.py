"""The linear probe: the same fit and AUROC as scikit-learn's logistic regression, on
multi-class and multi-label data; pixel features; a clear error for an empty split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medran.data.errors import DataError
from medran.evaluation.probe import pixel_features, probe_auroc

L2 = 1e-2


def _data(n: int, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first dimensions shift with the class, plus noise dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 8))
    x[:, :classes] += 0.8 * np.eye(classes)[y]
    return x, y


def _sklearn(n_train: int) -> LogisticRegression:
    # sklearn minimises C * sum(loss) + 0.5 |W|^2; ours mean(loss) + L2 |W|^2.
    return LogisticRegression(C=1 / (2 * L2 * n_train), max_iter=2000, tol=1e-10)


def test_multiclass_probe_matches_sklearn() -> None:
    (x, y), (xt, yt) = _data(300, 0), _data(200, 1)
    mean, std = x.mean(0), x.std(0, ddof=1)
    reference = _sklearn(len(x)).fit((x - mean) / std, y)
    expected = roc_auc_score(
        yt, reference.predict_proba((xt - mean) / std), average="macro", multi_class="ovr"
    )
    train = (torch.tensor(x), torch.tensor(y))
    ours = probe_auroc(train, (torch.tensor(xt), torch.tensor(yt)), L2, max_iter=200)
    assert 0.6 < ours < 1.0
    assert ours == pytest.approx(expected, abs=1e-4)


def test_multilabel_probe_matches_sklearn_per_label() -> None:
    (x, y), (xt, yt) = _data(300, 2), _data(200, 3)
    hot, hot_t = np.eye(3)[y], np.eye(3)[yt]
    hot[::4, 0] = hot_t[::4, 0] = 1  # some rows carry two labels
    mean, std = x.mean(0), x.std(0, ddof=1)
    per_label = []
    for c in range(3):
        reference = _sklearn(len(x)).fit((x - mean) / std, hot[:, c])
        scores = reference.decision_function((xt - mean) / std)
        per_label.append(roc_auc_score(hot_t[:, c], scores))
    train = (torch.tensor(x), torch.tensor(hot))
    ours = probe_auroc(train, (torch.tensor(xt), torch.tensor(hot_t)), L2, max_iter=200)
    assert ours == pytest.approx(np.mean(per_label), abs=1e-4)


def test_pixel_features_average_grey_levels() -> None:
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    images[1, :, :4, :4] = 255  # the top-left quarter white
    features = pixel_features(images, 2)
    assert features.shape == (2, 4)
    assert features[0].tolist() == [0, 0, 0, 0]
    assert features[1].tolist() == [1, 0, 0, 0]


def test_an_empty_split_is_named() -> None:
    x, y = torch.randn(10, 4), torch.arange(10) % 2
    with pytest.raises(DataError, match="the probe's test split has 0 feature rows"):
        probe_auroc((x, y), (x[:0], y[:0]), L2, max_iter=10)
