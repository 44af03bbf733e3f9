"""Which upstream training pairs are attacked, in a seeded order shared by every noise level.

Level p replaces the first ``round(p * n_train)`` ids of :func:`attack_order`, so the 10% set
contains the 5% set (levels are nested) and ``attack_images`` only needs the prefix that
the largest level uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def attack_order(ids: Iterable[str], seed: int) -> list[str]:
    """Train ids ordered by a seeded hash: stable under adding or removing other ids."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def n_replaced(level: float, n_train: int) -> int:
    return round(level * n_train)
