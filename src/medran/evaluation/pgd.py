"""White-box L-inf PGD and FGSM on [0, 1] images.

The attacked model sees [0, 1] pixels and normalises inside (``ImageEncoder``), so budgets are
in pixel space. ``pgd``/``fgsm`` take budgets in [0, 1] pixel units (as ``MFII`` does);
``medran.evaluation.robust`` takes them in 1/255 units, as params and reports state them. The
objective is passed in (the task's loss: cross-entropy, BCE-with-logits, the VQA answer loss)
and the attack ascends it. Fine-tuning methods reuse ``pgd`` to craft training examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from medran.errors import InputError

Forward = Callable[[torch.Tensor], torch.Tensor]  # [0, 1] images -> logits
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> loss
Success = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> (B,) bool
Predict = Callable[[torch.Tensor], torch.Tensor]  # logits -> predictions
Correct = Callable[
    [torch.Tensor, torch.Tensor], torch.Tensor
]  # (predictions, targets) -> (B,) bool


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


def check_budget(eps: float, step_size: float, steps: int) -> None:
    """Raise :class:`InputError` for a budget no attack can use (before any work)."""
    if not 0 < eps <= 1:
        raise InputError(f"eps must be in (0, 1] in [0, 1] pixel units, got {eps}")
    if not 0 < step_size <= 1:
        raise InputError(f"step_size must be in (0, 1] in [0, 1] pixel units, got {step_size}")
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")


def pgd(
    forward: Forward,
    loss_fn: LossFn,
    images: torch.Tensor,
    targets: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    restarts: int = 1,
    generator: torch.Generator | None = None,
    success: Success | None = None,
) -> torch.Tensor:
    """PGD (Madry et al., 2018): L-inf sign-gradient ascent on the loss, projected every step.

    Arguments:
        forward (Forward): (B, 3, H, W) images in [0, 1] -> logits. Put the model in eval mode
            first (see :func:`eval_mode`); only the input's gradient is taken, so parameters
            never receive ``.grad``.
        loss_fn (LossFn): (logits, targets) -> loss to maximise (any reduction).
        eps (float): L-inf budget in [0, 1] pixel units.
        step_size (float): step in [0, 1] pixel units.
        steps (int): number of steps; the last iterate is returned (textbook PGD).
        random_start (bool): start from a uniform point of the eps-ball.
        restarts (int): independent runs, combined per example: a restart that ``success``
            marks as fooled beats one that is not; among equals the higher per-example loss
            wins (the only rule without ``success``); exact ties keep the earlier restart.
        generator (torch.Generator or None): a CPU generator for the random starts, so they
            are the same on every device; ``None`` draws from the global RNG of the images'
            device (what a training loop checkpoints and restores).
        success (Success or None): (logits, targets) -> (B,) bool, True where fooled.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - targets: whatever ``loss_fn`` takes, batch first.
        - output: (B, 3, H, W) float in [0, 1], detached, |output - images| <= eps.

    Examples::
        >>> with eval_mode(model):
        ...     adv = pgd(model, nn.functional.cross_entropy, x, y, 8 / 255, 2 / 255, 10)
    """
    check_budget(eps, step_size, steps)
    if restarts < 1:
        raise InputError(f"restarts must be >= 1, got {restarts}")
    x = images.detach()
    # One clamp per step keeps both ||delta|| <= eps and x + delta in [0, 1].
    low, high = (-x).clamp(min=-eps), (1 - x).clamp(max=eps)
    best = best_loss = best_fooled = None
    for _ in range(restarts):
        delta = _random_delta(x, eps, generator) if random_start else torch.zeros_like(x)
        delta = _ascend(
            forward, loss_fn, x, targets, delta.clamp_(low, high), low, high, step_size, steps
        )
        adv = (x + delta).clamp_(0, 1)
        if restarts == 1:
            return adv
        with torch.no_grad():
            logits = forward(adv)
            loss = per_example_loss(loss_fn, logits, targets)
            fooled = success(logits, targets).bool() if success else torch.zeros_like(loss).bool()
        if best is None:
            best, best_loss, best_fooled = adv, loss, fooled
            continue
        better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
        best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), adv, best)
        best_loss = torch.where(better, loss, best_loss)
        best_fooled = best_fooled | fooled
    return best


def fgsm(
    forward: Forward, loss_fn: LossFn, images: torch.Tensor, targets: torch.Tensor, eps: float
) -> torch.Tensor:
    """FGSM (Goodfellow et al., 2015): one sign-gradient step of size eps from the clean image.

    Arguments:
        forward (Forward): (B, 3, H, W) images in [0, 1] -> logits, model in eval mode.
        loss_fn (LossFn): (logits, targets) -> loss to maximise.
        eps (float): L-inf budget and step, in [0, 1] pixel units.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - output: (B, 3, H, W) float in [0, 1], detached, |output - images| <= eps.

    Examples::
        >>> adv = fgsm(model, nn.functional.cross_entropy, x, y, 8 / 255)
    """
    check_budget(eps, eps, 1)
    x = images.detach()
    low, high = (-x).clamp(min=-eps), (1 - x).clamp(max=eps)
    delta = _ascend(forward, loss_fn, x, targets, torch.zeros_like(x), low, high, eps, 1)
    return (x + delta).clamp_(0, 1)


def _ascend(
    forward: Forward,
    loss_fn: LossFn,
    x: torch.Tensor,
    targets: torch.Tensor,
    delta: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    step_size: float,
    steps: int,
) -> torch.Tensor:
    # enable_grad: callers often evaluate under no_grad, and the input's gradient is needed.
    with torch.enable_grad():
        delta = delta.detach().requires_grad_(True)
        for _ in range(steps):
            loss = loss_fn(forward(x + delta), targets)
            # A sum keeps each example's gradient sign whatever the loss's reduction.
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta.add_(grad.sign_(), alpha=step_size).clamp_(low, high)
    return delta.detach()


def _random_delta(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device)
    else:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return noise.mul_(2 * eps).sub_(eps)


def per_example_loss(loss_fn: LossFn, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) losses from a loss function of any reduction.

    A loss that already returns one value (or more) per example is averaged over its other
    dimensions; a reduced one is called once per example.
    """
    out = loss_fn(logits, targets)
    n = logits.shape[0]
    if out.ndim >= 1 and out.shape[0] == n:
        return out.reshape(n, -1).mean(dim=1)
    return torch.stack([loss_fn(logits[i : i + 1], targets[i : i + 1]) for i in range(n)])
