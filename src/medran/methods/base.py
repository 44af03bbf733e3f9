"""The contract every downstream method follows, and the pieces the methods share.

A method is a small object: it says which head it wants, whether it needs NMTune's rectifier,
whether it needs raw images every step (adversarial methods) or can train on cached encoder
features, and turns a batch into named losses for the one training loop (``"loss"`` is
optimised, the rest are logged). Its settings are a frozen dataclass whose fields are the
method's params; every method carries the optimiser defaults of NMTune (AdamW, lr 1e-3,
weight decay 1e-4, the loop's cosine schedule).

The model is a ``FineTuneModel`` (``medran.models.finetune``): a frozen ``encoder``, a
``rectifier`` (identity unless the method builds one) and a ``head`` taking
``(features, context)``; ``features``/``forward_features``/``forward`` compose them.
A batch is a mapping with ``targets``, optional ``context`` (question token features for
VQA) and either ``z`` (cached encoder features) or ``images`` ((B, 3, H, W) in [0, 1]).
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from medran.errors import InputError
from medran.evaluation.pgd import eval_mode, pgd

Batch = Mapping[str, Any]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> scalar
Objective = Callable[[nn.Module, Batch], dict[str, torch.Tensor]]
HEAD_TYPES = ("linear", "mlp")


def check_fields(
    config: object, names: tuple[str, ...], ok: Callable[[Any], bool], allowed: str
) -> None:
    """Raise :class:`InputError` naming the first field whose value ``ok`` rejects."""
    for name in names:
        value = getattr(config, name)
        if not ok(value):
            raise InputError(f"{type(config).__name__}.{name} = {value!r}; allowed: {allowed}")


@dataclass(frozen=True)
class MethodConfig:
    """Optimiser settings every method has (the schedule is the loop's warmup + cosine)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self, ("lr",), lambda v: v > 0, "> 0")
        check_fields(self, ("weight_decay", "warmup_steps"), lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class AttackConfig(MethodConfig):
    """The training-time PGD of adversarial methods, budgets in 1/255 pixel units.

    eps 4/255 sits mid-way in the evaluated range (1-8/255): a larger training budget costs
    clean accuracy on small medical sets. step 2/255 is Madry's 2.5 * eps / steps, so five
    steps can cross the ball from any random start. Five steps keep CPU runs affordable.
    """

    eps: float = 4.0
    step_size: float = 2.0
    steps: int = 5

    def validate(self) -> None:
        super().validate()
        check_fields(self, ("eps", "step_size"), lambda v: 0 < v <= 255, "in (0, 255] (1/255)")
        check_fields(self, ("steps",), lambda v: v >= 1, ">= 1")


def make_config(config_class: type[MethodConfig], overrides: Mapping[str, Any]) -> MethodConfig:
    """Build a config from params, rejecting unknown keys and values of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InputError(
            f"unknown {config_class.__name__} keys {unknown}; allowed: {sorted(fields)}"
        )
    values = {}
    for key, value in overrides.items():
        expected = type(fields[key].default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise InputError(
                f"{config_class.__name__}.{key} = {value!r} must be {expected.__name__}"
            )
        values[key] = value
    return config_class(**values)


class Method(ABC):
    """Base class of the fine-tuning methods (see the module docstring for the contract)."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    default_head: ClassVar[str] = "linear"
    needs_rectifier: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None):
        config = self.config_class() if config is None else config
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

    def build_rectifier(self, dim: int) -> nn.Module:
        """The feature rectifier for ``dim``-dimensional features; identity by default."""
        return nn.Identity()

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


def craft(
    model: nn.Module, batch: Batch, loss_fn: LossFn, config: AttackConfig, method: str
) -> torch.Tensor:
    """PGD examples against the current model (encoder + rectifier + head), in eval mode.

    Eval mode makes BatchNorm use its running statistics, so crafting neither depends on the
    batch's composition nor updates them; every module's mode is restored afterwards. Random
    starts come from the global RNG, which the loop seeds and checkpoints.
    """
    images, targets, context = require_images(batch, method), batch["targets"], batch.get("context")

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x, context)

    with eval_mode(model):
        eps, step_size = config.eps / 255, config.step_size / 255
        return pgd(forward, loss_fn, images, targets, eps, step_size, config.steps)


def trainable_parameters(model: nn.Module) -> tuple[int, float]:
    """(number of trainable parameters, their fraction of all parameters, encoder included)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, trainable / total if total else 0.0
