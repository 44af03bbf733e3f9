"""APGD (Croce & Hein, ICML 2020): L-inf PGD with momentum and a step size that adapts per
example, the attack AutoAttack is built on.

A port of the reference implementation (fra31/auto-attack, also torchattacks' ``APGD``): step
2 eps, momentum 0.75, checkpoints after 22%, then 22 - 3k% (at least 6%) of the iterations, and
at each checkpoint the step halves, restarting from the best point, for an example whose loss
rose in at most 75% of the steps since the last one or did not improve with the step it had.
It differs in what medran needs and the libraries do not do:

- the objective is a callable ``(adversarial images, example indices) -> (per-example loss,
  fooled)``, so a multi-label loss, a targeted loss or a model with a second input (VQA's
  question) that must follow each example works as well as softmax cross-entropy;
- an example leaves the batch as soon as it is fooled (its adversarial image is final), so the
  cost falls with the model's robustness instead of staying at ``steps`` per example;
- random starts come from a given generator, not by reseeding torch's global RNG.

Budgets are in [0, 1] pixel units, as in :mod:`medran.attacks.pgd`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from medran.errors import InputError

# (adversarial images (b, ...), their indices into the attacked batch (b,)) ->
# (per-example loss to ascend (b,), fooled (b,) bool).
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

MOMENTUM = 0.75
RHO = 0.75  # the oscillation test: at most this fraction of steps raised the loss


@dataclass
class _Active:
    """The state of the examples still being attacked; one row per example."""

    index: torch.Tensor  # into the attacked batch
    x: torch.Tensor
    adv: torch.Tensor
    previous: torch.Tensor  # the iterate before ``adv`` (for the momentum)
    grad: torch.Tensor
    best: torch.Tensor  # the highest-loss point so far
    best_grad: torch.Tensor
    best_loss: torch.Tensor
    step: torch.Tensor  # (b, 1, 1, 1)
    checked_loss: torch.Tensor  # best_loss at the last checkpoint
    reduced: torch.Tensor  # bool: the step was halved at the last checkpoint
    losses: torch.Tensor  # (steps, b): the loss at every iteration
    reached: torch.Tensor  # bool: fooled at the start point

    def keep(self, mask: torch.Tensor) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, value[:, mask] if f.name == "losses" else value[mask])


def apgd(
    objective: Objective,
    images: torch.Tensor,
    eps: float,
    steps: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run from a random point of the eps-ball.

    Arguments:
        objective (Objective): see the module docstring. Put the model in eval mode first;
            only the input's gradient is taken.
        eps (float): L-inf radius, in (0, 1] pixel units.
        steps (int): iterations (AutoAttack: 100).
        generator (torch.Generator): a CPU generator for the random start.

    Returns:
        (adversarial images, fooled): per example, the first point that fooled the model, or
        the highest-loss point when none did; and whether one did. Detached, in [0, 1],
        within eps of ``images``.
    """
    if not 0 < eps <= 1 or steps < 1:
        raise InputError(f"APGD needs eps in (0, 1] and steps >= 1, got eps={eps}, steps={steps}")
    x = images.detach()
    out, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
    state = _start(objective, x, eps, steps, generator)
    _record(state, state.reached, out, fooled)
    state.keep(~state.reached)
    period, since = max(int(0.22 * steps), 1), 0
    shrink, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    for i in range(steps):
        if not len(state.index):
            break
        _move(state, eps, MOMENTUM if i else 1.0)
        loss, hit = _evaluate(objective, state)
        state.losses[i] = loss
        better = loss > state.best_loss
        state.best[better], state.best_grad[better] = state.adv[better], state.grad[better]
        state.best_loss = torch.where(better, loss, state.best_loss)
        _record(state, hit, out, fooled)
        since += 1
        if since == period:
            _checkpoint(state, i, period)
            since, period = 0, max(period - shrink, minimum)
        state.keep(~hit)
    return out, fooled


def _start(
    objective: Objective,
    x: torch.Tensor,
    eps: float,
    steps: int,
    generator: torch.Generator,
) -> _Active:
    """A uniform start on the eps-ball's surface in L-inf (the reference's), evaluated."""
    t = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
    scale = t.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (x.ndim - 1))
    adv = (x + eps * t / scale).clamp(0, 1)
    n = len(x)
    state = _Active(
        index=torch.arange(n, device=x.device),
        x=x,
        adv=adv,
        previous=adv.clone(),
        grad=torch.zeros_like(x),
        best=adv.clone(),
        best_grad=torch.zeros_like(x),
        best_loss=torch.zeros(n, device=x.device),
        step=torch.full((n, *[1] * (x.ndim - 1)), 2 * eps, device=x.device, dtype=x.dtype),
        checked_loss=torch.zeros(n, device=x.device),
        reduced=torch.ones(n, dtype=torch.bool, device=x.device),
        losses=torch.zeros(steps, n, device=x.device),
        reached=torch.zeros(n, dtype=torch.bool, device=x.device),
    )
    loss, state.reached = _evaluate(objective, state)
    state.best_grad, state.best_loss, state.checked_loss = state.grad.clone(), loss, loss.clone()
    return state


def _evaluate(objective: Objective, state: _Active) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and fooled at ``state.adv``; sets ``state.grad`` to the loss's input gradient."""
    with torch.enable_grad():
        adv = state.adv.detach().requires_grad_(True)
        loss, hit = objective(adv, state.index)
        (state.grad,) = torch.autograd.grad(loss.sum(), adv)
    return loss.detach().float(), hit.detach().bool()


def _record(state: _Active, hit: torch.Tensor, out: torch.Tensor, fooled: torch.Tensor) -> None:
    """Fooled examples keep this point: the attack is done with them."""
    out[state.index[hit]] = state.adv[hit]
    fooled[state.index[hit]] = True
    out[state.index[~hit]] = state.best[~hit]  # else the best so far, until one fools


def _move(state: _Active, eps: float, momentum: float) -> None:
    """A sign-gradient step, projected, then mixed with the previous move (momentum)."""
    with torch.no_grad():
        x, adv = state.x, state.adv
        low, high = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        z = torch.minimum(torch.maximum(adv + state.step * state.grad.sign(), low), high)
        mixed = adv + (z - adv) * momentum + (adv - state.previous) * (1 - momentum)
        state.previous, state.adv = adv, torch.minimum(torch.maximum(mixed, low), high)


def _checkpoint(state: _Active, i: int, period: int) -> None:
    """Halve the step of the examples that oscillate or stalled; they restart from their best."""
    losses = state.losses
    # The reference counts rises over the last ``period`` steps, comparing the first of them
    # with the row before (which is the not yet written last row at the first checkpoint).
    rises = sum((losses[i - k] > losses[i - k - 1]).float() for k in range(period))
    oscillating = rises <= period * RHO
    stalled = ~state.reduced & (state.checked_loss >= state.best_loss)
    halve = oscillating | stalled
    state.reduced, state.checked_loss = halve, state.best_loss.clone()
    state.step[halve] /= 2
    state.adv[halve], state.grad[halve] = state.best[halve], state.best_grad[halve]
