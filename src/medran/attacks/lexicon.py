"""A small medical lexicon: body-part terms and opposite words, for the caption attack.

It is written for real radiology captions (ROCOv2, MediCaT) and covers the synthetic corpus'
vocabulary as a subset. Each body-part term has a *kind* (a noun for the part, an adjective,
an organ or structure inside it, or their plurals); swapping a term to another body part uses
that part's word of the same kind, so "thoracic CT" becomes "abdominal CT" and "in the left
lung" becomes "in the left kidney". Matching is whole-word and case-insensitive; multi-word
terms win over their parts ("thoracic spine" is the spine, "femoral neck" the pelvis).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# The kinds a term can have; every body part has one replacement word per kind.
KINDS = ("noun", "nouns", "adj", "organ", "organs")


@dataclass(frozen=True)
class BodyPart:
    """One body part: the words that name it (by kind) and its replacement word per kind."""

    terms: dict[str, tuple[str, ...]]
    replacement: dict[str, str]


def _part(swap: str, **terms: str) -> BodyPart:
    """``swap``: the replacement words by kind, "|"-separated; ``terms``: comma-separated."""
    return BodyPart(
        {kind: tuple(t.strip() for t in terms[kind].split(",")) for kind in KINDS},
        dict(zip(KINDS, swap.split("|"), strict=True)),
    )


# Terms are lower case. Words that often mean something else in a caption are left out on
# purpose: "frontal"/"lateral" (views), "temporal" (time), "lobe" (lung, liver and brain),
# "disc" (optic disc), "digital" (digital subtraction angiography).
LEXICON: dict[str, BodyPart] = {
    "abdomen": _part(
        "abdomen|abdomens|abdominal|kidney|kidneys",
        noun="abdomen, belly",
        nouns="abdomens",
        adj="abdominal, hepatic, renal, splenic, pancreatic, gastric, retroperitoneal, biliary, "
        "peritoneal, mesenteric, intestinal",
        organ="liver, kidney, spleen, pancreas, gallbladder, stomach, bowel, colon, duodenum, "
        "appendix, adrenal gland",
        organs="kidneys, bowels, adrenal glands",
    ),
    "brain": _part(
        "brain|brains|cerebral|hemisphere|hemispheres",
        noun="brain, head, skull, cranium",
        nouns="brains, skulls",
        adj="cerebral, cranial, intracranial, cerebellar, parietal, occipital, hemispheric, "
        "periventricular",
        organ="hemisphere, cerebellum, cerebrum, brainstem, basal ganglia, thalamus, "
        "pituitary gland",
        organs="hemispheres",
    ),
    "chest": _part(
        "chest|chests|thoracic|lung|lungs",
        noun="chest, thorax, chest wall",
        nouns="chests",
        adj="thoracic, intrathoracic, pulmonary, pleural, mediastinal, cardiac, bronchial",
        organ="lung, heart, mediastinum, pleura, rib, bronchus, lung field, cardiac silhouette, "
        "hilum",
        organs="lungs, ribs, lung fields, bronchi",
    ),
    "foot": _part(
        "foot|feet|foot|ankle|ankles",
        noun="foot, ankle, heel, forefoot, hindfoot",
        nouns="feet, ankles",
        adj="calcaneal, tarsal, metatarsal, plantar",
        organ="toe, calcaneus, talus, achilles tendon, metatarsal bone",
        organs="toes, metatarsals",
    ),
    "hand": _part(
        "hand|hands|hand|finger|fingers",
        noun="hand, wrist, wrist and hand, hand and wrist",
        nouns="hands, wrists",
        adj="carpal, metacarpal",
        organ="finger, thumb, phalanx, scaphoid, metacarpal bone",
        organs="fingers, phalanges, metacarpals",
    ),
    "knee": _part(
        "knee|knees|knee|meniscus|menisci",
        noun="knee, knee joint",
        nouns="knees",
        adj="patellar, meniscal, tibial, popliteal, cruciate",
        organ="patella, meniscus, tibia, tibial plateau, cruciate ligament",
        organs="menisci",
    ),
    "neck": _part(
        "neck|necks|cervical|thyroid lobe|thyroid lobes",
        noun="neck",
        nouns="necks",
        adj="cervical, thyroid, laryngeal, pharyngeal, submandibular",
        organ="thyroid gland, larynx, pharynx, trachea, thyroid lobe, carotid artery",
        organs="thyroid lobes, carotid arteries",
    ),
    "pelvis": _part(
        "pelvis|hips|pelvic|hip|hips",
        noun="pelvis, hip, hip joint",
        nouns="hips",
        adj="pelvic, acetabular, sacroiliac, inguinal",
        organ="femoral neck, femoral head, acetabulum, bladder, urinary bladder, uterus, "
        "prostate, ovary, sacrum",
        organs="ovaries, femoral heads",
    ),
    "shoulder": _part(
        "shoulder|shoulders|shoulder|humerus|shoulders",
        noun="shoulder, shoulder joint",
        nouns="shoulders",
        adj="glenohumeral, scapular, acromioclavicular, subacromial",
        organ="humerus, scapula, clavicle, rotator cuff, humeral head, glenoid",
        organs="clavicles",
    ),
    # The spine's regions are named by multi-word terms, so "thoracic spine" is not the chest.
    "spine": _part(
        "spine|spines|spinal|vertebra|vertebrae",
        noun="spine, cervical spine, thoracic spine, lumbar spine, lumbosacral spine, "
        "spinal cord, spinal canal",
        nouns="spines",
        adj="spinal, vertebral, lumbar, paravertebral, intervertebral, lumbosacral",
        organ="vertebra, vertebral body, intervertebral disc",
        organs="vertebrae, vertebral bodies, intervertebral discs",
    ),
}
BODY_PARTS: tuple[str, ...] = tuple(sorted(LEXICON))

# Opposite words, both directions. Applied as whole words with the case of the original.
OPPOSITE_PAIRS: tuple[tuple[str, str], ...] = (
    ("left", "right"),
    ("present", "absent"),
    ("normal", "abnormal"),
    ("increased", "decreased"),
    ("increase", "decrease"),
    ("small", "large"),
    ("positive", "negative"),
    ("anterior", "posterior"),
    ("upper", "lower"),
    ("superior", "inferior"),
    ("medial", "lateral"),
    ("proximal", "distal"),
    ("acute", "chronic"),
    ("benign", "malignant"),
    ("mild", "severe"),
    ("high", "low"),
    ("hyperdense", "hypodense"),
    ("hyperintense", "hypointense"),
    ("hyperechoic", "hypoechoic"),
    ("bilateral", "unilateral"),
    ("single", "multiple"),
    ("solid", "cystic"),
    ("homogeneous", "heterogeneous"),
    ("regular", "irregular"),
    ("internal", "external"),
    ("above", "below"),
    ("before", "after"),
    ("pre", "post"),
    ("early", "late"),
    ("new", "old"),
    ("complete", "incomplete"),
    ("improved", "worsened"),
    ("improvement", "worsening"),
    ("dilated", "collapsed"),
    ("thick", "thin"),
    ("wide", "narrow"),
    ("enlarged", "shrunken"),
    ("dorsal", "ventral"),
    ("yes", "no"),
)
# One-way opposites: synonyms of a pair member ("tiny" -> "large"), and "no", whose
# grammatical opposite inside a caption is "some" ("no effusion" -> "some effusion").
ONE_WAY: dict[str, str] = {
    "no": "some",
    "tiny": "large",
    "subtle": "obvious",
    "big": "small",
    "extensive": "limited",
    "huge": "tiny",
    "reduced": "enlarged",
    "elevated": "lowered",
    "preserved": "lost",
}
OPPOSITES: dict[str, str] = {
    **{a: b for a, b in OPPOSITE_PAIRS},
    **{b: a for a, b in OPPOSITE_PAIRS},
    **ONE_WAY,
}
# Flipped only when nothing above applies: "with a normal appearance" should become
# "with an abnormal appearance", not the double negative "without an abnormal appearance".
WEAK_OPPOSITES: dict[str, str] = {"with": "without", "without": "with"}

# term -> (body part, kind); a term belongs to exactly one part (checked at import).
TERMS: dict[str, tuple[str, str]] = {
    term: (part, kind)
    for part, entry in LEXICON.items()
    for kind, words in entry.terms.items()
    for term in words
}
assert len(TERMS) == sum(len(w) for e in LEXICON.values() for w in e.terms.values()), (
    "a body-part term is listed twice"
)


def _pattern(words: list[str]) -> re.Pattern[str]:
    # Longest first, so the regex prefers "thoracic spine" over "thoracic". Letters only
    # delimit words: "left-sided" and "intra-abdominal" still match "left" / "abdominal".
    alternatives = "|".join(
        re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=lambda w: (-len(w), w))
    )
    return re.compile(rf"(?<![A-Za-z])(?:{alternatives})(?![A-Za-z])", re.IGNORECASE)


TERM_PATTERN = _pattern(list(TERMS))
OPPOSITE_PATTERN = _pattern(list(OPPOSITES))
WEAK_PATTERN = _pattern(list(WEAK_OPPOSITES))


@dataclass(frozen=True)
class Mention:
    """One body-part term found in a text: its span, the words as written, part and kind."""

    start: int
    end: int
    text: str
    body_part: str
    kind: str


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def mentions(text: str) -> list[Mention]:
    """Every body-part term in ``text``, left to right, non-overlapping."""
    found = []
    for match in TERM_PATTERN.finditer(text):
        part, kind = TERMS[_key(match.group())]
        found.append(Mention(match.start(), match.end(), match.group(), part, kind))
    return found


def body_part_of(text: str | None) -> str | None:
    """The body part ``text`` mentions most; ties go to the one mentioned first.

    ``None`` when no body-part term occurs (or ``text`` is empty / not a string).
    """
    if not isinstance(text, str):
        return None
    found = mentions(text)
    if not found:
        return None
    counts = Counter(m.body_part for m in found)
    first = {}
    for m in found:
        first.setdefault(m.body_part, m.start)
    return min(counts, key=lambda part: (-counts[part], first[part], part))


def match_case(word: str, like: str) -> str:
    """``word`` written in the case of ``like``: "right" like "LEFT" -> "RIGHT"."""
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def opposite_of(word: str) -> str | None:
    """The opposite of one word (any case, case preserved), or ``None``."""
    found = OPPOSITES.get(word.lower()) or WEAK_OPPOSITES.get(word.lower())
    return match_case(found, word) if found else None


def replacement_for(mention: Mention, body_part: str) -> str:
    """The word of ``body_part`` that takes ``mention``'s place, in ``mention``'s case."""
    if body_part not in LEXICON:
        raise KeyError(f"unknown body part {body_part!r}; known: {list(BODY_PARTS)}")
    return match_case(LEXICON[body_part].replacement[mention.kind], mention.text)
