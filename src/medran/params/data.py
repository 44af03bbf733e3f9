"""Params of the data stages: the synthetic corpus, data preparation, the quality gates, the
attack's surrogate encoders, the image and caption attacks and the noisy corpora."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medran.names import ROLE_KIND, ROLES
from medran.params.base import Section, check_model


class SynthesizeParams(Section):
    """Sizes and knobs of the embedded synthetic corpus (docs/architecture.md, "Data")."""

    seed: int = Field(ge=0)
    image_size: int = Field(ge=32, le=512)
    n_upstream: int = Field(ge=10)
    # Chest radiographs among the upstream pairs (the rest: any body part); what the
    # downstream chest X-ray tasks need the pre-trained encoder to have seen.
    upstream_chest_xray_fraction: float = Field(ge=0.0, le=1.0)
    n_targets: int = Field(ge=10)
    n_cls_patients: int = Field(ge=10)
    max_followups: int = Field(ge=1, le=10)
    n_vqa_images: int = Field(ge=10)
    questions_per_image: int = Field(ge=1, le=7)
    multi_label_fraction: float = Field(ge=0.0, le=1.0)
    pixel_noise: float = Field(ge=0.0, le=1.0)
    # Downstream sets are rendered with a shifted distribution so transfer is really measured.
    downstream_contrast: float = Field(gt=0.0, le=2.0)
    downstream_scale: float = Field(gt=0.5, le=2.0)


class SourceSpec(Section):
    """One dataset on disk, in a real dataset's layout, read by a named format reader."""

    format: str
    path: str
    options: dict[str, str | bool | int | float]

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from medran.data.readers import READERS

        if value not in READERS:
            raise ValueError(f"unknown format {value!r}; allowed: {sorted(READERS)}")
        return value

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        if not value or Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError(
                f"path {value!r} must be relative to the project root and stay inside it"
            )
        return value


class SplitFractions(Section):
    train: float = Field(gt=0.0, lt=1.0)
    val: float = Field(ge=0.0, lt=1.0)
    test: float = Field(gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class PrepareDataParams(Section):
    image_size: int = Field(ge=16, le=1024)
    max_image_pixels: int = Field(ge=1)  # a larger source image is refused before decoding
    decode_threads: int = Field(ge=1)  # images decoded at once
    # "group": hash group ids into splits; "source": keep the splits the source ships with.
    split_strategy: Literal["group", "source"]
    # Per role: the downstream test splits are sized for statistical power, the upstream
    # corpus keeps most pairs for pre-training.
    split_fractions: dict[str, SplitFractions]
    sources: dict[str, SourceSpec]

    @field_validator("split_fractions")
    @classmethod
    def _fraction_roles(cls, value: dict[str, SplitFractions]) -> dict[str, SplitFractions]:
        _check_roles("split_fractions", value)
        return value

    @field_validator("sources")
    @classmethod
    def _roles(cls, value: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        from medran.data.readers import READERS

        _check_roles("sources", value)
        for role, spec in value.items():
            kind = READERS[spec.format].kind
            if kind != ROLE_KIND[role]:
                fits = sorted(n for n, r in READERS.items() if r.kind == ROLE_KIND[role])
                raise ValueError(
                    f"sources.{role}.format {spec.format!r} reads {kind} data; "
                    f"{role} needs one of {fits}"
                )
        return value


def _check_roles(name: str, value: dict) -> None:
    missing, unknown = sorted(set(ROLES) - set(value)), sorted(set(value) - set(ROLES))
    if missing or unknown:
        raise ValueError(
            f"{name} must name exactly {list(ROLES)}; missing {missing}, unknown {unknown}"
        )


class ValidateDataParams(Section):
    min_rows: int = Field(ge=1)
    image_mode: Literal["RGB"]
    # How many offending row ids/values a failed expectation lists in result.json and the error.
    max_examples: int = Field(ge=1, le=1000)
    # Adversarial gate: the fraction of saved attacks closer to the target than to the clean image.
    min_attack_success: float = Field(ge=0.0, le=1.0)
    # Noisy gate: |adversarial fraction of training rows - level| allowed for each noise level.
    level_tolerance: float = Field(ge=0.0, le=1.0)


class TrainSurrogateParams(Section):
    """The attack's encoder f_phi, and the black-box encoder of the retrieval captioner."""

    # "train": train ``model`` (a config name) on the target pool, disjoint from the corpus
    # that is attacked; "pretrained": load ``model`` (+ ``pretrained`` tag) as released.
    mode: Literal["train", "pretrained"]
    model: str
    pretrained: str
    captioner_model: str
    captioner_pretrained: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0.0, le=1.0)
    weight_decay: float = Field(ge=0.0)
    warmup_steps: int = Field(ge=0)
    seed: int = Field(ge=0)

    _known_model = field_validator("model", "captioner_model")(check_model)


PAIRING_RULES = ("different_body_part", "random")


class AttackImagesParams(Section):
    """MF-ii: PGD on cos(f(x + delta), f(x_target)) in an L-inf ball (docs/architecture.md,
    "Attacks")."""

    eps: int = Field(gt=0, le=255, description="L-inf budget in 1/255 units")
    step_size: float = Field(gt=0.0, le=255.0, description="1/255 units")
    steps: int = Field(ge=1)
    random_start: bool
    pairing: Literal[PAIRING_RULES]  # type: ignore[valid-type]
    # Attack enough training pairs for every noise level up to this fraction.
    max_fraction: float = Field(gt=0.0, le=1.0)
    batch_size: int = Field(ge=1)
    shard_size: int = Field(ge=1)
    seed: int = Field(ge=0)


class LlmParams(Section):
    model: str  # a local folder or hub id of a transformers text-generation model
    max_new_tokens: int = Field(ge=1)
    max_length_ratio: float = Field(gt=1.0)


class CaptionerParams(Section):
    # "retrieval": nearest clean caption under the black-box captioner encoder (embedded
    # default); anything else: a transformers image-to-text model (local folder or hub id).
    model: str
    prompt: str
    max_new_tokens: int = Field(ge=1)


class AttackCaptionsParams(Section):
    backend: Literal["rules", "llm", "captioner"]
    llm: LlmParams
    captioner: CaptionerParams
    seed: int = Field(ge=0)

    @model_validator(mode="after")
    def _llm_named(self) -> AttackCaptionsParams:
        if self.backend == "llm" and not self.llm.model:
            raise ValueError("backend 'llm' needs attack_captions.llm.model (a folder or hub id)")
        return self


CAPTION_CHOICES = ("clean", "rewrite", "target", "captioner")


class BuildNoisyParams(Section):
    # Which caption goes with x_adv; "rewrite" is the caption backend's output.
    caption: Literal[CAPTION_CHOICES]  # type: ignore[valid-type]
