"""Params of upstream pre-training and its evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medran.params.base import Section, check_model, check_prompts, distinct


class PretrainParams(Section):
    """CLIP contrastive pre-training on one noisy corpus (docs/architecture.md, "Training")."""

    model: str  # a config name trained from scratch, or a released model
    pretrained: str  # tag or file for continued pre-training (e.g. openai)
    epochs: int = Field(ge=1)
    global_batch_size: int = Field(ge=2)
    grad_accum_steps: int = Field(ge=1)
    lr: float = Field(gt=0.0, le=1.0)
    weight_decay: float = Field(ge=0.0)
    warmup_steps: int = Field(ge=0)
    max_grad_norm: float = Field(ge=0.0)
    mixed_precision: Literal["no", "fp16", "bf16"]
    num_processes: int = Field(ge=1)
    accelerate_config: str = Field(min_length=1)
    device: Literal["auto", "cpu"]  # auto: GPUs when present
    checkpoint_every_steps: int = Field(ge=0)  # 0: checkpoint at each epoch end only
    seed: int = Field(ge=0)

    _known_model = field_validator("model")(check_model)

    @model_validator(mode="after")
    def _divisible_batch(self) -> PretrainParams:
        per_step = self.num_processes * self.grad_accum_steps
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} must divide by num_processes x "
                f"grad_accum_steps = {self.num_processes} x {self.grad_accum_steps}"
            )
        return self

    @property
    def batch_size(self) -> int:
        """Per process, per micro-step."""
        return self.global_batch_size // (self.num_processes * self.grad_accum_steps)


class ProbeParams(Section):
    """Linear probes on the chest X-ray set (``medran.evaluation.probe``)."""

    l2: float = Field(gt=0.0)  # weight of the squared weights against the mean loss
    max_iter: int = Field(ge=1)  # L-BFGS iterations
    pixels: int = Field(ge=1, le=256)  # the raw-pixel probe sees grey levels at pixels^2


class EvalUpstreamParams(Section):
    batch_size: int = Field(ge=1)
    recall_at: list[int] = Field(min_length=1)  # retrieval recall@k for each k
    # Zero-shot prompts on the chest X-ray set; {} is the lower-cased label.
    prompts: list[str]
    probe: ProbeParams

    _placeholder = field_validator("prompts")(check_prompts)

    @field_validator("recall_at")
    @classmethod
    def _ks(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError(f"each k must be at least 1 (recall@0 is always 0), got {value}")
        return distinct("recall_at", value)
