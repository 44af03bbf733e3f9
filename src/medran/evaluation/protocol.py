"""The robust-evaluation protocol: which attacks run against a model, and how hard.

A preset (``eval_robust.presets.<name>``, docs/study.md "Robust protocol") lists attacks from
:data:`medran.names.ATTACKS`; at each eps they run in that order, each only on the examples
every earlier one left right, so an example counts as robust only if no attack broke it
(the per-example worst case):

- ``apgd-ce``: APGD on the task's own loss per example: softmax cross-entropy, or for
  multi-label classification the binary cross-entropy summed over labels;
- ``apgd-t``: APGD-T, APGD on the targeted DLR loss (Croce & Hein) once per target: the
  ``targets`` classes ranked next after the true one on the clean image. For multi-label
  classification the targets are the labels nearest their threshold and the loss is the
  target label's signed margin (flipping any label breaks the example);
- ``pgd``: medran's PGD (:mod:`medran.attacks.pgd`) with random starts on the task's loss.

The model is reached through a forward ``(images, indices) -> logits`` whose ``indices`` say
which examples of the batch the images are, so a second input (VQA's question) follows each
example as the attacks drop the ones they broke.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from medran.attacks.apgd import apgd
from medran.attacks.pgd import Budget, pgd
from medran.errors import InputError
from medran.names import ATTACKS

if TYPE_CHECKING:
    from medran.params import PresetParams

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, indices) -> logits
Fooled = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, indices) -> bool
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, indices) -> (b,)
MIN_TARGETED_CLASSES = 4  # APGD-T's DLR loss reads the four highest logits


def check_protocol(preset: PresetParams, n_classes: int, task: str) -> None:
    """Fail before any work when the preset cannot attack ``task``."""
    unknown = sorted(set(preset.attacks) - set(ATTACKS))
    if unknown:
        raise InputError(f"unknown attacks {unknown}; allowed: {list(ATTACKS)}")
    if "apgd-t" in preset.attacks and n_classes < MIN_TARGETED_CLASSES:
        raise InputError(
            f"apgd-t needs at least {MIN_TARGETED_CLASSES} classes; the {task} task has "
            f"{n_classes}. Allowed for it: {[a for a in ATTACKS if a != 'apgd-t']}"
        )


def example_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) task loss per example: cross-entropy, or summed BCE for label sets (float)."""
    if targets.ndim == 2:
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(logits, targets.to(logits.dtype), reduction="none").sum(1)
    return nn.functional.cross_entropy(logits, targets, reduction="none")


def targeted_loss(logits: torch.Tensor, targets: torch.Tensor, aim: torch.Tensor) -> torch.Tensor:
    """(B,) APGD-T's loss toward class ``aim``: the targeted DLR (single label), or minus the
    signed margin of label ``aim`` (label sets), ascended to flip it."""
    rows = torch.arange(len(logits), device=logits.device)
    if targets.ndim == 2:
        sign = targets[rows, aim].to(logits.dtype) * 2 - 1
        return -sign * logits[rows, aim]
    top = logits.sort(dim=1, descending=True).values
    scale = top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12
    return -(logits[rows, targets] - logits[rows, aim]) / scale


def target_classes(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) APGD-T's targets: the classes ranked 2nd..(k+1)th on the clean image, or the k
    labels nearest their threshold."""
    k = min(k, logits.shape[1] - (targets.ndim == 1))
    if targets.ndim == 2:
        return logits.abs().argsort(dim=1)[:, :k]
    return logits.argsort(dim=1, descending=True)[:, 1 : k + 1]


@dataclass(frozen=True)
class Victim:
    """A model and the batch it is attacked on: ``forward`` and ``fooled`` take the indices
    of the examples into ``x`` and ``y``."""

    forward: Forward
    fooled: Fooled
    x: torch.Tensor
    y: torch.Tensor

    def objective(self, rows: torch.Tensor, loss: Loss):
        """APGD's objective on the examples ``rows`` (APGD indexes into them)."""

        def objective(adv: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.forward(adv, rows[i])
            return loss(logits, rows[i]), self.fooled(logits, rows[i])

        return objective


@dataclass
class RobustProtocol:
    """One preset applied to a model: :meth:`still_right` per eps."""

    preset: PresetParams
    generator: torch.Generator

    def still_right(self, victim: Victim, eps: float, alive: torch.Tensor) -> torch.Tensor:
        """(B,) bool: right after every attack of the preset at ``eps`` (1/255 units). Only
        the examples ``alive`` (bool, CPU), which must be right, are attacked."""
        alive = alive.clone()
        for name in self.preset.attacks:
            keep = alive.nonzero().squeeze(1)
            if not len(keep):
                break
            broken = self._attack(name, victim, keep.to(victim.x.device), eps / 255)
            alive[keep[broken.cpu()]] = False
        return alive

    def _attack(self, name: str, victim: Victim, keep: torch.Tensor, eps: float) -> torch.Tensor:
        """Which of ``keep`` the attack ``name`` breaks (``eps`` in [0, 1] pixel units)."""
        y = victim.y
        if name == "pgd":
            return self._pgd(victim, keep, eps)
        if name == "apgd-ce":
            return self._apgd(victim, keep, eps, lambda z, i: example_loss(z, y[i]))
        with torch.no_grad():
            logits = victim.forward(victim.x[keep], keep)
        aims = target_classes(logits, y[keep], self.preset.apgd.targets)
        broken = torch.zeros(len(keep), dtype=torch.bool, device=keep.device)
        for column in aims.T:  # one APGD-T run per target, on what earlier targets left
            left = (~broken).nonzero().squeeze(1)
            aim = torch.full((len(y),), -1, dtype=torch.long, device=keep.device)
            aim[keep] = column

            def loss(z: torch.Tensor, i: torch.Tensor, aim: torch.Tensor = aim) -> torch.Tensor:
                return targeted_loss(z, y[i], aim[i])

            broken[left] = self._apgd(victim, keep[left], eps, loss)
        return broken

    def _apgd(self, victim: Victim, keep: torch.Tensor, eps: float, loss: Loss) -> torch.Tensor:
        """APGD with ``restarts``, each on the examples of ``keep`` the earlier ones left."""
        config = self.preset.apgd
        broken = torch.zeros(len(keep), dtype=torch.bool, device=keep.device)
        for _ in range(config.restarts):
            left = (~broken).nonzero().squeeze(1)
            if not len(left):
                break
            rows = keep[left]
            objective = victim.objective(rows, loss)
            _, hit = apgd(objective, victim.x[rows], eps, config.steps, self.generator)
            broken[left[hit]] = True
        return broken

    def _pgd(self, victim: Victim, keep: torch.Tensor, eps: float) -> torch.Tensor:
        config, y = self.preset.pgd, victim.y[keep]
        budget = Budget(eps, config.step_fraction * eps, config.steps, True, config.restarts)

        def score(adv: torch.Tensor) -> torch.Tensor:
            return example_loss(victim.forward(adv, keep), y)

        def rank(adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = victim.forward(adv, keep)
            return victim.fooled(logits, keep), example_loss(logits, y)

        adv = pgd(score, victim.x[keep], budget, self.generator, rank)
        with torch.no_grad():
            return victim.fooled(victim.forward(adv, keep), keep)
