"""MF-ii, AttackVLM's transfer attack (Zhao et al., NeurIPS 2023), and lossless quantisation.

Sign-gradient ascent on cos(f(x + delta), f(x_target)) with ||delta||_inf <= eps, the pixels
clamped to [0, 1] at every step. The result is quantised to uint8 so that the saved PNG still
satisfies |x_adv - x| <= eps exactly, in uint8 levels.
"""

from __future__ import annotations

import torch
from torch import nn

from medran.attacks.base import Attack, Objective, cosine


class MFII(Attack):
    """MF-ii: PGD (L-inf, sign gradient) that pulls f(x + delta) toward f(x_target).

    Arguments:
        model (nn.Module): maps (B, 3, H, W) images in [0, 1] to embeddings. It is put in eval
            mode and its parameters are frozen (the gradient is taken w.r.t. the input only).
        objective (Objective): (outputs, target outputs) -> (B,) scores to maximise.
            Default: cosine similarity.
        eps (float): L-inf budget in [0, 1] pixel units (8/255 in AttackVLM).
        step_size (float): step in [0, 1] pixel units (1/255).
        steps (int): number of steps (100-300 in AttackVLM).
        random_start (bool): start from a uniform point of the ball (seeded by
            :meth:`manual_seed`) instead of delta = 0.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - targets: (B, 3, H, W) float in [0, 1], one target image per clean image.
        - output: (B, 3, H, W) float in [0, 1], detached, within eps of ``images``.

    Examples::
        >>> attack = MFII(encoder, eps=8 / 255, step_size=1 / 255, steps=100)
        >>> adv = attack(images, targets)
        >>> saved = quantize(adv, clean_uint8, eps=8)
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective = cosine,
        eps: float = 8 / 255,
        step_size: float = 1 / 255,
        steps: int = 100,
        random_start: bool = False,
    ):
        if not 0 < eps <= 1 or not 0 < step_size <= 1 or steps < 1:
            raise ValueError(
                f"need 0 < eps <= 1, 0 < step_size <= 1 (pixel units) and steps >= 1; "
                f"got eps={eps}, step_size={step_size}, steps={steps}"
            )
        super().__init__(model.eval().requires_grad_(False), objective)
        self.eps, self.step_size, self.steps = eps, step_size, steps
        self.random_start = random_start

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = images.detach()
        with torch.no_grad():
            reference = self.model(targets)
            # One clamp per step keeps both ||delta|| <= eps and x + delta in [0, 1].
            low = (-x).clamp_(min=-self.eps)
            high = (1 - x).clamp_(max=self.eps)
            delta = self._start(x).clamp_(low, high)
        delta.requires_grad_(True)
        for _ in range(self.steps):
            score = self.objective(self.model(x + delta), reference).sum()
            (grad,) = torch.autograd.grad(score, delta)
            with torch.no_grad():
                delta.add_(grad.sign_(), alpha=self.step_size).clamp_(low, high)
        return (x + delta.detach()).clamp_(0, 1)

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return torch.zeros_like(x)
        noise = torch.rand(x.shape, generator=self.generator, dtype=x.dtype)
        return noise.to(x.device).mul_(2 * self.eps).sub_(self.eps)

    def __repr__(self) -> str:
        return (
            f"MFII(eps={self.eps * 255:g}/255, step_size={self.step_size * 255:g}/255, "
            f"steps={self.steps}, random_start={self.random_start})"
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
