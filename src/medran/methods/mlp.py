"""``mlp``: an MLP head on the frozen encoder's features (NMTune's "MLP tuning" baseline)."""

from __future__ import annotations

from medran.methods.lp import LinearProbe


class MLPProbe(LinearProbe):
    """The linear probe's loss with an MLP head: the head, not the loss, is what differs."""

    name = "mlp"
    default_head = "mlp"
