"""One stage's metrics over its seeds: the combined value of each metric, and every seed's own.

A stage that trains or evaluates several seeds writes both, so the report can show the mean
with its spread and a user can see each seed (``contracts.seed_key``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from medran.contracts import seed_key

PerSeed = dict[int, dict[str, float]]


def combine(key: str, values: list[float]) -> float:
    """A check (``check_*``) passes only if it passed for every seed, a suspicion
    (``*_suspected``) holds if it held for any; anything else is the mean, NaNs left out."""
    if key.startswith("check_"):
        return min(values)
    if key.endswith("_suspected"):
        return max(values)
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def summarize_seeds(
    per_seed: PerSeed, prefix: str = "", keys: Iterable[str] | None = None
) -> dict[str, float]:
    """``<prefix><key>`` combined over seeds for ``keys`` (default: every metric), and each
    seed's own value of every metric under ``<prefix>seed-<seed>.<key>``."""
    first = next(iter(per_seed.values()))
    out = {
        f"{prefix}{key}": combine(key, [m[key] for m in per_seed.values()])
        for key in (first if keys is None else keys)
    }
    for seed, metrics in per_seed.items():
        out |= {f"{prefix}{seed_key(seed, k)}": v for k, v in metrics.items()}
    return out
