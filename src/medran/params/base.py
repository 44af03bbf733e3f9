"""What every params section shares: strict, frozen models, and the error a bad value raises.

Sections declare no defaults: ``params.yaml`` is the one place values live, so DVC tracks
every value the code reads and no default can silently disagree with it.
"""

from __future__ import annotations

import string
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


def check_prompts(value: list[str]) -> list[str]:
    """Prompt templates for class names: a non-empty list, each with exactly one ``{}`` for the
    (lower-cased) label and no other replacement field, so ``template.format(label)`` works."""
    bad = []
    for template in value:
        try:
            fields = [
                (n, spec) for _, n, spec, _ in string.Formatter().parse(template) if n is not None
            ]
        except ValueError:  # an unmatched brace
            fields = []
        if fields != [("", "")]:
            bad.append(template)
    if bad or not value:
        raise ValueError(f"each prompt needs exactly one '{{}}' for the label; bad: {bad}")
    return value


def check_model(value: str) -> str:
    """An open_clip name, ``hf-hub:`` id or ``local-dir:`` folder that can be resolved."""
    from medran.models.names import check_model_name

    check_model_name(value)
    return value
