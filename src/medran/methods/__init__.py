"""Downstream fine-tuning methods (DESIGN §6): a registry of small method objects.

``lp`` linear probe, ``mlp`` MLP head, ``nmtune`` NMTune's rectifier and regularisers,
``ran`` NMTune plus an adversarial term (our RAN), ``advft`` adversarial training of the head.
"""

from __future__ import annotations

from typing import Any

from medran.errors import InputError
from medran.methods.advft import AdvFT, AdvFTConfig
from medran.methods.base import (
    AttackConfig,
    Method,
    MethodConfig,
    make_config,
    trainable_parameters,
)
from medran.methods.lp import LinearProbe
from medran.methods.mlp import MLPProbe
from medran.methods.nmtune import NMTune, NMTuneConfig
from medran.methods.ran import RAN, RANConfig

METHODS: dict[str, type[Method]] = {
    "lp": LinearProbe,
    "mlp": MLPProbe,
    "nmtune": NMTune,
    "ran": RAN,
    "advft": AdvFT,
}


def get_method(name: str, **overrides: Any) -> Method:
    """The method called ``name``, its config built from ``overrides`` (params values)."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; allowed: {sorted(METHODS)}")
    method = METHODS[name]
    return method(make_config(method.config_class, overrides))


__all__ = [
    "METHODS",
    "RAN",
    "AdvFT",
    "AdvFTConfig",
    "AttackConfig",
    "LinearProbe",
    "MLPProbe",
    "Method",
    "MethodConfig",
    "NMTune",
    "NMTuneConfig",
    "RANConfig",
    "get_method",
    "trainable_parameters",
]
