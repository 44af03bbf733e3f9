"""Robust evaluation: accuracy under white-box PGD per eps, with gradient-masking checks.

Budgets here are in 1/255 units (as params and reports state them). Predictions and
correctness are functions, so one routine serves multi-class (argmax), multi-label (positive
logits, exact match) and VQA (answer index). Robust accuracy must reach
near zero at a large eps, and PGD must be at least as strong as FGSM (docs/architecture.md,
"Evaluation"); a report that fails one of these is flagged as possible gradient masking
rather than trusted.

A model with a second input the attack cannot touch (VQA's question) keeps what that input
alone gets right however large eps is, so "near zero" is measured against its image-blind
accuracy: the same examples answered with another example's image.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from medran.attacks.pgd import Budget, eval_mode, fgsm, per_example_loss, pgd
from medran.contracts import BLIND_ACCURACY, CLEAN_ACCURACY, GRADIENT_MASKING, robust_accuracy_key
from medran.errors import InputError

if TYPE_CHECKING:
    from medran.params import EvalRobustParams

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """What the evaluation needs from a task (every ``medran.tasks.Task`` is one): the loss
    the attack ascends, and when a prediction counts as right."""

    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def predict(self, logits: torch.Tensor) -> torch.Tensor: ...

    def correct(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class RobustReport:
    """Robust evaluation of one model. Every eps is in 1/255 units; accuracies in [0, 1].

    ``robust_accuracy[e]`` counts an example as robust when it is right on the clean image and
    on PGD's image (so it never exceeds the clean accuracy); ``attack_success_rate[e]`` is the
    fraction of initially right examples that PGD flips (NaN when none is right).
    ``blind_accuracy`` counts examples right on the clean image and with the image of another
    example: what the model gets without looking at the right image. ``checks`` are the
    gradient-masking sanity checks, True when passed. ``outcomes`` holds the same per example
    (0/1, in batch order) under the metrics' keys, for the report's confidence intervals.
    """

    n: int
    clean_accuracy: float
    robust_accuracy: dict[float, float]
    fgsm_accuracy: dict[float, float]
    attack_success_rate: dict[float, float]
    checks: dict[str, bool]
    blind_accuracy: float | None = None
    outcomes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def gradient_masking_suspected(self) -> bool:
        return not all(self.checks.values())

    def as_metrics(self) -> dict[str, float]:
        """Flat plain floats for MLflow and the metrics JSON."""
        out = {"n": float(self.n), CLEAN_ACCURACY: self.clean_accuracy}
        for eps in sorted(self.robust_accuracy):
            out[robust_accuracy_key(eps)] = self.robust_accuracy[eps]
            out[f"fgsm_accuracy_eps{eps:g}"] = self.fgsm_accuracy[eps]
            out[f"attack_success_rate_eps{eps:g}"] = self.attack_success_rate[eps]
        if self.blind_accuracy is not None:
            out[BLIND_ACCURACY] = self.blind_accuracy
        out.update({f"check_{name}": float(ok) for name, ok in self.checks.items()})
        out[GRADIENT_MASKING] = float(self.gradient_masking_suspected)
        return out


def robust_metrics(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    task: Scorer,
    params: EvalRobustParams,
    device: torch.device | str | None = None,
) -> RobustReport:
    """White-box PGD and FGSM at each of ``params.eps`` (1/255 units) plus ``params.large_eps``.

    Each batch is a mapping with ``images`` (B, 3, H, W) in [0, 1], ``targets`` and optional
    ``context`` (a tensor or a tuple/dict of tensors, batch first), and the model is called as
    ``model(images)`` or ``model(images, context)`` in eval mode. Only examples ``task`` scores
    right on the clean image are attacked, with random starts from a generator seeded by
    ``params.seed``. The PGD step is ``step_fraction * eps`` (0.25 with 10 steps is Madry's
    2.5 * eps / steps). Robust accuracy is the per-example worst case over the budgets up to
    eps, so it never rises with eps. Checks, True when passed: robust accuracy is at most
    ``near_zero`` (or, with a context, the blind accuracy + ``tolerance`` if higher) at
    ``large_eps``; PGD is at least as strong as FGSM at every eps. ``tolerance`` absorbs the
    noise of random starts on a few hundred examples; gradient masking shows as gaps of tens
    of points.
    """
    eps_all = _check_eps(params)
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    attacker = _Attacker(model, task, params)
    parts = []
    with eval_mode(model):
        for batch in batches:
            images, targets = _to(batch["images"], device), _to(batch["targets"], device)
            context = _to(batch.get("context"), device)
            parts.append(attacker.batch(images, targets, context, eps_all))
    if not sum(p.n for p in parts):
        raise InputError("robust_metrics got no examples")
    return _report(_Tally.concat(parts), params)


@dataclass
class _Tally:
    """Per example (bool): right on clean, still right after PGD and after FGSM per eps, and
    right on clean and with another example's image."""

    right: torch.Tensor
    pgd: dict[float, torch.Tensor]
    fgsm: dict[float, torch.Tensor]
    blind: torch.Tensor | None = None
    context: bool = False  # the model has an input the attack cannot touch (VQA's question)

    @property
    def n(self) -> int:
        return len(self.right)

    @classmethod
    def concat(cls, parts: list[_Tally]) -> _Tally:
        cat = torch.cat
        blind = None if parts[0].blind is None else cat([p.blind for p in parts])
        return cls(
            cat([p.right for p in parts]),
            {e: cat([p.pgd[e] for p in parts]) for e in parts[0].pgd},
            {e: cat([p.fgsm[e] for p in parts]) for e in parts[0].fgsm},
            blind,
            parts[0].context,
        )


