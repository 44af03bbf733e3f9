"""Caption attack backends (docs/architecture.md, "Attacks"): ``rules``, ``llm`` and ``captioner``.

``BACKENDS`` maps a backend name to its module's ``create(params, resources)``. The modules
import transformers / open_clip only inside ``create``, so importing the registry is cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from medran.attacks.captions import captioner, llm, rules
from medran.attacks.captions.base import CaptionBackend, CaptionJob, Resources, Rewrite
from medran.errors import InputError
from medran.params import AttackCaptionsParams

Factory = Callable[[AttackCaptionsParams, Resources], CaptionBackend]

BACKENDS: dict[str, Factory] = {
    "rules": rules.create,
    "llm": llm.create,
    "captioner": captioner.create,
}

__all__ = ["BACKENDS", "CaptionBackend", "CaptionJob", "Resources", "Rewrite", "get_backend"]


def get_backend(name: str) -> Factory:
    """The factory of backend ``name``; an unknown name lists the known ones."""
    if name not in BACKENDS:
        raise InputError(f"unknown caption backend {name!r}; allowed: {sorted(BACKENDS)}")
    return BACKENDS[name]
