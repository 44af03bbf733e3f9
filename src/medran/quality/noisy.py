"""The noisy gates: each noise level's corpus, and the nesting of adversarial ids across levels.

A level's manifest must hold every upstream pair exactly once, replace exactly the first
``round(p * n_train)`` training ids of the attack order (the attack manifest's ``rank``) by
their adversarial image, leave validation and test clean, and point at files whose hashes it
records (:func:`level_checks`, one gate per level, so that a new level checks only itself). The
``nesting`` gate (:func:`nesting_checks`) holds one row per id adversarial at any level and
names the larger levels that dropped it. Rules are derived per-row columns asserted with
standard GX expectations, so failures name the offending ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medran import layout
from medran.attacks.selection import n_replaced
from medran.contracts import stage_id
from medran.data.manifest import (
    ADV_CAPTION_COLUMNS,
    ADV_IMAGE_COLUMNS,
    NOISY_COLUMNS,
    SPLITS,
    read_table,
)
from medran.data.paths import confined
from medran.params import Params
from medran.quality.adversarial import (
    MANIFEST,
    between,
    file_facts,
    in_set,
    masked,
    not_null,
    prepared_table,
    schema,
)
from medran.quality.gx import Expect, TableCheck

# Columns copied unchanged from the prepared upstream manifest into every level (besides split).
_UPSTREAM_FIELDS = ("group_id", "source", "source_id")
# Where an adversarial row's caption comes from, per build_noisy.caption.
_CAPTION_SOURCE = {"rewrite": "adv_caption", "captioner": "adv_caption", "target": "target_caption"}
# Float noise levels are compared with this slack (a level stored as float32 is still itself).
_LEVEL_SLACK = 1e-6


class _Sources:
    """What every level is compared with: prepared upstream and the attack manifests."""

    def __init__(self, root: Path) -> None:
        self.upstream = prepared_table(root, "upstream")
        self.n_train = int((self.upstream["split"] == "train").sum())
        images = read_table(
            root / layout.ATTACK_IMAGES / MANIFEST, ADV_IMAGE_COLUMNS, "attack_images"
        )
        captions = read_table(
            root / layout.ATTACK_CAPTIONS / MANIFEST, ADV_CAPTION_COLUMNS, "attack_captions"
        )
        # Duplicated attack ids are the adversarial gate's business.
        self.attacks = images.drop_duplicates("id").set_index("id")
        self.captions = captions.drop_duplicates("id").set_index("id")


def _expected_caption(frame: pd.DataFrame, adv: pd.Series, src: _Sources, kind: str) -> pd.Series:
    clean = frame["id"].map(src.upstream["caption"])
    if kind not in _CAPTION_SOURCE:  # "clean": adversarial images keep their clean caption
        return clean
    return clean.where(~adv, frame["id"].map(src.captions[_CAPTION_SOURCE[kind]]))


def _level_columns(
    frame: pd.DataFrame, level: float, src: _Sources, facts: pd.DataFrame, params: Params
) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    ids, upstream = frame["id"], src.upstream
    known = ids.isin(upstream.index)
    out["in_upstream"] = known
    same = pd.Series(True, index=frame.index)
    for column in _UPSTREAM_FIELDS:
        same &= frame[column] == ids.map(upstream[column])
    out["split_matches_upstream"] = masked(frame["split"] == ids.map(upstream["split"]), known)
    out["upstream_fields_match"] = masked(same, known)
    adv = frame["is_adversarial"].eq(True)
    out["adversarial_outside_train"] = adv & frame["split"].ne("train")
    # Level p replaces the ids ranked below round(p * n_train) in the attack order.
    rank = pd.to_numeric(ids.map(src.attacks["rank"]), errors="coerce")
    ordered = rank < n_replaced(level, src.n_train)
    out["flag_matches_order"] = frame["is_adversarial"].astype("object") == ordered
    clean_path = ids.map(upstream["data_path"])
    expected_path = clean_path.where(~adv, ids.map(src.attacks["adv_image_path"]))
    out["image_path_matches"] = frame["image_path"] == expected_path
    out["clean_image_path_matches"] = masked(frame["clean_image_path"] == clean_path, known)
    rows = facts.reindex(frame["image_path"].astype("object")).set_index(frame.index)
    exists = rows["exists"].eq(True)
    out["path_confined"] = frame["image_path"].map(confined).astype(bool)
    out["image_exists"] = exists
    out["image_sha256_matches"] = masked(rows["sha256"] == frame["sha256"], exists)
    target = ids.map(src.attacks["target_id"])
    out["target_id_matches"] = np.where(
        adv, frame["target_id"] == target, frame["target_id"].isna()
    )
    kind = params.build_noisy.caption
    out["caption_kind_matches"] = frame["caption_kind"] == np.where(adv, kind, "clean")
    caption = _expected_caption(frame, adv, src, kind)
    out["caption_matches"] = masked(frame["caption"] == caption, known)
    is_train = frame["split"].eq("train")
    out["adversarial_train"] = adv.astype("float64").where(is_train)
    return out


def _level_expectations(
    derived: pd.DataFrame, level: float, src: _Sources, params: Params
) -> list[Expect]:
    tolerance, k = params.validate_data.level_tolerance, n_replaced(level, src.n_train)
    return [
        schema(NOISY_COLUMNS, derived),
        Expect(
            "expect_table_row_count_to_equal",
            {"value": len(src.upstream)},
            "every upstream pair, all splits",
        ),
        *not_null(c for c in NOISY_COLUMNS if c != "target_id"),
        Expect("expect_column_values_to_be_unique", {"column": "id"}, "each upstream id once"),
        in_set("split", list(SPLITS), "only the canonical splits"),
        in_set("is_adversarial", [True, False], "is_adversarial is a boolean"),
        in_set("in_upstream", [True], "every id is a prepared upstream id"),
        in_set("split_matches_upstream", [True], "rows keep their upstream split"),
        in_set("upstream_fields_match", [True], "group and source columns are the upstream's"),
        in_set("adversarial_outside_train", [False], "validation and test rows stay clean"),
        in_set(
            "flag_matches_order",
            [True],
            "adversarial exactly for the first round(p * n_train) ids of the attack order",
        ),
        in_set(
            "image_path_matches",
            [True],
            "adversarial rows use the attack's saved image, clean rows the prepared one",
        ),
        in_set("clean_image_path_matches", [True], "clean_image_path is the prepared image"),
        in_set("path_confined", [True], "image_path stays inside the data root"),
        in_set("image_exists", [True], "every image file exists"),
        in_set("image_sha256_matches", [True], "sha256 is the hash of the file at image_path"),
        in_set(
            "target_id_matches",
            [True],
            "adversarial rows name the attack's target; clean rows have none",
        ),
        in_set("caption_kind_matches", [True], "build_noisy.caption for adversarial rows"),
        in_set("caption_matches", [True], "the caption is the one caption_kind names"),
        between("noise_level", level - _LEVEL_SLACK, level + _LEVEL_SLACK, "the folder's level"),
        Expect(
            "expect_column_mean_to_be_between",
            {
                "column": "adversarial_train",
                "min_value": max(0.0, level - tolerance),
                "max_value": min(1.0, level + tolerance),
            },
            "adversarial fraction of training rows within validate_data.level_tolerance",
        ),
        Expect(
            "expect_column_sum_to_be_between",
            {"column": "adversarial_train", "min_value": k, "max_value": k},
            "exactly round(p * n_train) training rows are adversarial",
        ),
    ]


def _nesting_check(frames: dict[float, pd.DataFrame]) -> TableCheck:
    """One row per id adversarial at some level; ``missing_at_larger_levels`` must be empty."""
    levels = sorted(frames)
    adversarial = {
        level: set(frame.loc[frame["is_adversarial"].eq(True), "id"])
        for level, frame in frames.items()
    }
    rows = []
    for id_ in sorted(set().union(*adversarial.values())):
        at = [level for level in levels if id_ in adversarial[level]]
        missing = [level for level in levels if level > at[0] and level not in at]
        rows.append(
            {
                "id": id_,
                "adversarial_levels": "|".join(map(layout.level_name, at)),
                "missing_at_larger_levels": "|".join(map(layout.level_name, missing)),
            }
        )
    columns = ["id", "adversarial_levels", "missing_at_larger_levels"]
    frame = pd.DataFrame(rows, columns=columns, dtype="object")
    expects = [
        Expect(
            "expect_table_columns_to_match_set",
            {"column_set": columns, "exact_match": True},
            "one row per id adversarial at any level",
        ),
        in_set(
            "missing_at_larger_levels",
            [""],
            "levels are nested: an id adversarial at p is adversarial at every larger level",
        ),
    ]
    return TableCheck("noisy.nesting", frame, expects)


def _read_level(root: Path, level: float) -> pd.DataFrame:
    return read_table(
        root / layout.noisy_dir(level) / MANIFEST, NOISY_COLUMNS, stage_id("build_noisy", level)
    )


def level_checks(data_root: Path, params: Params, level: float) -> dict[str, TableCheck]:
    """The gate of one noise level (``noisy_<level>``), before ``pretrain@<level>`` reads it."""
    root = Path(data_root)
    src, frame = _Sources(root), _read_level(root, level)
    paths = frame["image_path"][frame["image_path"].map(lambda p: isinstance(p, str))]
    paths = paths.drop_duplicates().reset_index(drop=True)
    facts = file_facts(root, paths, pixels=False).set_index(pd.Index(paths.tolist(), dtype=object))
    name = layout.level_name(level)
    derived = _level_columns(frame, level, src, facts, params)
    check = TableCheck(
        f"noisy.{name}",
        pd.concat([frame, derived], axis=1),
        _level_expectations(derived, level, src, params),
    )
    return {f"noisy_{name}": check}


def nesting_checks(data_root: Path, params: Params) -> dict[str, TableCheck]:
    """The cross-level check: reads every level's manifest, no images."""
    frames = {level: _read_level(Path(data_root), level) for level in sorted(params.noise_levels)}
    return {"nesting": _nesting_check(frames)}
