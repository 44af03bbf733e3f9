"""Robust evaluation: accuracy under a preset of white-box attacks per eps, with
gradient-masking checks.

Budgets here are in 1/255 units (as params and reports state them). The attacks are
``medran.evaluation.protocol``'s. Predictions and correctness are functions, so one routine
serves multi-class (argmax), multi-label (positive logits, exact match) and VQA (answer
index). Robust accuracy must reach near zero at a large eps, the attacks must be at least as
strong as FGSM, and the model's output must depend on its image (docs/study.md, "Robust
protocol"); a report that fails one of these is flagged as possible gradient masking rather
than trusted.

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

from medran.attacks.pgd import eval_mode, fgsm
from medran.contracts import (
    BLIND_ACCURACY,
    CLEAN_ACCURACY,
    GRADIENT_MASKING,
    ZERO_GRADIENT,
    robust_accuracy_key,
)
from medran.errors import InputError
from medran.evaluation.protocol import RobustProtocol, Victim, example_loss

if TYPE_CHECKING:
    from medran.params import EvalRobustParams, PresetParams

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
    no attack at a budget up to e broke it (so it never exceeds the clean accuracy);
    ``attack_success_rate[e]`` is the fraction of initially right examples broken (NaN when
    none is right). ``blind_accuracy`` counts examples right on the clean image and with the
    image of another example: what the model gets without looking at the right image.
    ``zero_gradient`` is the fraction of examples whose logits do not move with their image.
    ``checks`` are the gradient-masking sanity checks, True when passed. ``outcomes`` holds the
    same per example (0/1, in batch order) under the metrics' keys, for the report's intervals.
    """

    n: int
    clean_accuracy: float
    robust_accuracy: dict[float, float]
    fgsm_accuracy: dict[float, float]
    attack_success_rate: dict[float, float]
    checks: dict[str, bool]
    blind_accuracy: float
    zero_gradient: float
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
        out[BLIND_ACCURACY] = self.blind_accuracy
        out[ZERO_GRADIENT] = self.zero_gradient
        out.update({f"check_{name}": float(ok) for name, ok in self.checks.items()})
        out[GRADIENT_MASKING] = float(self.gradient_masking_suspected)
        return out


def robust_metrics(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    task: Scorer,
    params: EvalRobustParams,
    device: torch.device | str | None = None,
    preset: PresetParams | None = None,
) -> RobustReport:
    """The attacks of ``preset`` (default: ``params.protocol``) and FGSM at each of
    ``params.eps`` (1/255 units) plus ``params.large_eps``.

    Each batch is a mapping with ``images`` (B, 3, H, W) in [0, 1], ``targets`` and optional
    ``context`` (a tensor or a tuple/dict of tensors, batch first), and the model is called as
    ``model(images)`` or ``model(images, context)`` in eval mode. Only examples ``task`` scores
    right on the clean image are attacked, with random starts from a generator seeded by
    ``params.seed``. Robust accuracy is the per-example worst case over the attacks and the
    budgets up to eps, so it never rises with eps. Checks, True when passed: robust accuracy
    is at most ``near_zero`` (or, with a context, the blind accuracy + ``tolerance`` if
    higher) at ``large_eps``; the attacks are at least as strong as FGSM at every eps; the
    logits of every attacked example have a non-zero gradient with respect to its image (a
    zero one means the attacks had nothing to follow). ``tolerance`` absorbs the noise of
    random starts on a few hundred examples; gradient masking shows as gaps of tens of points.
    """
    eps_all = _check_eps(params)
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    protocol = RobustProtocol(preset or params.protocol, torch.Generator().manual_seed(params.seed))
    attacker = _Attacker(model, task, protocol)
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
    """Per example (bool): right on clean, still right after the attacks and after FGSM per
    eps, right on clean and with another example's image, and a zero input gradient."""

    right: torch.Tensor
    attacked: dict[float, torch.Tensor]
    fgsm: dict[float, torch.Tensor]
    blind: torch.Tensor
    flat: torch.Tensor  # the logits' gradient with respect to the image is exactly zero
    context: bool = False  # the model has an input the attack cannot touch (VQA's question)

    @property
    def n(self) -> int:
        return len(self.right)

    @classmethod
    def concat(cls, parts: list[_Tally]) -> _Tally:
        def cat(get: Callable[[_Tally], torch.Tensor]) -> torch.Tensor:
            return torch.cat([get(p) for p in parts])

        first = parts[0]
        return cls(
            cat(lambda p: p.right),
            {e: cat(lambda p, e=e: p.attacked[e]) for e in first.attacked},
            {e: cat(lambda p, e=e: p.fgsm[e]) for e in first.fgsm},
            cat(lambda p: p.blind),
            cat(lambda p: p.flat),
            first.context,
        )


