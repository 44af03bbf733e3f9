"""``rules``: the deterministic caption attack, the default backend (docs/architecture.md,
"Attacks").

The dominant body part's terms are swapped to another body part's words of the same kind (to
the target's body part when the pair has one, else a seeded different part), and every word
with an opposite in the lexicon is flipped, case preserved. "with"/"without" flip only when
nothing else does, so "with a normal appearance" becomes "with an abnormal appearance" rather
than a double negative. An "a"/"an" in front of a changed word is fixed to match it.
"""

from __future__ import annotations

import re

from medran.attacks.captions.base import CaptionJob, Resources, Rewrite, stable_index
from medran.attacks.lexicon import (
    BODY_PARTS,
    OPPOSITE_PATTERN,
    WEAK_PATTERN,
    body_part_of,
    match_case,
    mentions,
    opposite_of,
    replacement_for,
)
from medran.params import AttackCaptionsParams

Edit = tuple[int, int, str]  # (start, end, new text) in the original caption
_ARTICLE_BEFORE = re.compile(r"(?<![A-Za-z])(an?)\s+$", re.IGNORECASE)


def choose_body_part(current: str | None, target: str | None, key: str, seed: int) -> str:
    """The body part a caption is moved to: the target's if it differs, else a seeded other."""
    if target in BODY_PARTS and target != current:
        return target
    others = [part for part in BODY_PARTS if part != current]
    return others[stable_index(key, seed, len(others))]


def _body_part_edits(caption: str, new_part: str, current: str) -> list[Edit]:
    return [
        (m.start, m.end, replacement_for(m, new_part))
        for m in mentions(caption)
        if m.body_part == current
    ]


def _opposite_edits(caption: str) -> list[Edit]:
    # Opposite words inside a body-part term ("upper" in a multi-word term) are left alone.
    taken = [(m.start, m.end) for m in mentions(caption)]

    def free(match: re.Match[str]) -> bool:
        return not any(s < match.end() and match.start() < e for s, e in taken)

    for pattern in (OPPOSITE_PATTERN, WEAK_PATTERN):
        edits = [
            (m.start(), m.end(), opposite_of(m.group()) or m.group())
            for m in pattern.finditer(caption)
            if free(m)
        ]
        if edits:
            return edits
    return []


def _article(word: str) -> str:
    lower = word.lower()
    if lower.startswith(("uni", "use", "usu", "eu", "one")):
        return "a"
    return "an" if lower[:1] in "aeiou" or lower.startswith("x-") else "a"


def _article_edits(caption: str, edits: list[Edit]) -> list[Edit]:
    """Fix "a"/"an" right before a changed word ("an abdominal" -> "a thoracic")."""
    fixes = []
    for start, _, new in edits:
        found = _ARTICLE_BEFORE.search(caption[:start])
        if found and found.group(1).lower() != _article(new):
            fixes.append((found.start(1), found.end(1), match_case(_article(new), found.group(1))))
    return fixes


def rewrite_caption(
    caption: str, target_body_part: str | None = None, key: str = "", seed: int = 0
) -> Rewrite:
    """Swap the body part and flip opposites; ``key`` (the row id) seeds the fallback part.

    A caption with no body-part term and no opposite word comes back unchanged.
    """
    current = body_part_of(caption)
    edits: list[Edit] = []
    if current is not None:
        new_part = choose_body_part(current, target_body_part, key or caption, seed)
        edits += _body_part_edits(caption, new_part, current)
    edits += _opposite_edits(caption)
    edits = [e for e in edits if e[2] != caption[e[0] : e[1]]]
    changed = tuple(f"{caption[s:e]}->{new}" for s, e, new in sorted(edits))
    pieces, last = [], 0
    for start, end, new in sorted(edits + _article_edits(caption, edits)):
        pieces += [caption[last:start], new]
        last = end
    pieces.append(caption[last:])
    return Rewrite("".join(pieces), changed)


class RulesBackend:
    """The lexicon rewrite for every row; also the llm backend's fallback."""

    name = "rules"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def rewrite_one(self, job: CaptionJob) -> Rewrite:
        return rewrite_caption(job.clean_caption, job.target_body_part, job.id, self.seed)

    def rewrite(self, jobs: list[CaptionJob]) -> list[Rewrite]:
        return [self.rewrite_one(job) for job in jobs]


def create(params: AttackCaptionsParams, resources: Resources) -> RulesBackend:
    del resources  # the rules need no model and no data
    return RulesBackend(params.seed)
