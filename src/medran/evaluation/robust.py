"""Robust evaluation: accuracy under white-box PGD per eps, with gradient-masking checks.

Budgets here are in 1/255 units (as params and reports state them). Predictions and
correctness are functions, so one routine serves multi-class (argmax), multi-label (positive
logits, exact match) and VQA (answer index). DESIGN §7: robust accuracy must fall with eps and
reach near zero at a large eps, and PGD must be at least as strong as FGSM; a report that
fails one of these is flagged as possible gradient masking rather than trusted.

A model with a second input the attack cannot touch (VQA's question) keeps what that input
alone gets right however large eps is, so "near zero" is measured against its image-blind
accuracy: the same examples answered with another example's image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from medran.errors import InputError
from medran.evaluation.pgd import LossFn, eval_mode, fgsm, pgd

log = logging.getLogger(__name__)

# logits -> predictions; (predictions, targets) -> (B,) bool, True where right.
Predict = Callable[[torch.Tensor], torch.Tensor]
Correct = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def argmax_predict(logits: torch.Tensor) -> torch.Tensor:
    """Multi-class and VQA: the highest-scoring class (answer) index."""
    return logits.argmax(dim=-1)


def multilabel_predict(logits: torch.Tensor) -> torch.Tensor:
    """Multi-label: every label whose logit is positive (probability above 0.5)."""
    return logits > 0


def default_correct(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) bool: an index equals its target; a label vector is right only if every label is
    (exact match), so one flipped label counts as a successful attack on that example."""
    equal = predictions == targets.to(predictions.dtype)
    return equal.reshape(equal.shape[0], -1).all(dim=1)


@dataclass(frozen=True)
class RobustReport:
    """Robust evaluation of one model. Every eps is in 1/255 units; accuracies in [0, 1].

    ``robust_accuracy[e]`` counts an example as robust when it is right on the clean image and
    on PGD's image (so it never exceeds the clean accuracy); ``attack_success_rate[e]`` is the
    fraction of initially right examples that PGD flips (NaN when none is right).
    ``blind_accuracy`` (models with a context input only) counts examples right on the clean
    image and with the image of another example. ``checks`` are the gradient-masking sanity
    checks, True when passed.
    """

    n: int
    clean_accuracy: float
    robust_accuracy: dict[float, float]
    fgsm_accuracy: dict[float, float]
    attack_success_rate: dict[float, float]
    checks: dict[str, bool]
    blind_accuracy: float | None = None

    @property
    def gradient_masking_suspected(self) -> bool:
        return not all(self.checks.values())

    def as_metrics(self) -> dict[str, float]:
        """Flat plain floats for MLflow and the metrics JSON."""
        out = {"n": float(self.n), "clean_accuracy": self.clean_accuracy}
        for eps in sorted(self.robust_accuracy):
            out[f"robust_accuracy_eps{eps:g}"] = self.robust_accuracy[eps]
            out[f"fgsm_accuracy_eps{eps:g}"] = self.fgsm_accuracy[eps]
            out[f"attack_success_rate_eps{eps:g}"] = self.attack_success_rate[eps]
        if self.blind_accuracy is not None:
            out["blind_accuracy"] = self.blind_accuracy
        out.update({f"check_{name}": float(ok) for name, ok in self.checks.items()})
        out["gradient_masking_suspected"] = float(self.gradient_masking_suspected)
        return out


