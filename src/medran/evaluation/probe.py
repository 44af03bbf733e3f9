"""Does an encoder carry the downstream signal? A linear probe's macro AUROC, on its frozen
features and, as the bar it must clear, on raw pixels.

The probe is L2-regularised logistic regression on standardised features, fitted full-batch
with L-BFGS in float64, so it is deterministic and needs no learning rate: softmax over the
classes for a multi-class task, one sigmoid per label for a multi-label one. AUROC is
one-vs-rest per class, averaged over the classes whose test labels hold both values
(``medran.evaluation.auroc.macro_auroc``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from medran.data.errors import DataError
from medran.evaluation.auroc import macro_auroc


def pixel_features(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> (N, size * size): grey levels averaged down to ``size`` x ``size``."""
    grey = images.float().div(255.0).mean(dim=1, keepdim=True)
    return F.adaptive_avg_pool2d(grey, size).flatten(1)


def fit_probe(
    x: torch.Tensor, targets: torch.Tensor, l2: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, bias, feature mean, feature std) of the probe fitted on ``x``.

    ``targets`` are class indices (N,) for softmax regression or a 0/1 matrix (N, C) for one
    sigmoid per label; ``l2`` weighs the squared weights (not the bias) against the mean loss.
    """
    x = x.double()
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-8)
    z = (x - mean) / std
    multi_label = targets.ndim == 2
    n_out = targets.shape[1] if multi_label else int(targets.max()) + 1
    weight = torch.zeros(z.shape[1], n_out, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_out, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = z @ weight + bias
        if multi_label:  # independent per-label regressions: sum over labels, mean over rows
            bce = F.binary_cross_entropy_with_logits(logits, targets.double(), reduction="sum")
            loss = bce / len(z)
        else:
            loss = F.cross_entropy(logits, targets)
        loss = loss + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def probe_scores(probe: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
    """(N, C) logits of a fitted probe."""
    weight, bias, mean, std = probe
    return ((x.double() - mean) / std) @ weight + bias


def probe_auroc(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    l2: float,
    max_iter: int,
) -> float:
    """Macro one-vs-rest AUROC on ``test`` of a probe fitted on ``train`` ((features,
    targets) each, targets as :func:`fit_probe` takes them)."""
    for name, (x, y) in (("train", train), ("test", test)):
        if len(x) == 0 or len(x) != len(y):
            raise DataError(
                f"the probe's {name} split has {len(x)} feature rows and {len(y)} labels; "
                "it needs at least one labelled row"
            )
    x_train, y_train = train
    x_test, y_test = test
    scores = probe_scores(fit_probe(x_train, y_train, l2, max_iter), x_test)
    if y_test.ndim == 1:  # class indices -> one-hot, softmax scores
        scores = scores.softmax(dim=1)
        y_test = F.one_hot(y_test, scores.shape[1])
    return macro_auroc(y_test.numpy(), scores.numpy())["auroc"]
