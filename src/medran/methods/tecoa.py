"""``tecoa``: TeCoA (Mao et al., ICLR 2023), supervised adversarial fine-tuning of the image
encoder (docs/architecture.md, "Methods").

Each step crafts x_adv by PGD ascent of the task loss against the current model and trains a
copy of the encoder and the head together on the task loss at x_adv. For classification the
head is CLIP's zero-shot classifier (``medran.models.zeroshot.TextPromptHead``):
``logit_scale * cos(f(x), t_c) + b_c`` against the frozen text embeddings ``t_c`` of the class
prompts (averaged over the config's templates), the text-guided contrastive loss of the paper
with a trainable per-class bias (which multi-label BCE needs for its thresholds). For VQA it
is the task's co-attention head, trained with the encoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medran.errors import InputError
from medran.methods.base import Batch, LossFn, Method, craft
from medran.models.zeroshot import text_prompt_head
from medran.params import TeCoAParams

if TYPE_CHECKING:  # for type hints only
    from medran.models.factory import ClipModel
    from medran.tasks.base import Task


class TeCoA(Method):
    """The task loss on PGD examples trains encoder and head; cls scores by text prompts."""

    name = "tecoa"
    config_class = TeCoAParams
    tunes_encoder = True

    @property
    def adversarial(self) -> bool:
        return True

    def build_head(
        self, task: Task, encoder: nn.Module, clip: ClipModel, options: dict[str, Any]
    ) -> nn.Module:
        if task.name != "cls":
            return super().build_head(task, encoder, clip, options)
        if options:
            raise InputError(
                f"method {self.name!r} classifies with the class prompts' text embeddings and "
                f"takes no head options, got {sorted(options)}"
            )
        return text_prompt_head(clip, task.classes, self.config.prompts, encoder.out_dim)

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        x_adv = craft(model, batch, loss_fn, self.config, self.name)
        adv = loss_fn(model(x_adv, batch.get("context")), batch["targets"])
        return {"loss": adv, "adv": adv}
