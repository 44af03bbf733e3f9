"""The adversarial gate: the saved attack images and captions, checked against the files.

Nothing the attack logged is trusted: each adversarial PNG is opened, hashed and compared pixel
by pixel with its clean source, so the L-inf budget is verified on exactly what later stages
read. As in the clean suites, every rule is first computed with pandas into a derived per-row
column and then asserted with a standard GX expectation, so a failure names the offending ids.
Paths in the attack manifests are relative to the data root; a path that is absolute or
climbs out of it is never opened and fails its ``*_path_confined`` check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medran import layout
from medran.attacks.lexicon import body_part_of
from medran.attacks.selection import attack_order, n_replaced
from medran.data.manifest import ADV_CAPTION_COLUMNS, ADV_IMAGE_COLUMNS, read_manifest, read_table
from medran.data.paths import confined
from medran.params import Params
from medran.quality.gx import Expect, TableCheck
from medran.quality.images import image_facts, linf_distance

MANIFEST = "manifest.parquet"
# Caption backends that rewrite the clean caption, so a body part in it must be swapped.
REWRITING_BACKENDS = ("rules", "llm")
# Body parts are optional in the image manifest: a caption may not name one.
_NULLABLE_IMAGE_COLUMNS = ("clean_body_part", "target_body_part")


def in_set(column: str, values: list[Any], notes: str, **kwargs: Any) -> Expect:
    """``expect_column_values_to_be_in_set`` (nulls are skipped, as everywhere in GX)."""
    return Expect(
        "expect_column_values_to_be_in_set",
        {"column": column, "value_set": values, **kwargs},
        notes,
    )


def between(column: str, low: float | None, high: float | None, notes: str) -> Expect:
    kwargs = {"column": column, "min_value": low, "max_value": high}
    return Expect("expect_column_values_to_be_between", kwargs, notes)


def schema(columns: Iterable[str], derived: pd.DataFrame) -> Expect:
    """Exactly the manifest's columns plus the derived check columns (a stray column fails)."""
    return Expect(
        "expect_table_columns_to_match_set",
        {"column_set": [*columns, *derived.columns], "exact_match": True},
        "manifest columns plus the derived check columns",
    )


def not_null(columns: Iterable[str]) -> list[Expect]:
    return [
        Expect("expect_column_values_to_not_be_null", {"column": c}, "no gaps") for c in columns
    ]


def prepared_table(data_root: Path, role: str) -> pd.DataFrame:
    """A prepared manifest indexed by id, plus ``data_path``: its image path from the data root."""
    frame = read_manifest(Path(data_root) / layout.PREPARED, role)
    # Duplicated ids are the clean gate's business; here the first row stands for the id.
    frame = frame.drop_duplicates("id").set_index("id")
    frame["data_path"] = f"{layout.PREPARED.as_posix()}/" + frame["image_path"].astype(str)
    return frame


def file_facts(data_root: Path, paths: pd.Series, *, pixels: bool) -> pd.DataFrame:
    """:func:`image_facts` of each data-root relative path, aligned with ``paths``.

    Each distinct file is read once. Adds ``confined``; a path that is not confined is never
    opened and reads as not existing, as does a null path.
    """
    ok = paths.map(confined).astype(bool)
    distinct = paths[ok].drop_duplicates().tolist()
    facts = image_facts([Path(data_root) / p for p in distinct], pixels=pixels)
    facts = facts.set_index(pd.Index(distinct, dtype="object"))
    rows = facts.reindex(paths.astype("object")).set_index(paths.index)
    rows["confined"] = ok
    rows["exists"] = rows["exists"].eq(True)
    return rows


def masked(values: pd.Series, mask: pd.Series) -> pd.Series:
    """Values where ``mask`` holds, null elsewhere (GX skips nulls, so one cause fails once)."""
    return values.astype("object").where(mask)


def _linf_levels(root: Path, frame: pd.DataFrame, both: pd.Series) -> pd.Series:
    """Max |adv - clean| in uint8 levels, recomputed from the files (null if not comparable)."""
    pairs = frame.loc[both]
    measured = linf_distance(
        [root / p for p in pairs["adv_image_path"]], [root / p for p in pairs["clean_image_path"]]
    )
    levels = pd.Series(np.nan, index=frame.index, dtype="float64")
    levels.loc[both] = np.round(measured.to_numpy() * 255.0)
    return levels.astype("Int64")