def robust_metrics(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    loss_fn: LossFn,
    eps_list: Sequence[float],
    *,
    steps: int = 10,
    step_fraction: float = 0.25,
    restarts: int = 1,
    large_eps: float = 32.0,
    near_zero: float = 0.1,
    tolerance: float = 0.02,
    predict: Predict = argmax_predict,
    correct: Correct = default_correct,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> RobustReport:
    """White-box PGD and FGSM at each eps (1/255 units) plus a large sanity eps.

    Each batch is a mapping with ``images`` (B, 3, H, W) in [0, 1], ``targets`` and optional
    ``context`` (a tensor or a tuple/dict of tensors, batch first), and the model is called as
    ``model(images)`` or ``model(images, context)`` in eval mode. Only initially right
    examples are attacked. The PGD step is ``step_fraction * eps`` (0.25 with 10 steps is
    Madry's 2.5 * eps / steps). Checks, True when passed: robust accuracy does not rise with
    eps (from the clean accuracy on); it is at most ``near_zero`` (or, with a context, the
    blind accuracy + ``tolerance`` if higher) at ``large_eps``; PGD is at least as strong as
    FGSM at every eps. ``tolerance`` (2 points) absorbs the noise of random
    starts on a few hundred examples; gradient masking shows as gaps of tens of points.
    """
    eps_all = _check_eps(eps_list, large_eps, steps, step_fraction, restarts)
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    attacker = _Attacker(model, loss_fn, predict, correct, steps, step_fraction, restarts, seed)
    n = n_right = 0
    blind_right: int | None = None
    pgd_right = dict.fromkeys(eps_all, 0)
    fgsm_right = dict.fromkeys(eps_all, 0)
    with eval_mode(model):
        for batch in batches:
            images, targets = _to(batch["images"], device), _to(batch["targets"], device)
            context = _to(batch.get("context"), device)
            right, blind, pgd_counts, fgsm_counts = attacker.batch(
                images, targets, context, eps_all
            )
            n, n_right = n + len(images), n_right + right
            if blind is not None:
                blind_right = (blind_right or 0) + blind
            for eps in eps_all:
                pgd_right[eps] += pgd_counts.get(eps, 0)
                fgsm_right[eps] += fgsm_counts.get(eps, 0)
    if n == 0:
        raise InputError("robust_metrics got no examples")
    blind = None if blind_right is None else blind_right / n
    return _report(n, n_right, pgd_right, fgsm_right, large_eps, near_zero, tolerance, blind)


class _Attacker:
    """One model's attack settings; one random stream shared by every batch and eps."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        predict: Predict,
        correct: Correct,
        steps: int,
        step_fraction: float,
        restarts: int,
        seed: int,
    ):
        self.model, self.loss_fn = model, loss_fn
        self.predict, self.correct = predict, correct
        self.steps, self.step_fraction, self.restarts = steps, step_fraction, restarts
        self.generator = torch.Generator().manual_seed(seed)

    def fooled(self, logits: torch.Tensor, targets: Any) -> torch.Tensor:
        return ~self.correct(self.predict(logits), targets).bool()

    def batch(
        self, images: torch.Tensor, targets: Any, context: Any, eps_all: list[float]
    ) -> tuple[int, int | None, dict[float, int], dict[float, int]]:
        """(# right on clean, # of those also right blind, # still right after PGD per eps,
        same after FGSM). Blind (models with a context only): each example sees the image of
        the next one in the batch (a batch of one keeps its own, which errs lenient)."""
        with torch.no_grad():
            right = ~self.fooled(_call(self.model, images, context), targets)
            blind = None
            if context is not None:
                rolled = _call(self.model, images.roll(1, dims=0), context)
                blind = int((right & ~self.fooled(rolled, targets)).sum())
        if not right.any():
            return 0, blind, {}, {}
        # Only initially right examples are attacked: the others are wrong whatever happens.
        keep = right.nonzero().squeeze(1)
        x, y, c = images[keep], _index(targets, keep), _index(context, keep)

        def forward(adv: torch.Tensor) -> torch.Tensor:
            return _call(self.model, adv, c)

        pgd_right, fgsm_right = {}, {}
        for eps in eps_all:
            e, step = eps / 255, self.step_fraction * eps / 255
            adv = pgd(
                forward,
                self.loss_fn,
                x,
                y,
                e,
                step,
                self.steps,
                restarts=self.restarts,
                generator=self.generator,
                success=self.fooled,
            )
            with torch.no_grad():
                pgd_right[eps] = int((~self.fooled(forward(adv), y)).sum())
            adv = fgsm(forward, self.loss_fn, x, y, e)
            with torch.no_grad():
                fgsm_right[eps] = int((~self.fooled(forward(adv), y)).sum())
        return int(right.sum()), blind, pgd_right, fgsm_right


def _check_eps(
    eps_list: Sequence[float], large_eps: float, steps: int, step_fraction: float, restarts: int
) -> list[float]:
    eps_all = [*eps_list, large_eps]
    bad = [e for e in eps_all if not 0 < e <= 255]
    if bad or not eps_list:
        raise InputError(
            f"eps values must be in (0, 255] (1/255 units), got eps_list={list(eps_list)}, "
            f"large_eps={large_eps}"
        )
    if large_eps < max(eps_list):
        raise InputError(f"large_eps={large_eps} must be at least the largest eps {max(eps_list)}")
    if steps < 1 or restarts < 1 or not 0 < step_fraction * max(eps_all) <= 255:
        raise InputError(
            f"need steps >= 1, restarts >= 1 and step_fraction in (0, 255 / max eps]; got "
            f"steps={steps}, restarts={restarts}, step_fraction={step_fraction}"
        )
    return sorted(set(eps_all))


def _report(
    n: int,
    n_right: int,
    pgd_right: dict[float, int],
    fgsm_right: dict[float, int],
    large_eps: float,
    near_zero: float,
    tolerance: float,
    blind: float | None = None,
) -> RobustReport:
    robust = {e: k / n for e, k in pgd_right.items()}
    fgsm_acc = {e: k / n for e, k in fgsm_right.items()}
    success = {e: 1 - k / n_right if n_right else math.nan for e, k in pgd_right.items()}
    curve = [n_right / n] + [robust[e] for e in sorted(robust)]
    checks = {
        "monotonic": all(b <= a + tolerance for a, b in pairwise(curve)),
        "near_zero_at_large_eps": robust[large_eps] <= max(near_zero, (blind or 0) + tolerance),
        "pgd_at_least_fgsm": all(robust[e] <= fgsm_acc[e] + tolerance for e in robust),
    }
    report = RobustReport(n, n_right / n, robust, fgsm_acc, success, checks, blind)
    if report.gradient_masking_suspected:
        failed = sorted(name for name, ok in checks.items() if not ok)
        log.warning(
            "gradient masking suspected: failed checks %s; robust accuracy %s", failed, robust
        )
    return report


def _call(model: nn.Module, images: torch.Tensor, context: Any) -> torch.Tensor:
    return model(images) if context is None else model(images, context)


def _to(value: Any, device: torch.device | str) -> Any:
    return _map(value, lambda t: t.to(device))


def _index(value: Any, keep: torch.Tensor) -> Any:
    return _map(value, lambda t: t[keep])


def _map(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a tensor, mapping, (named) tuple or list."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(_map(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map(v, fn) for v in value)
    return value