@dataclass
class _Attacker:
    """One model under one protocol; one random stream shared by every batch and eps."""

    model: nn.Module
    task: Scorer
    protocol: RobustProtocol

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
        attacked = {eps: torch.zeros_like(right) for eps in eps_all}
        fgsm_right = {eps: torch.zeros_like(right) for eps in eps_all}
        # Budgets in ascending order, each attacking only what the smaller ones left right: an
        # example broken inside a smaller L-inf ball is broken inside every larger one, so
        # robust accuracy is the per-example worst case over budgets up to eps, and the
        # attacks' cost falls quickly on non-robust models. Examples wrong on the clean image
        # are never attacked.
        keep = right.nonzero().squeeze(1)
        flat = torch.zeros_like(right)
        if not len(keep):  # nothing right: nothing to attack
            return _Tally(right, attacked, fgsm_right, blind, flat, context is not None)
        x, y, c = images[keep], _index(targets, keep), _index(context, keep)
        flat[keep] = self.flat(x, c)
        victim = self.victim(x, y, c)
        alive = torch.ones(len(keep), dtype=torch.bool)
        for eps in eps_all:
            fgsm_right[eps][keep] = self.survives_fgsm(victim, eps)
            alive = self.protocol.still_right(victim, eps, alive)
            attacked[eps][keep] = alive
        return _Tally(right, attacked, fgsm_right, blind, flat, context is not None)

    def victim(self, x: torch.Tensor, y: Any, context: Any) -> Victim:
        """The model on these examples; the context follows each example by its index."""

        def forward(images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return _call(self.model, images, _index(context, rows))

        def fooled(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.fooled(logits, _index(y, rows))

        return Victim(forward, fooled, x, y)

    def survives_fgsm(self, victim: Victim, eps: float) -> torch.Tensor:
        every = torch.arange(len(victim.x), device=victim.x.device)
        adv = fgsm(lambda a: example_loss(victim.forward(a, every), victim.y), victim.x, eps / 255)
        with torch.no_grad():
            return ~victim.fooled(victim.forward(adv, every), every).cpu()

    def flat(self, x: torch.Tensor, context: Any) -> torch.Tensor:
        """Per example: the gradient of its logits (a random projection) with respect to its
        image is exactly zero, so no gradient attack can move it."""
        with torch.enable_grad():
            images = x.detach().requires_grad_(True)
            logits = _call(self.model, images, context)
            weights = torch.randn(logits.shape, generator=self.protocol.generator)
            (grad,) = torch.autograd.grad((logits * weights.to(logits)).sum(), images)
        return (grad.flatten(1) == 0).all(1).cpu()


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
    return sorted(set(eps_all))


def _report(tally: _Tally, params: EvalRobustParams) -> RobustReport:
    n, n_right, tolerance = tally.n, int(tally.right.sum()), params.tolerance
    blind = int(tally.blind.sum()) / n
    robust = {e: int(k.sum()) / n for e, k in tally.attacked.items()}
    fgsm_acc = {e: int(k.sum()) / n for e, k in tally.fgsm.items()}
    success = {
        e: 1 - int(k.sum()) / n_right if n_right else math.nan for e, k in tally.attacked.items()
    }
    # Whatever a second input (the question) answers alone survives any image attack.
    near_zero = max(params.near_zero, blind + tolerance if tally.context else 0)
    checks = {
        "near_zero_at_large_eps": robust[params.large_eps] <= near_zero,
        "attacks_at_least_fgsm": all(robust[e] <= fgsm_acc[e] + tolerance for e in robust),
        "image_gradient_nonzero": not bool(tally.flat.any()),
    }
    outcomes = {CLEAN_ACCURACY: tally.right, BLIND_ACCURACY: tally.blind}
    outcomes |= {robust_accuracy_key(e): k for e, k in tally.attacked.items()}
    outcomes = {k: v.numpy().astype(np.uint8) for k, v in outcomes.items()}
    flat = int(tally.flat.sum()) / n
    report = RobustReport(n, n_right / n, robust, fgsm_acc, success, checks, blind, flat, outcomes)
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
