"""Downstream fine-tuning methods (docs/architecture.md, "Methods"): a registry of small
method objects, keyed by ``medran.names.METHODS``.

``lp`` linear probe, ``mlp`` MLP head, ``nmtune`` NMTune's rectifier and regularisers,
``ran`` NMTune plus an adversarial term (our RAN), ``advft`` adversarial training of the head;
``fare`` and ``tecoa``, the reference adversarial defences of CLIP, also fine-tune the encoder.
Each method's config is its ``finetune.<method>`` params section.
"""

from __future__ import annotations

from medran.errors import InputError
from medran.methods.advft import AdvFT
from medran.methods.base import Method, trainable_parameters
from medran.methods.fare import FARE
from medran.methods.lp import LinearProbe
from medran.methods.mlp import MLPProbe
from medran.methods.nmtune import NMTune
from medran.methods.ran import RAN
from medran.methods.tecoa import TeCoA
from medran.params import MethodParams

METHODS: dict[str, type[Method]] = {
    "lp": LinearProbe,
    "mlp": MLPProbe,
    "nmtune": NMTune,
    "ran": RAN,
    "advft": AdvFT,
    "fare": FARE,
    "tecoa": TeCoA,
}


def get_method(name: str, config: MethodParams) -> Method:
    """The method called ``name`` with ``config``, its ``finetune.<name>`` section."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; allowed: {sorted(METHODS)}")
    return METHODS[name](config)


__all__ = [
    "FARE",
    "METHODS",
    "RAN",
    "AdvFT",
    "LinearProbe",
    "MLPProbe",
    "Method",
    "NMTune",
    "TeCoA",
    "get_method",
    "trainable_parameters",
]
