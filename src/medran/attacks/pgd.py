"""White-box L-inf PGD and FGSM on [0, 1] images: the one attack loop of the project.

The attacked model sees [0, 1] pixels and normalises inside (``ImageEncoder``), so budgets are
in pixel space: :class:`Budget` is in [0, 1] pixel units (``medran.evaluation.robust`` takes
1/255 units, as params and reports state them). The objective is a callable from adversarial
images to the score to ascend, so evaluation (the task's loss), training-time crafting
(``medran.methods``) and MF-ii (cosine to a target embedding) all run this same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from medran.errors import InputError

# Adversarial images (B, 3, H, W) -> the score to ascend, per example or reduced (any shape:
# the gradient of its sum is taken, which keeps each example's gradient sign).
Score = Callable[[torch.Tensor], torch.Tensor]
# Adversarial images -> ((B,) bool, True where fooled; (B,) float score), to pick restarts.
Rank = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> loss


@dataclass(frozen=True)
class Budget:
    """An L-inf PGD budget in [0, 1] pixel units, checked when built (before any work).

    Attributes:
        eps (float): L-inf radius, in (0, 1].
        step_size (float): sign-gradient step, in (0, 1].
        steps (int): number of steps; the last iterate is returned (textbook PGD).
        random_start (bool): start from a uniform point of the eps-ball instead of the image.
        restarts (int): independent runs, combined per example (see :func:`pgd`).
    """

    eps: float
    step_size: float
    steps: int
    random_start: bool
    restarts: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1:
            raise InputError(f"eps must be in (0, 1] in [0, 1] pixel units, got eps={self.eps}")
        if not 0 < self.step_size <= 1:
            raise InputError(
                f"step_size must be in (0, 1] in [0, 1] pixel units, got {self.step_size}"
            )
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.restarts < 1:
            raise InputError(f"restarts must be >= 1, got {self.restarts}")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then restore each one's own flag.

    Restoring per module (not ``model.train(was_training)``) keeps a frozen encoder that its
    owner holds in eval mode inside a training model exactly as it was.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def pgd(
    score: Score,
    images: torch.Tensor,
    budget: Budget,
    generator: torch.Generator | None = None,
    rank: Rank | None = None,
) -> torch.Tensor:
    """PGD (Madry et al., 2018): L-inf sign-gradient ascent on ``score``, projected every step.

    Arguments:
        score (Score): adversarial images -> score to maximise. Put the model in eval mode
            first (see :func:`eval_mode`); only the input's gradient is taken, so parameters
            never receive ``.grad``.
        budget (Budget): eps, step, steps, random start and restarts.
        generator (torch.Generator or None): a CPU generator for the random starts, so they
            are the same on every device; ``None`` draws from the global RNG of the images'
            device (what a training loop checkpoints and restores).
        rank (Rank or None): required with restarts: a restart that fooled an example beats
            one that did not; among equals the higher score wins; exact ties keep the earlier.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - output: (B, 3, H, W) float in [0, 1], detached, |output - images| <= eps.

    Examples::
        >>> budget = Budget(8 / 255, 2 / 255, steps=10, random_start=True)
        >>> with eval_mode(model):
        ...     adv = pgd(lambda a: F.cross_entropy(model(a), y), x, budget)
    """
    if budget.restarts > 1 and rank is None:
        raise InputError(f"{budget.restarts} restarts need a rank to choose between them")
    x = images.detach()
    bounds = _bounds(x, budget.eps)
    best = best_score = best_fooled = None
    for _ in range(budget.restarts):
        delta = _start(x, budget, generator).clamp_(*bounds)
        adv = (x + _ascend(score, x, delta, bounds, budget)).clamp_(0, 1)
        if budget.restarts == 1:
            return adv
        with torch.no_grad():
            fooled, value = rank(adv)
            fooled = fooled.bool()
        if best is None:
            best, best_score, best_fooled = adv, value, fooled
            continue
        better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (value > best_score))
        best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), adv, best)
        best_score = torch.where(better, value, best_score)
        best_fooled = best_fooled | fooled
    return best


def fgsm(score: Score, images: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM (Goodfellow et al., 2015): one sign-gradient step of size eps from the clean image.

    Arguments:
        score (Score): adversarial images -> score to maximise, model in eval mode.
        eps (float): L-inf budget and step, in [0, 1] pixel units.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - output: (B, 3, H, W) float in [0, 1], detached, |output - images| <= eps.
    """
    budget = Budget(eps, eps, 1, random_start=False)
    x = images.detach()
    delta = _ascend(score, x, torch.zeros_like(x), _bounds(x, eps), budget)
    return (x + delta).clamp_(0, 1)


def _bounds(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    # One clamp per step to these keeps both ||delta|| <= eps and x + delta in [0, 1].
    return (-x).clamp(min=-eps), (1 - x).clamp(max=eps)


def _ascend(
    score: Score,
    x: torch.Tensor,
    delta: torch.Tensor,
    bounds: tuple[torch.Tensor, torch.Tensor],
    budget: Budget,
) -> torch.Tensor:
    # enable_grad: callers often evaluate under no_grad, and the input's gradient is needed.
    with torch.enable_grad():
        delta = delta.detach().requires_grad_(True)
        for _ in range(budget.steps):
            (grad,) = torch.autograd.grad(score(x + delta).sum(), delta)
            with torch.no_grad():
                delta.add_(grad.sign_(), alpha=budget.step_size).clamp_(*bounds)
    return delta.detach()


def _start(x: torch.Tensor, budget: Budget, generator: torch.Generator | None) -> torch.Tensor:
    """Zero, or a uniform point of the eps-ball (not yet cut to the pixel range)."""
    if not budget.random_start:
        return torch.zeros_like(x)
    if generator is None:
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device)
    else:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return noise.mul_(2 * budget.eps).sub_(budget.eps)


def per_example_loss(loss_fn: LossFn, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) losses from a loss function of any reduction (to rank restarts).

    A loss that already returns one value (or more) per example is averaged over its other
    dimensions; a reduced one is called once per example.
    """
    out = loss_fn(logits, targets)
    n = logits.shape[0]
    if out.ndim >= 1 and out.shape[0] == n:
        return out.reshape(n, -1).mean(dim=1)
    return torch.stack([loss_fn(logits[i : i + 1], targets[i : i + 1]) for i in range(n)])
