"""The contract every image attack follows (torchattacks' shape, with the objective passed in).

An attack maps clean images in [0, 1] and their targets to adversarial images in [0, 1]. The
model sees [0, 1] pixels and normalises inside its wrapper, so budgets are in pixel space.
Unlike torchattacks, the objective is an argument: cross-entropy is meaningless for CLIP
embeddings, where attacks push a similarity up (or down) instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

# (model outputs for the adversarial images, model outputs for the targets) -> (B,) scores
# the attack maximises.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cosine(outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity of two (B, D) batches of embeddings."""
    return nn.functional.cosine_similarity(outputs, reference, dim=-1)


class Attack(ABC):
    """Base class of the image attacks.

    Arguments:
        model (nn.Module or None): maps (B, 3, H, W) images in [0, 1] to outputs.
        objective (Objective or None): (outputs, target outputs) -> (B,) scores to maximise.

    Shape:
        - images: (B, 3, H, W) float in [0, 1].
        - targets: (B, 3, H, W) float in [0, 1], one target image per clean image.
        - output: (B, 3, H, W) float in [0, 1], detached.

    Examples::
        >>> attack = SomeAttack(encoder, cosine)
        >>> adv = attack.manual_seed(0)(images, targets)
    """

    def __init__(self, model: nn.Module | None = None, objective: Objective | None = None):
        self.model = model
        self.objective = objective
        # A CPU generator, so random starts are the same on every device.
        self.generator = torch.Generator().manual_seed(0)

    def manual_seed(self, seed: int) -> Attack:
        """Reset the attack's own random stream (e.g. per batch, so resumed work is identical)."""
        self.generator.manual_seed(seed)
        return self

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"images must be a float (B, C, H, W) batch in [0, 1], got {tuple(images.shape)} "
                f"{images.dtype}"
            )
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        return self.forward(images, targets)

    @abstractmethod
    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The attack itself; inputs are already checked."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