def _image_columns(
    frame: pd.DataFrame,
    root: Path,
    upstream: pd.DataFrame,
    targets: pd.DataFrame,
    captioned: set[str],
    seed: int,
) -> pd.DataFrame:
    adv = file_facts(root, frame["adv_image_path"], pixels=True)
    clean = file_facts(root, frame["clean_image_path"], pixels=False)
    both = adv["exists"] & clean["exists"]
    out = pd.DataFrame(index=frame.index)
    out["adv_path_confined"], out["clean_path_confined"] = adv["confined"], clean["confined"]
    out["adv_exists"], out["clean_exists"] = adv["exists"], clean["exists"]
    out["adv_decodes"] = masked(adv["decodes"], adv["exists"])
    out["adv_mode"] = adv["mode"]
    out["adv_sha256_matches"] = masked(adv["sha256"] == frame["adv_sha256"], adv["exists"])
    out["adv_min_pixel"], out["adv_max_pixel"] = adv["min_pixel"], adv["max_pixel"]
    same = (adv["width"] == clean["width"]) & (adv["height"] == clean["height"])
    out["adv_size_matches_clean"] = masked(same, both & adv["decodes"].eq(True))
    out["linf_measured"] = _linf_levels(root, frame, both)
    logged = pd.to_numeric(frame["linf"], errors="coerce").astype("Float64")
    recorded = logged == out["linf_measured"].astype("Float64")
    out["linf_recorded_matches"] = masked(recorded, out["linf_measured"].notna())
    known = frame["id"].isin(upstream.index)
    out["clean_in_upstream"] = known
    out["clean_split"] = frame["id"].map(upstream["split"])
    train = upstream.index[upstream["split"] == "train"]
    order = pd.Series(range(len(train)), index=attack_order(train, seed))
    rank = pd.to_numeric(frame["rank"], errors="coerce")
    out["rank_matches_order"] = masked(rank == frame["id"].map(order), known)
    clean_path = frame["clean_image_path"] == frame["id"].map(upstream["data_path"])
    out["clean_path_matches"] = masked(clean_path, known)
    known_target = frame["target_id"].isin(targets.index)
    out["target_in_targets"] = known_target
    target_path = frame["target_image_path"] == frame["target_id"].map(targets["data_path"])
    out["target_path_matches"] = masked(target_path, known_target)
    out["has_caption"] = frame["id"].isin(captioned)
    return out


def _image_expectations(derived: pd.DataFrame, params: Params, n_train: int) -> list[Expect]:
    eps, checks = params.attack_images.eps, params.validate_data
    rows = len(derived)
    return [
        schema(ADV_IMAGE_COLUMNS, derived),
        Expect(
            "expect_table_row_count_to_equal",
            {"value": n_replaced(params.attack_images.max_fraction, n_train)},
            "round(attack_images.max_fraction * n_train) pairs: enough for every noise level",
        ),
        *not_null(c for c in ADV_IMAGE_COLUMNS if c not in _NULLABLE_IMAGE_COLUMNS),
        Expect("expect_column_values_to_be_unique", {"column": "id"}, "one row per attacked id"),
        Expect("expect_column_values_to_be_unique", {"column": "rank"}, "one id per rank"),
        between("rank", 0, rows - 1, "ranks are the prefix 0..n-1 of the attack order"),
        in_set("adv_path_confined", [True], "adv_image_path stays inside the data root"),
        in_set("clean_path_confined", [True], "clean_image_path stays inside the data root"),
        in_set("adv_exists", [True], "every adversarial image file exists"),
        in_set("clean_exists", [True], "every clean source image exists"),
        in_set("adv_decodes", [True], "every adversarial image decodes fully"),
        in_set("adv_sha256_matches", [True], "adv_sha256 is the hash of the saved file"),
        in_set("adv_mode", [checks.image_mode], "adversarial images keep the image mode"),
        in_set("adv_size_matches_clean", [True], "adversarial and clean images have one size"),
        between("adv_min_pixel", 0, 255, "pixel values stay in the uint8 range"),
        between("adv_max_pixel", 0, 255, "pixel values stay in the uint8 range"),
        in_set("eps", [eps], "the manifest's eps is attack_images.eps"),
        between("linf_measured", 0, eps, "L-inf(saved - clean) <= eps, from the PNG files"),
        in_set("linf_recorded_matches", [True], "the logged linf is the one of the saved file"),
        in_set("clean_in_upstream", [True], "the clean id exists in prepared upstream"),
        in_set("clean_split", ["train"], "only upstream training pairs are attacked"),
        in_set("rank_matches_order", [True], "rank is the seeded attack order of train ids"),
        in_set("clean_path_matches", [True], "clean_image_path is the prepared upstream image"),
        in_set("target_in_targets", [True], "the target id exists in prepared targets"),
        in_set("target_path_matches", [True], "target_image_path is the prepared target image"),
        in_set("has_caption", [True], "every attacked id has an adversarial caption"),
        in_set("success", [True, False], "success is a boolean"),
        Expect(
            "expect_column_mean_to_be_between",
            {"column": "success", "min_value": checks.min_attack_success, "max_value": 1.0},
            "attack success rate (closer to the target than to the clean image) is at least "
            "validate_data.min_attack_success",
        ),
    ]


