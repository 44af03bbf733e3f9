"""The contract every downstream method follows, and the pieces the methods share.

A method is a small object: it says which head it wants, whether it needs NMTune's rectifier,
whether it needs raw images every step (adversarial methods) or can train on cached encoder
features, whether it fine-tunes the encoder (``tunes_encoder``: then the model trains a copy
of it at its own learning rate, and clean evaluation re-encodes), and turns a batch into named
losses for the one training loop (``"loss"`` is optimised, the rest are logged). Its config
is its own section of ``params.yaml`` (``finetune.<method>``, a class in
``medran.params.finetune``): there is no second definition.

The model is a ``FineTuneModel`` (``medran.models.finetune``): an ``encoder`` (frozen unless
the method tunes it), a ``rectifier`` (identity unless the method builds one) and a ``head``
taking ``(features, context)``; ``features``/``forward_features``/``forward`` compose them.
A batch is a mapping with ``targets``, optional ``context`` (question token features for
VQA) and either ``z`` (cached encoder features) or ``images`` ((B, 3, H, W) in [0, 1]).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from medran.attacks.pgd import Budget, Score, eval_mode, pgd
from medran.errors import InputError
from medran.params import AttackParams, MethodParams

if TYPE_CHECKING:  # for type hints only
    from medran.models.factory import ClipModel
    from medran.tasks.base import Task

Batch = Mapping[str, Any]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> scalar
Objective = Callable[[nn.Module, Batch], dict[str, torch.Tensor]]


class Method(ABC):
    """Base class of the fine-tuning methods (see the module docstring for the contract)."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodParams]] = MethodParams
    default_head: ClassVar[str] = "linear"
    needs_rectifier: ClassVar[bool] = False
    # True: the model trains a copy of the encoder (config ``encoder_lr``, an
    # ``EncoderTuningParams``), which is saved with the model; clean evaluation re-encodes.
    tunes_encoder: ClassVar[bool] = False

    def __init__(self, config: MethodParams):
        if not isinstance(config, self.config_class):
            raise InputError(
                f"method {self.name!r} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    @property
    def head_type(self) -> str:
        """``linear`` or ``mlp``: the head the task builds for this method."""
        return getattr(self.config, "head", self.default_head)

    @property
    def adversarial(self) -> bool:
        """True when every step needs raw images (no training on cached features)."""
        return False

    @property
    def group_lrs(self) -> dict[str, float]:
        """Learning rates of the model's parameters whose name starts with a key (the rest
        use the config's ``lr``): the tuned encoder's ``encoder_lr``."""
        return {"encoder.": self.config.encoder_lr} if self.tunes_encoder else {}

    def build_rectifier(self, dim: int) -> nn.Module:
        """The feature rectifier for ``dim``-dimensional features; identity by default."""
        return nn.Identity()

    def build_head(
        self, task: Task, encoder: nn.Module, clip: ClipModel, options: dict[str, Any]
    ) -> nn.Module:
        """A new head for ``task`` on ``encoder``: the task's head of :attr:`head_type`, with
        ``options`` (the ``finetune`` head params), by default."""
        return task.build_head(self.head_type, encoder, clip, **options)

    @abstractmethod
    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        """Named losses for one batch; ``"loss"`` is the one optimised."""

    def objective(self, loss_fn: LossFn) -> Objective:
        """The ``(model, batch) -> losses`` callable the training loop takes."""
        return functools.partial(self.losses, loss_fn=loss_fn)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def clean_features(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cached features ``z`` when the batch has them, else the frozen encoder's, no graph."""
    if "z" in batch:
        return batch["z"]
    if "images" in batch:
        # The encoder is frozen: no graph is needed through the clean features.
        with torch.no_grad():
            return model.features(batch["images"])
    raise InputError(f"a batch needs 'z' (cached features) or 'images'; got keys {sorted(batch)}")


def require_images(batch: Batch, method: str) -> torch.Tensor:
    """The batch's raw images; adversarial methods cannot work from cached features."""
    if "images" not in batch:
        raise InputError(
            f"method {method!r} is adversarial and needs raw 'images' in every batch "
            f"(cached features cannot be attacked); got keys {sorted(batch)}"
        )
    return batch["images"]


def attack(
    model: nn.Module, images: torch.Tensor, score: Score, config: AttackParams
) -> torch.Tensor:
    """PGD ascent of ``score`` (adversarial images -> score) from a random start, with the
    method's training budget (``config``, 1/255 units), ``model`` in eval mode.

    Eval mode makes BatchNorm use its running statistics, so crafting neither depends on the
    batch's composition nor updates them; every module's mode is restored afterwards. Random
    starts come from the global RNG, which the loop seeds and checkpoints.
    """
    budget = Budget(config.eps / 255, config.step_size / 255, config.steps, random_start=True)
    with eval_mode(model):
        return pgd(score, images, budget)


def craft(
    model: nn.Module, batch: Batch, loss_fn: LossFn, config: AttackParams, method: str
) -> torch.Tensor:
    """PGD examples against the current model (encoder + rectifier + head) and the task loss
    (see :func:`attack`)."""
    images, targets, context = require_images(batch, method), batch["targets"], batch.get("context")
    return attack(model, images, lambda adv: loss_fn(model(adv, context), targets), config)


def trainable_parameters(model: nn.Module) -> tuple[int, float]:
    """(number of trainable parameters, their fraction of all parameters, encoder included)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, trainable / total if total else 0.0
