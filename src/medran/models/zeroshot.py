"""CLIP's zero-shot classifier as a trainable head: class prompts through the text tower.

:func:`class_embeddings` is CLIP's prompt ensembling: each class is the mean of its prompts'
L2-normalised text embeddings, normalised again. :class:`TextPromptHead` scores image features
by ``logit_scale * cos(z, t_c) + b_c``, the zero-shot logits plus a per-class bias, which
starts at 0 and lets the multi-label variant (sigmoid, threshold at logit 0) learn where each
class's threshold lies. The text embeddings and the scale are fixed (buffers); only the bias
trains. TeCoA (``medran.methods.tecoa``) fine-tunes the image encoder against this head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from medran.errors import InputError
from medran.models.factory import ClipModel


@torch.no_grad()
def class_embeddings(
    clip: ClipModel, classes: Sequence[str], prompts: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """(C, D) unit text embeddings of ``classes``: each the normalised mean over ``prompts``
    (templates with one ``{}`` for the lower-cased class name) of the normalised embeddings."""
    if not classes or not prompts:
        raise InputError(f"zero-shot embeddings need classes and prompts, got {classes}, {prompts}")
    model, tokenize = clip.model, clip.tokenizer()
    device, was_training = next(model.parameters()).device, model.training
    texts = [p.format(name.lower()) for name in classes for p in prompts]
    model.eval()
    try:
        chunks = [
            model.encode_text(tokenize(texts[i : i + batch_size]).to(device), normalize=True)
            for i in range(0, len(texts), batch_size)
        ]
    finally:
        model.train(was_training)
    mean = torch.cat(chunks).float().reshape(len(classes), len(prompts), -1).mean(dim=1)
    return F.normalize(mean, dim=-1)


def logit_scale(clip: ClipModel) -> float:
    """The CLIP's own temperature, exp(logit_scale), capped at 100 as CLIP trains it."""
    return float(clip.model.logit_scale.detach().exp().clamp(max=100.0))


class TextPromptHead(nn.Module):
    """``scale * cos(z, text_c) + bias_c`` over (B, D) image features; ignores the context."""

    def __init__(self, text: torch.Tensor, scale: float):
        super().__init__()
        if text.ndim != 2:
            raise InputError(f"expected (classes, dim) text embeddings, got {tuple(text.shape)}")
        self.register_buffer("text", F.normalize(text.detach().float(), dim=-1).clone())
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.zeros(text.shape[0]))

    def forward(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        cosine = F.normalize(z, dim=-1) @ self.text.to(z.dtype).T
        return self.scale * cosine + self.bias


def text_prompt_head(
    clip: ClipModel, classes: Sequence[str], prompts: Sequence[str], dim: int
) -> TextPromptHead:
    """The zero-shot head of ``clip`` for ``classes``, on ``dim``-dimensional image features
    (the CLIP embedding: pooled, projected features)."""
    text = class_embeddings(clip, classes, prompts)
    if text.shape[1] != dim:
        raise InputError(
            f"the text embeddings are {text.shape[1]}-dimensional but the image features "
            f"{dim}-dimensional: a text-prompt head needs the pooled, projected CLIP embedding"
        )
    return TextPromptHead(text.to(next(clip.model.parameters()).device), logit_scale(clip))