def _text(value: Any) -> str | None:
    """Whitespace-collapsed, case-folded text, or None for a non-string."""
    return " ".join(value.split()).casefold() if isinstance(value, str) else None


def _caption_columns(
    frame: pd.DataFrame, images: pd.DataFrame, upstream: pd.DataFrame, targets: pd.DataFrame
) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    attacked = images.drop_duplicates("id").set_index("id")
    out["id_attacked"] = frame["id"].isin(attacked.index)
    clean = frame["clean_caption"] == frame["id"].map(upstream["caption"])
    out["clean_caption_matches"] = masked(clean, frame["id"].isin(upstream.index))
    target_caption = frame["id"].map(attacked["target_id"]).map(targets["caption"])
    out["target_caption_matches"] = masked(
        frame["target_caption"] == target_caption, target_caption.notna()
    )
    out["adv_caption_chars"] = frame["adv_caption"].map(
        lambda v: len(v.strip()) if isinstance(v, str) else pd.NA
    )
    out["adv_caption_chars"] = out["adv_caption_chars"].astype("Int64")
    exact = frame["adv_caption"].astype("object") != frame["clean_caption"].astype("object")
    out["changed_flag_matches"] = frame["changed"].astype("object") == exact
    # A rewrite that only changes case or spacing does not change what the caption says.
    same_text = frame["adv_caption"].map(_text) == frame["clean_caption"].map(_text)
    names_part = frame["clean_caption"].map(lambda v: isinstance(v, str) and bool(body_part_of(v)))
    rewriting = frame["backend"].isin(REWRITING_BACKENDS)
    out["unchanged_but_required"] = rewriting & names_part & same_text
    # Parquet list columns come back as numpy arrays; anything else records no words.
    n_words = frame["changed_words"].map(
        lambda v: len(v) if isinstance(v, list | tuple | np.ndarray) else 0
    )
    by_rules = frame["backend"].eq("rules") | frame["fallback"].eq(True)
    out["changed_words_missing"] = by_rules & exact & n_words.eq(0)
    out["fallback_without_llm"] = frame["fallback"].eq(True) & frame["backend"].ne("llm")
    return out


def _caption_expectations(derived: pd.DataFrame, params: Params) -> list[Expect]:
    backend = params.attack_captions.backend
    return [
        schema(ADV_CAPTION_COLUMNS, derived),
        *not_null(ADV_CAPTION_COLUMNS),
        Expect("expect_column_values_to_be_unique", {"column": "id"}, "one row per attacked id"),
        in_set("id_attacked", [True], "every caption row belongs to an attacked image"),
        in_set("backend", [backend], "captions come from attack_captions.backend"),
        in_set("clean_caption_matches", [True], "clean_caption is the prepared upstream caption"),
        in_set("target_caption_matches", [True], "target_caption is the paired target's caption"),
        between("adv_caption_chars", 1, None, "adversarial captions are non-empty"),
        in_set("changed_flag_matches", [True], "changed says whether adv_caption differs"),
        in_set(
            "unchanged_but_required",
            [False],
            f"backends {list(REWRITING_BACKENDS)} change every caption that names a body part",
        ),
        in_set("changed_words_missing", [False], "rules record the words they changed"),
        in_set("fallback_without_llm", [False], "only the llm backend falls back to rules"),
        in_set("changed", [True, False], "changed is a boolean"),
        Expect(
            "expect_column_sum_to_be_between",
            {"column": "fallback", "min_value": 0},
            "how many llm outputs failed a sanity check and fell back to rules (reported)",
        ),
    ]


def adversarial_checks(data_root: Path, params: Params) -> dict[str, TableCheck]:
    """The ``attack_images`` and ``attack_captions`` checks of the attacks under ``data_root``."""
    root = Path(data_root)
    images = read_table(root / layout.ATTACK_IMAGES / MANIFEST, ADV_IMAGE_COLUMNS, "attack_images")
    captions = read_table(
        root / layout.ATTACK_CAPTIONS / MANIFEST, ADV_CAPTION_COLUMNS, "attack_captions"
    )
    upstream, targets = prepared_table(root, "upstream"), prepared_table(root, "targets")
    n_train = int((upstream["split"] == "train").sum())
    seed = params.attack_images.seed
    image_derived = _image_columns(images, root, upstream, targets, set(captions["id"]), seed)
    caption_derived = _caption_columns(captions, images, upstream, targets)
    return {
        "attack_images": TableCheck(
            "adversarial.attack_images",
            pd.concat([images, image_derived], axis=1),
            _image_expectations(image_derived, params, n_train),
        ),
        "attack_captions": TableCheck(
            "adversarial.attack_captions",
            pd.concat([captions, caption_derived], axis=1),
            _caption_expectations(caption_derived, params),
        ),
    }
