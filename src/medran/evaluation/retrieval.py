"""Image-text retrieval recall@k and CLIP zero-shot classification."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medran.contracts import recall_key
from medran.models.factory import ClipModel
from medran.models.wrappers import Normalize
from medran.models.zeroshot import class_embeddings


def recall_at_k(similarity: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Recall@k both ways for paired rows: item i's match is column i.

    ``similarity[i, j]`` scores image i against text j. Ties count against the match.
    """
    image_rank, text_rank = _match_rank(similarity), _match_rank(similarity.T)
    out = {}
    for k in ks:
        out[recall_key("i2t", k)] = float((image_rank < k).float().mean())
        out[recall_key("t2i", k)] = float((text_rank < k).float().mean())
    return out


def _match_rank(scores: torch.Tensor) -> torch.Tensor:
    """Per row: how many other candidates score at least as high as the match (column i)."""
    match = scores.diagonal().unsqueeze(1)
    return (scores >= match).sum(dim=1) - 1


@torch.no_grad()
def encode_images(clip: ClipModel, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> L2-normalised image features."""
    norm = Normalize(clip.mean, clip.std)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].float().div(255.0)
        if batch.shape[-1] != clip.image_size:
            batch = torch.nn.functional.interpolate(batch, size=clip.image_size, mode="bilinear")
        chunks.append(clip.model.encode_image(norm(batch), normalize=True))
    return torch.cat(chunks)


@torch.no_grad()
def encode_texts(clip: ClipModel, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    tokenizer = clip.tokenizer()
    chunks = [
        clip.model.encode_text(tokenizer(list(texts[start : start + batch_size])), normalize=True)
        for start in range(0, len(texts), batch_size)
    ]
    return torch.cat(chunks)


def zero_shot_accuracy(
    clip: ClipModel,
    image_features: torch.Tensor,
    labels: Sequence[Sequence[str]],
    classes: Sequence[str],
    prompts: Sequence[str],
    batch_size: int,
) -> float:
    """Top-1 zero-shot accuracy: the predicted class must be one of the item's labels
    (classes by CLIP's prompt ensembling, :func:`medran.models.zeroshot.class_embeddings`)."""
    class_features = class_embeddings(clip, classes, prompts, batch_size).to(image_features)
    predicted = (image_features @ class_features.T).argmax(dim=1)
    hits = [classes[p] in set(item) for p, item in zip(predicted.tolist(), labels, strict=True)]
    return sum(hits) / max(1, len(hits))
