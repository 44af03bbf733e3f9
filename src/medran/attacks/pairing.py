"""Which target image each attacked clean image is pulled toward (docs/architecture.md, "Attacks").

A rule turns the clean image's body part and the target pool into the candidate targets; one
target is then drawn with a generator keyed by (seed, clean id), so the choice for an id does
not depend on which other ids are attacked. Body parts come from the captions through the
medical lexicon. Every item is paired before any attack work, so an unsatisfiable rule fails
in seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medran.attacks.lexicon import body_part_of
from medran.errors import InputError

# (target id, body part or None)
Target = tuple[str, str | None]
# (clean body part or None, the whole pool sorted by id) -> the allowed targets
Rule = Callable[[str | None, Sequence[Target]], list[Target]]


@dataclass(frozen=True)
class Pair:
    id: str
    target_id: str
    clean_body_part: str | None
    target_body_part: str | None


def different_body_part(clean_part: str | None, pool: Sequence[Target]) -> list[Target]:
    """Targets whose body part is known and differs (any known one if the clean part is not)."""
    return [t for t in pool if t[1] is not None and t[1] != clean_part]


def any_target(clean_part: str | None, pool: Sequence[Target]) -> list[Target]:
    """Every target in the pool."""
    return list(pool)


PAIRING: dict[str, Rule] = {"different_body_part": different_body_part, "random": any_target}


def get_rule(name: str) -> Rule:
    if name not in PAIRING:
        raise InputError(f"unknown pairing rule {name!r}; allowed: {sorted(PAIRING)}")
    return PAIRING[name]


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """A generator that depends on the seed and this one id only."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def pair_targets(
    clean: Mapping[str, str], targets: Mapping[str, str], rule: str, seed: int
) -> list[Pair]:
    """Pair each clean id (id -> caption) with a target id (id -> caption), in input order.

    Raises :class:`InputError` naming the first clean id (and its body part) that no target
    satisfies.
    """
    choose = get_rule(rule)
    pool = sorted((target_id, body_part_of(caption)) for target_id, caption in targets.items())
    candidates: dict[str | None, list[Target]] = {}  # the rule only sees the body part
    pairs = []
    for item_id, caption in clean.items():
        part = body_part_of(caption)
        if part not in candidates:
            candidates[part] = choose(part, pool)
        allowed = candidates[part]
        if not allowed:
            known = sorted({p for _, p in pool if p is not None})
            raise InputError(
                f"pairing {rule!r}: no target for {item_id} (body part {part!r}) in a pool of "
                f"{len(pool)} target(s) with body parts {known}"
            )
        target_id, target_part = allowed[int(item_rng(seed, item_id).integers(len(allowed)))]
        pairs.append(Pair(item_id, target_id, part, target_part))
    return pairs