@dataclass
class _Attacker:
    """One model's attack settings; one random stream shared by every batch and eps."""

    model: nn.Module
    task: Scorer
    params: EvalRobustParams
    generator: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.params.seed)

    def fooled(self, logits: torch.Tensor, targets: Any) -> torch.Tensor:
        return ~self.task.correct(self.task.predict(logits), targets).bool()

    def batch(
        self, images: torch.Tensor, targets: Any, context: Any, eps_all: list[float]
    ) -> _Tally:
        """This batch's outcomes. Blind: each example sees the image of the next one in the
        batch (a batch of one keeps its own, which errs lenient)."""
        with torch.no_grad():
            right = ~self.fooled(_call(self.model, images, context), targets).cpu()
            rolled = _call(self.model, images.roll(1, dims=0), context)
            blind = right & ~self.fooled(rolled, targets).cpu()
        pgd_right = {eps: torch.zeros_like(right) for eps in eps_all}
        fgsm_right = {eps: torch.zeros_like(right) for eps in eps_all}
        # Budgets in ascending order, each attacking only what the smaller ones left right: an
        # example broken inside a smaller L-inf ball is broken inside every larger one, so
        # robust accuracy is the per-example worst case over budgets up to eps, and the
        # attack's cost falls quickly on non-robust models. Examples wrong on the clean image
        # are never attacked.
        alive = right.clone()
        for eps in eps_all:
            keep = alive.nonzero().squeeze(1)
            if not len(keep):
                break
            x, y, c = images[keep], _index(targets, keep), _index(context, keep)
            pgd_right[eps][keep], fgsm_right[eps][keep] = self.still_right(x, y, c, eps)
            alive = pgd_right[eps]
        return _Tally(right, pgd_right, fgsm_right, blind, context is not None)

    def still_right(
        self, x: torch.Tensor, y: Any, context: Any, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example of ``x``: still right after PGD, after FGSM, at ``eps`` (1/255 units)."""
        loss_fn = self.task.loss_fn

        def forward(adv: torch.Tensor) -> torch.Tensor:
            return _call(self.model, adv, context)

        def score(adv: torch.Tensor) -> torch.Tensor:
            return loss_fn(forward(adv), y)

        def rank(adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = forward(adv)
            return self.fooled(logits, y), per_example_loss(loss_fn, logits, y)

        def right(adv: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return (~self.fooled(forward(adv), y)).cpu()

        p = self.params
        budget = Budget(eps / 255, p.step_fraction * eps / 255, p.steps, True, p.restarts)
        after_pgd = right(pgd(score, x, budget, self.generator, rank))
        return after_pgd, right(fgsm(score, x, eps / 255))


def _check_eps(params: EvalRobustParams) -> list[float]:
    """The budgets to attack at, sorted; bad ones fail before any work (``params`` may be
    built without validation, e.g. by ``model_copy``)."""
    eps_list, large_eps = list(params.eps), params.large_eps
    eps_all = [*eps_list, large_eps]
    bad = [e for e in eps_all if not 0 < e <= 255]
    if bad or not eps_list:
        raise InputError(
            f"eps values must be in (0, 255] (1/255 units), got eps_list={eps_list}, "
            f"large_eps={large_eps}"
        )
    if large_eps < max(eps_list):
        raise InputError(f"large_eps={large_eps} must be at least the largest eps {max(eps_list)}")
    steps, restarts, step_fraction = params.steps, params.restarts, params.step_fraction
    if steps < 1 or restarts < 1 or not 0 < step_fraction * max(eps_all) <= 255:
        raise InputError(
            f"need steps >= 1, restarts >= 1 and step_fraction in (0, 255 / max eps]; got "
            f"steps={steps}, restarts={restarts}, step_fraction={step_fraction}"
        )
    return sorted(set(eps_all))


def _report(tally: _Tally, params: EvalRobustParams) -> RobustReport:
    n, n_right, tolerance = tally.n, int(tally.right.sum()), params.tolerance
    blind = None if tally.blind is None else int(tally.blind.sum()) / n
    robust = {e: int(k.sum()) / n for e, k in tally.pgd.items()}
    fgsm_acc = {e: int(k.sum()) / n for e, k in tally.fgsm.items()}
    success = {e: 1 - int(k.sum()) / n_right if n_right else math.nan for e, k in tally.pgd.items()}
    # Whatever a second input (the question) answers alone survives any image attack.
    near_zero = max(params.near_zero, (blind or 0) + tolerance if tally.context else 0)
    checks = {
        "near_zero_at_large_eps": robust[params.large_eps] <= near_zero,
        "pgd_at_least_fgsm": all(robust[e] <= fgsm_acc[e] + tolerance for e in robust),
    }
    outcomes = {CLEAN_ACCURACY: tally.right}
    outcomes |= {robust_accuracy_key(e): k for e, k in tally.pgd.items()}
    if tally.blind is not None:
        outcomes[BLIND_ACCURACY] = tally.blind
    outcomes = {k: v.numpy().astype(np.uint8) for k, v in outcomes.items()}
    report = RobustReport(n, n_right / n, robust, fgsm_acc, success, checks, blind, outcomes)
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
