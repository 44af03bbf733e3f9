"""AUROC without scikit-learn (importing it costs each process a second of start-up), and
without torch, so the report can bootstrap it."""

from __future__ import annotations

import numpy as np


def auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of binary ``truth``: the Mann-Whitney statistic, ties
    counting a half (as sklearn's ``roc_auc_score``)."""
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    group = np.repeat(np.arange(len(starts)), ends - starts)
    ranks = np.empty(len(scores))
    ranks[order] = ((starts + ends + 1) / 2.0)[group]  # the average 1-based rank of each tie
    positive = truth.astype(bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Mean one-vs-rest AUROC over columns of ``truth`` (N, C) that hold both 0 and 1."""
    values = [
        auroc(truth[:, c], scores[:, c])
        for c in range(truth.shape[1])
        if 0 < truth[:, c].sum() < len(truth)
    ]
    return {
        "auroc": float(np.mean(values)) if values else float("nan"),
        "auroc_classes": float(len(values)),
        "auroc_skipped": float(truth.shape[1] - len(values)),
    }
