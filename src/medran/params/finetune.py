"""Params of downstream fine-tuning. Each method's section here *is* that method's config:
``medran.methods`` builds a method from it, and a released fine-tuned model saves it and is
loaded back through the same class (``FinetuneParams.method_section``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medran.names import HEADS, METHODS, TASKS
from medran.params.base import Section, check_choices, check_prompts, distinct


class MethodParams(Section):
    """The optimiser every method has: AdamW, the loop's warm-up + cosine schedule (``lp``,
    ``mlp``: their head is fixed, linear and mlp)."""

    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    warmup_steps: int = Field(ge=0)


class NMTuneParams(MethodParams):
    """NMTune (Chen et al., ICLR 2024): the rectifier's size and the regularisers' weights."""

    head: Literal[HEADS]  # type: ignore[valid-type]
    hidden_ratio: int = Field(ge=1)
    scale_init: float = Field(ge=0.0)
    w_mse: float = Field(ge=0.0)
    w_cov: float = Field(ge=0.0)
    w_svd: float = Field(ge=0.0)
    k: int = Field(ge=1)


class AttackParams(MethodParams):
    """The training-time PGD of adversarial methods, in 1/255 pixel units."""

    eps: float = Field(gt=0.0, le=255.0)
    step_size: float = Field(gt=0.0, le=255.0)
    steps: int = Field(ge=1)


class RANParams(NMTuneParams, AttackParams):
    """RAN: NMTune's fields, the training PGD's and the two adversarial weights; w_adv = w_rect
    = 0 is NMTune."""

    w_adv: float = Field(ge=0.0)
    w_rect: float = Field(ge=0.0)


class AdvFTParams(AttackParams):
    """Adversarial training of the head only; w_clean 0 is Madry et al.'s (adversarial loss
    only), 1 the usual clean + adversarial mix."""

    head: Literal[HEADS]  # type: ignore[valid-type]
    w_clean: float = Field(ge=0.0)


class EncoderTuningParams(AttackParams):
    """Methods that adversarially fine-tune (a copy of) the image encoder as well as the head:
    ``encoder_lr`` is the encoder's learning rate (AdamW, same schedule), ``lr`` the head's."""

    encoder_lr: float = Field(gt=0.0, le=1.0)


class FAREParams(EncoderTuningParams):
    """FARE (Schlarmann et al., ICML 2024): the encoder learns || f(x + delta) - f_0(x) ||^2
    against PGD, the ``head`` is trained on its clean features (gradient stopped there)."""

    head: Literal[HEADS]  # type: ignore[valid-type]


class TeCoAParams(EncoderTuningParams):
    """TeCoA (Mao et al., ICLR 2023): the task loss on PGD examples, encoder and head together;
    for classification the head is the text embeddings of the class ``prompts`` (each with one
    ``{}`` for the lower-cased class name, averaged over prompts) plus a per-class bias."""

    prompts: list[str]

    _placeholder = field_validator("prompts")(check_prompts)


class ClsTaskParams(Section):
    """Options of the classification task (``medran.tasks.ClsTask``)."""

    multi_label: Literal["auto"] | bool
    normalize_features: bool


class CoAttentionParams(Section):
    """The VQA co-attention head (``medran.models.coattention.CoAttentionHead``)."""

    depth: int = Field(ge=1)
    width: int = Field(ge=1)
    heads: int = Field(ge=1)
    mlp_ratio: float = Field(gt=0.0)
    dropout: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _divisible(self) -> CoAttentionParams:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must divide by heads {self.heads}")
        return self


class MlpHeadParams(Section):
    """The ``mlp`` head (``medran.models.finetune.MLPHead``), alone or as VQA's classifier."""

    hidden: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)


class FinetuneParams(Section):
    """Downstream fine-tuning: one DVC stage per level x task x method."""

    tasks: list[str]
    methods: list[str]
    seeds: list[int]
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)  # >= 2: the rectifier's BatchNorm needs a batch
    eval_batch_size: int = Field(ge=1)  # feature encoding and clean evaluation
    max_grad_norm: float = Field(ge=0.0)  # 0: no clipping
    device: Literal["auto", "cpu"]  # auto: a GPU when present
    cls: ClsTaskParams
    vqa: CoAttentionParams
    mlp_head: MlpHeadParams
    lp: MethodParams
    mlp: MethodParams
    nmtune: NMTuneParams
    ran: RANParams
    advft: AdvFTParams
    fare: FAREParams
    tecoa: TeCoAParams

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        check_choices("task", value, TASKS)
        return distinct("tasks", value)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        check_choices("method", value, METHODS)
        return distinct("methods", value)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 0:
            raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {value}")
        return distinct("seeds", value)

    def method_config(self, method: str) -> MethodParams:
        """The config of ``method``: its section."""
        check_choices("method", [method], METHODS)
        return getattr(self, method)

    @classmethod
    def method_section(cls, method: str) -> type[MethodParams]:
        """The section class that is ``method``'s config."""
        check_choices("method", [method], METHODS)
        return cls.model_fields[method].annotation
