"""The downstream model every fine-tuning method trains: encoder -> rectifier -> head.

``FineTuneModel`` is the contract between tasks, methods and robust evaluation:

- ``encoder``: always in eval mode (no dropout, fixed BatchNorm statistics) and differentiable
  with respect to its input, so PGD can attack the whole model. It takes images in [0, 1] and
  normalises inside, so an attack's eps is in pixel space. Frozen in place (no parameter
  gradients) unless ``tune_encoder``: then the model trains a deep copy of it, and the
  pre-trained model it came from never changes.
- ``rectifier``: ``nn.Identity()`` for lp/mlp/advft, the residual rectifier for nmtune/ran.
- ``head``: ``head(features, context)``; ``context`` is ``None`` for classification and a
  :class:`QuestionContext` for VQA.

Encoders built from a :class:`~medran.models.factory.ClipModel`:

- :class:`ImageFeatureEncoder`: pooled, projected CLIP image embeddings, L2-normalised onto the
  sphere of radius sqrt(D) (see the class for why).
- :class:`ImageTokenEncoder`: per-patch tokens of the last ViT block after the final LayerNorm,
  at the tower's width (not projected: open_clip's projection is trained for the pooled token
  only, and the co-attention head projects both modalities to its own width anyway).
- :class:`TextTokenEncoder`: per-token outputs of the CLIP text tower after ``ln_final``, at the
  text width, with a validity mask from the token ids; run once per question under no_grad.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from medran.errors import InputError
from medran.models.factory import ClipModel
from medran.models.wrappers import ImageEncoder


class QuestionContext(NamedTuple):
    """Question token features ``tokens`` (B, L, D_t) and ``mask`` (B, L), True = real token.

    A NamedTuple so torch's default collate and Accelerate's ``send_to_device`` handle it.
    """

    tokens: torch.Tensor
    mask: torch.Tensor


class FineTuneModel(nn.Module):
    """``head(rectifier(encoder(images)), context)``; the encoder frozen in place, or a trained
    copy of it with ``tune_encoder``.

    ``encoder_hash`` is the hash of the pre-trained encoder the model was built on (taken
    before any tuning), which a released model is checked against when it is loaded.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        rectifier: nn.Module | None = None,
        tune_encoder: bool = False,
    ):
        super().__init__()
        self.encoder_hash = weights_hash(encoder)
        self.tune_encoder = tune_encoder
        if tune_encoder:
            # A copy: the encoder shares its weights with the ClipModel, which other seeds and
            # models of the level reuse and which must stay the pre-trained model.
            encoder = copy.deepcopy(encoder)
        self.encoder = encoder.eval()
        # Untuned, frozen in place: the encoder usually shares its weights with the ClipModel
        # it came from, which is then frozen too (it is not trained downstream anyway).
        for p in self.encoder.parameters():
            p.requires_grad_(tune_encoder)
        if tune_encoder:
            _freeze_unused(self.encoder)
        self.rectifier = rectifier if rectifier is not None else nn.Identity()
        self.head = head

    @property
    def trained_parts(self) -> tuple[str, ...]:
        """The submodules fine-tuning changes, hence what a released model saves."""
        return ("encoder", "rectifier", "head") if self.tune_encoder else ("rectifier", "head")

    def train(self, mode: bool = True) -> FineTuneModel:
        """Train rectifier and head (and a tuned encoder's weights); the encoder stays in eval
        mode (no dropout, fixed BatchNorm statistics)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward_features(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.head(self.rectifier(z), context)

    def forward(self, images: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.forward_features(self.features(images), context)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of :attr:`trained_parts`: what a fine-tuning run needs to save."""
        return {
            f"{prefix}.{k}": v
            for prefix in self.trained_parts
            for k, v in getattr(self, prefix).state_dict().items()
        }


