"""What every params section shares: strict, frozen models, and the error a bad value raises.

Sections declare no defaults: ``params.yaml`` is the one place values live, so DVC tracks
every value the code reads and no default can silently disagree with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from medran.errors import InputError


class ParamsError(InputError):
    """A value in params.yaml is missing, unknown or out of range."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_choices(kind: str, values: Sequence[str], registry: Iterable[str]) -> None:
    """Raise :class:`ParamsError` unless ``values`` is a non-empty list of names from
    ``registry`` (e.g. a stage's task and method arguments), listing the valid names."""
    valid = sorted(registry)
    unknown = [v for v in values if v not in valid]
    if unknown or not values:
        raise ParamsError(f"unknown {kind} {unknown or values}; valid {kind}s: {valid}")


def distinct(key: str, value: list[Any]) -> list[Any]:
    if len(set(value)) != len(value):
        raise ValueError(f"{key} must be distinct, got {value}")
    return value


def check_model(value: str) -> str:
    """An open_clip name, ``hf-hub:`` id or ``local-dir:`` folder that can be resolved."""
    from medran.models.names import check_model_name

    check_model_name(value)
    return value
