"""Typed view of ``params.yaml``.

Every stage loads its section through :func:`load_params`, so a typo, a wrong type or an
out-of-range value fails before any work starts, with a message that names the key, the bad
value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medran.errors import InputError

ROLES = ("upstream", "targets", "cls", "vqa")
ROLE_KIND = {"upstream": "captions", "targets": "captions", "cls": "labels", "vqa": "vqa"}


class ParamsError(InputError):
    """A value in params.yaml is missing, unknown or out of range."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthesizeParams(Section):
    """Sizes and knobs of the embedded synthetic corpus (DESIGN §3)."""

    seed: int = Field(0, ge=0)
    image_size: int = Field(64, ge=32, le=512)
    n_upstream: int = Field(800, ge=10)
    n_targets: int = Field(200, ge=10)
    n_cls_patients: int = Field(200, ge=10)
    max_followups: int = Field(3, ge=1, le=10)
    n_vqa_images: int = Field(150, ge=10)
    questions_per_image: int = Field(5, ge=1, le=7)
    multi_label_fraction: float = Field(0.2, ge=0.0, le=1.0)
    pixel_noise: float = Field(0.06, ge=0.0, le=1.0)
    # Downstream sets are rendered with a shifted distribution so transfer is really measured.
    downstream_contrast: float = Field(0.8, gt=0.0, le=2.0)
    downstream_scale: float = Field(1.1, gt=0.5, le=2.0)


class SourceSpec(Section):
    """One dataset on disk, in a real dataset's layout, read by a named format reader."""

    format: str
    path: str
    options: dict[str, str | bool | int | float] = Field(default_factory=dict)

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
    train: float = Field(0.8, gt=0.0, lt=1.0)
    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class PrepareDataParams(Section):
    image_size: int = Field(64, ge=16, le=1024)
    # "group": hash group ids into splits; "source": keep the splits the source ships with.
    split_strategy: Literal["group", "source"] = "group"
    split_fractions: SplitFractions = SplitFractions()
    sources: dict[str, SourceSpec]

    @field_validator("sources")
    @classmethod
    def _roles(cls, value: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        from medran.data.readers import READERS

        missing = sorted(set(ROLES) - set(value))
        unknown = sorted(set(value) - set(ROLES))
        if missing or unknown:
            raise ValueError(
                f"sources must name exactly {list(ROLES)}; missing {missing}, unknown {unknown}"
            )
        for role, spec in value.items():
            kind = READERS[spec.format].kind
            if kind != ROLE_KIND[role]:
                fits = sorted(n for n, r in READERS.items() if r.kind == ROLE_KIND[role])
                raise ValueError(
                    f"sources.{role}.format {spec.format!r} reads {kind} data; "
                    f"{role} needs one of {fits}"
                )
        return value


class ValidateDataParams(Section):
    min_rows: int = Field(1, ge=1)
    image_mode: Literal["RGB"] = "RGB"
    # How many offending row ids/values a failed expectation lists in result.json and the error.
    max_examples: int = Field(10, ge=1, le=1000)


class Params(Section):
    seed: int = 0
    experiment: str = Field("medran", min_length=1)
    synthesize: SynthesizeParams = SynthesizeParams()
    prepare_data: PrepareDataParams
    validate_data: ValidateDataParams = ValidateDataParams()


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {error['input']!r})"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} = {error['input']!r}: {message}"


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` listing every bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        lines = "\n  ".join(_describe(err) for err in e.errors())
        raise ParamsError(f"{source}: invalid parameters:\n  {lines}") from e


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {str(path)!r} does not exist")
    with path.open() as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return parse_params(raw, source=str(path))
