"""``fare``: FARE (Schlarmann et al., ICML 2024), unsupervised adversarial fine-tuning of the
image encoder, and the task head on top (docs/architecture.md, "Methods").

Each step crafts x_adv by PGD ascent of the FARE loss and trains a copy of the encoder on

    fare = mean over examples of || f(x_adv) - f_0(x) ||^2

(the squared L2 distance, summed over feature dimensions as in the reference code; patch
tokens, the VQA encoder's output, are averaged over tokens), where f_0 is the pre-trained
encoder: its clean features are the cached ``z`` every adversarial batch carries, so no second
encoder runs. The head trains on the current encoder's clean features with the gradient
stopped there (``task``), so the encoder learns from the FARE loss alone. The two terms train
disjoint parameters; ``loss`` is their sum.
"""

from __future__ import annotations

import torch
from torch import nn

from medran.errors import InputError
from medran.methods.base import Batch, LossFn, Method, attack, require_images
from medran.params import FAREParams


def fare_distance(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) squared L2 distances of (B, D) features, or their mean over the tokens of
    (B, T, D) features, to the fixed ``target``."""
    if features.shape != target.shape:
        raise InputError(
            f"FARE compares features with the pre-trained ones of the same shape, got "
            f"{tuple(features.shape)} and {tuple(target.shape)}"
        )
    distance = (features - target.detach()).pow(2).sum(dim=-1)
    return distance.mean(dim=1) if distance.ndim == 2 else distance


def pretrained_features(batch: Batch, method: str) -> torch.Tensor:
    """The pre-trained encoder's clean features ``z``: FARE's fixed target."""
    if "z" not in batch:
        raise InputError(
            f"method {method!r} needs the pre-trained encoder's features 'z' of every image "
            f"(its target) besides the raw 'images'; got keys {sorted(batch)}"
        )
    return batch["z"]


class FARE(Method):
    """The FARE loss on PGD examples trains the encoder; the task loss on its clean features
    (no gradient into it) trains the head."""

    name = "fare"
    config_class = FAREParams
    tunes_encoder = True

    @property
    def adversarial(self) -> bool:
        return True

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        images = require_images(batch, self.name)
        target = pretrained_features(batch, self.name)

        def score(adv: torch.Tensor) -> torch.Tensor:
            return fare_distance(model.features(adv), target)

        x_adv = attack(model, images, score, self.config)
        fare = score(x_adv).mean()
        with torch.no_grad():  # the head reads the tuned encoder's clean features, no graph
            z = model.features(images)
        task = loss_fn(model.forward_features(z, batch.get("context")), batch["targets"])
        return {"loss": fare + task, "fare": fare, "task": task}