def _freeze_unused(encoder: nn.Module) -> None:
    """Freeze the parameters the encoder's output does not depend on (a ResNet tower's
    attention pool, or a ViT's projection, when the encoder gives patch tokens): they never
    train, so they are neither optimised nor counted as trainable."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    size = getattr(encoder, "size", None)
    if not params or size is None:
        return
    probe = torch.zeros(1, 3, size, size, device=params[0].device)
    with torch.enable_grad():
        grads = torch.autograd.grad(encoder(probe).sum(), params, allow_unused=True)
    for p, grad in zip(params, grads, strict=True):
        if grad is None:
            p.requires_grad_(False)


def weights_hash(module: nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class _ResizeNormalize(ImageEncoder):
    """Shared input handling: resize to the tower's size, then the model's normalisation."""

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.size, self.size):
            images = nn.functional.interpolate(
                images, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return self.norm(images)


class ImageFeatureEncoder(_ResizeNormalize):
    """[0, 1] images -> pooled projected CLIP features (B, D).

    With ``normalize`` (default) features are L2-normalised and scaled by sqrt(D). CLIP's
    contrastive loss only trains the direction (it compares cosines), and the norm drifts from
    one pre-trained model to the next, so normalising makes features of different noise levels
    comparable. The sqrt(D) scale gives coordinates unit RMS, the scale the rectifier's and
    heads' default learning rates (NMTune: AdamW 1e-3) assume; unit-norm vectors (coordinates
    ~1/sqrt(D)) would make them crawl. ``normalize=False`` gives the raw projection. The
    per-dimension offset shared by all images is removed by the heads (``standardizer``).
    """

    def __init__(self, clip: ClipModel, normalize: bool = True):
        super().__init__(clip, normalize=False)
        self.out_dim = int(clip.model_cfg["embed_dim"])
        self.unit = normalize
        self.scale = math.sqrt(self.out_dim)
        self.cache_tag = "pooled-unit" if normalize else "pooled-raw"  # feature cache key part

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.visual(self._prepare(images))
        if self.unit:
            features = nn.functional.normalize(features, dim=-1) * self.scale
        return features


class ImageTokenEncoder(_ResizeNormalize):
    """[0, 1] images -> patch tokens (B, T, W) of the last block, after the final LayerNorm.

    Uses open_clip's ``forward_intermediates`` (native ViT, timm and ModifiedResNet towers have
    it) rather than flipping ``visual.output_tokens``, which would change the shared ClipModel.
    The class token is dropped; tokens are at the tower width ``out_dim``. A ResNet tower gives
    its last stage's feature map instead, one token per position (2 x 2 at 64 px).
    """

    def __init__(self, clip: ClipModel):
        super().__init__(clip, normalize=False)
        self.grid = isinstance(self.visual, ModifiedResNet)  # intermediates only as NCHW
        device, was_training = next(self.visual.parameters()).device, self.visual.training
        self.visual.eval()  # patch dropout (train mode) would change the token count
        with torch.no_grad():
            probe = self(torch.zeros(1, 3, self.size, self.size, device=device))
        self.visual.train(was_training)
        self.n_tokens, self.out_dim = int(probe.shape[1]), int(probe.shape[2])
        self.cache_tag = "tokens-last"  # feature cache key part

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.visual.forward_intermediates(
            self._prepare(images),
            indices=1,
            normalize_intermediates=True,
            intermediates_only=True,
            output_fmt="NCHW" if self.grid else "NLC",
        )
        tokens = out["image_intermediates"][-1]
        return tokens.flatten(2).transpose(1, 2) if self.grid else tokens


class TextTokenEncoder(nn.Module):
    """Question texts -> :class:`QuestionContext` from the CLIP text tower (no pooling).

    Questions are never attacked, so they are encoded once, under no_grad. The mask marks real
    tokens (token id != the tower's pad id); the causal CLIP text tower never lets a real token
    see padding, so the padded positions can be trimmed after encoding.
    """

    def __init__(self, clip: ClipModel):
        super().__init__()
        self.model = clip.model
        self.tokenize = clip.tokenizer()
        self.pad_id = _pad_id(clip.model)
        self.out_dim = int(self.encode(["probe"]).tokens.shape[-1])

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> QuestionContext:
        device = next(self.model.parameters()).device
        tokens, masks = [], []
        for start in range(0, len(texts), batch_size):
            ids = self.tokenize(list(texts[start : start + batch_size])).to(device)
            features, valid = self._tokens(ids)
            tokens.append(features.float().cpu())
            masks.append(valid.cpu())
        if not tokens:
            raise InputError("no questions to encode")
        token, mask = torch.cat(tokens), torch.cat(masks)
        length = int(mask.any(0).nonzero().max()) + 1  # trim columns that are padding everywhere
        return QuestionContext(token[:, :length].contiguous(), mask[:, :length].contiguous())

    def _tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model, valid = self.model, ids != self.pad_id
        if hasattr(model, "token_embedding"):  # open_clip CLIP: the text tower is inlined
            cast = model.transformer.get_cast_dtype()
            length = ids.shape[1]
            x = model.token_embedding(ids).to(cast) + model.positional_embedding[:length].to(cast)
            mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
            return model.ln_final(model.transformer(x, attn_mask=mask)), valid
        with _output_tokens(model.text):  # CustomTextCLIP: TextTransformer or HFTextEncoder
            _, tokens = model.text(ids)
        # An HF tower with a CLS pooler drops the CLS position (first) from its tokens.
        return tokens, valid[:, ids.shape[1] - tokens.shape[1] :]


def _pad_id(model: nn.Module) -> int:
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "config"):
        return int(text.config.pad_token_id)
    return int(getattr(text, "pad_id", 0))


@contextmanager
def _output_tokens(tower: nn.Module) -> Iterator[None]:
    previous = tower.output_tokens
    tower.output_tokens = True
    try:
        yield
    finally:
        tower.output_tokens = previous


def standardizer(in_dim: int, enabled: bool) -> nn.Module:
    """Per-dimension standardisation of the head's input (BatchNorm without affine).

    Frozen CLIP features share a large common component (cosines between images of one
    domain are often > 0.9), so a linear head on them learns slowly; standardising first is
    the linear-probe protocol of MAE/MoCo v3 and is still linear at inference. ``momentum=None``
    keeps the exact running average: the input of a head on frozen features is stationary.
    """
    return nn.BatchNorm1d(in_dim, affine=False, momentum=None) if enabled else nn.Identity()


class LinearHead(nn.Module):
    """[standardise ->] linear classifier over features; ignores the context."""

    def __init__(self, in_dim: int, n_out: int, standardize: bool = True):
        super().__init__()
        self.norm = standardizer(in_dim, standardize)
        self.fc = nn.Linear(in_dim, n_out)

    def forward(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.fc(self.norm(z))


class MLPHead(nn.Module):
    """[standardise ->] Linear -> ReLU -> Dropout -> Linear; ignores the context."""

    def __init__(
        self,
        in_dim: int,
        n_out: int,
        hidden: int = 512,
        dropout: float = 0.1,
        standardize: bool = True,
    ):
        super().__init__()
        self.norm = standardizer(in_dim, standardize)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
        )

    def forward(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.net(self.norm(z))


HEADS: dict[str, Callable[..., nn.Module]] = {"linear": LinearHead, "mlp": MLPHead}


def build_head(name: str, in_dim: int, n_out: int, **options: Any) -> nn.Module:
    """The head ``name`` from :data:`HEADS` (options: ``standardize``; mlp also ``hidden``,
    ``dropout``); an unknown name or option fails listing the valid ones."""
    if name not in HEADS:
        raise InputError(f"unknown head {name!r}; valid heads: {sorted(HEADS)}")
    allowed = set(inspect.signature(HEADS[name]).parameters) - {"in_dim", "n_out"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(f"unknown {name} head options {unknown}; valid: {sorted(allowed)}")
    return HEADS[name](in_dim, n_out, **options)
