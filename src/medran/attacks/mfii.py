"""MF-ii, AttackVLM's transfer attack (Zhao et al., NeurIPS 2023), and lossless quantisation.

MF-ii is :func:`medran.attacks.pgd.pgd` with the objective cos(f(x + delta), f(x_target)):
the same L-inf sign-gradient loop the robust evaluation uses, so both attacks share one
implementation. The result is quantised to uint8 so that the saved PNG still satisfies
|x_adv - x| <= eps exactly, in uint8 levels.
"""

from __future__ import annotations

import torch
from torch import nn

from medran.attacks.base import Attack, Objective, cosine
from medran.attacks.pgd import Budget, pgd
from medran.errors import InputError


class MFII(Attack):
    """MF-ii: PGD (L-inf, sign gradient) that pulls f(x + delta) toward f(x_target).

    Arguments:
        model (nn.Module): maps (B, 3, H, W) images in [0, 1] to embeddings. It is put in eval
            mode and its parameters are frozen (the gradient is taken w.r.t. the input only).
        budget (Budget): in [0, 1] pixel units (AttackVLM: eps 8/255, step 1/255, 100-300
            steps); a random start is drawn from the attack's own generator (seeded by
            :meth:`manual_seed`). One restart: there is no label to rank restarts by.
        objective (Objective): (outputs, target outputs) -> (B,) scores to maximise.
            Default: cosine similarity.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - targets: (B, 3, H, W) float in [0, 1], one target image per clean image.
        - output: (B, 3, H, W) float in [0, 1], detached, within eps of ``images``.

    Examples::
        >>> attack = MFII(encoder, Budget(8 / 255, 1 / 255, steps=100, random_start=False))
        >>> adv = attack(images, targets)
        >>> saved = quantize(adv, clean_uint8, eps=8)
    """

    def __init__(self, model: nn.Module, budget: Budget, objective: Objective = cosine):
        if budget.restarts != 1:
            raise InputError(f"MF-ii runs one restart, got restarts={budget.restarts}")
        super().__init__(model.eval().requires_grad_(False), objective)
        self.budget = budget

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = self.model(targets)  # once: the target does not move

        def score(adv: torch.Tensor) -> torch.Tensor:
            return self.objective(self.model(adv), reference)

        return pgd(score, images, self.budget, self.generator)

    def __repr__(self) -> str:
        b = self.budget
        return (
            f"MFII(eps={b.eps * 255:g}/255, step_size={b.step_size * 255:g}/255, "
            f"steps={b.steps}, random_start={b.random_start})"
        )


def quantize(adv: torch.Tensor, clean: torch.Tensor, eps: int) -> torch.Tensor:
    """Round [0, 1] images to uint8 levels within ``eps`` levels of the uint8 ``clean`` images.

    Rounding alone could step one level past the budget (x + 8/255 - tiny rounds to x + 8,
    but float error can land on either side); clipping to [clean - eps, clean + eps] after
    rounding makes the bound exact for the file that is saved.
    """
    if clean.dtype != torch.uint8:
        raise ValueError(f"clean images must be uint8, got {clean.dtype}")
    if adv.shape != clean.shape:
        raise ValueError(f"shapes differ: adv {tuple(adv.shape)}, clean {tuple(clean.shape)}")
    levels = adv.detach().mul(255).round_().clamp_(0, 255)
    reference = clean.to(levels.dtype)
    low = (reference - eps).clamp_(min=0)
    high = (reference + eps).clamp_(max=255)
    return levels.clamp_(low, high).to(torch.uint8)
