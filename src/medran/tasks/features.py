"""Frozen-encoder features, computed once and cached on disk (safetensors).

Methods whose inputs are fixed features (``lp``, ``mlp``, ``nmtune``) encode each split once per
pre-trained model and reuse the result. The cache key must name everything the features depend
on: :func:`feature_key` joins the task, split, the split's data fingerprint, the encoder kind
and a hash of the encoder's weights. A cache file also stores its key, and a file whose key
does not match (a digest collision or a hand-copied file) is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from medran.models.finetune import weights_hash
from medran.tasks.base import Split

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_split(
    model_or_encoder: nn.Module, images: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> encoder outputs on the CPU, float32, in eval mode.

    Takes a :class:`~medran.models.finetune.FineTuneModel` (its ``features``) or an encoder.
    """
    encode = getattr(model_or_encoder, "features", model_or_encoder)
    was_training = model_or_encoder.training
    model_or_encoder.eval()
    device = next(model_or_encoder.parameters()).device
    chunks = [
        encode(images[start : start + batch_size].to(device).float().div(255.0)).float().cpu()
        for start in range(0, len(images), batch_size)
    ]
    model_or_encoder.train(was_training)
    if not chunks:
        raise ValueError("no images to encode")
    return torch.cat(chunks)


def feature_key(split: Split, encoder: nn.Module) -> str:
    """The cache key of ``encoder``'s features of ``split``: task, split name, the split's
    data fingerprint and image size, the encoder's kind (``cache_tag``) and weights hash."""
    size = "x".join(map(str, split.images.shape[-2:]))
    tag = getattr(encoder, "cache_tag", type(encoder).__name__)
    return f"{split.task}-{split.name}-{split.fingerprint()}-{size}-{tag}-{weights_hash(encoder)}"


def cached_features(cache_dir: Path, key: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``fn()``, stored under ``key`` in ``cache_dir`` and loaded instead on the next call."""
    path = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                stored_key = (f.metadata() or {}).get("key")
            if stored_key == key:
                log.info("features %s: cache hit (%s)", key, path)
                return load_file(path)["features"]
            log.warning("features %s: %s holds %r, recomputing", key, path, stored_key)
        except (SafetensorError, OSError) as e:
            log.warning("features %s: unreadable cache file %s (%s), recomputing", key, path, e)
    features = fn().detach().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({"features": features}, tmp, metadata={"key": key})
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    log.info("features %s: computed %s, cached in %s", key, tuple(features.shape), path)
    return features
