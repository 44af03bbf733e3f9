"""The clean-data suites: one GX table check per prepared role, built in code.

Checks that need more than one cell (files on disk, groups across splits, a label vocabulary)
are first computed with pandas into derived per-row columns, then asserted with standard GX
expectations, so every rule shows in Data Docs and a failure names the offending row ids.
Derived columns whose inputs are missing are left null; the schema check reports the cause.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from medran.data.manifest import ANSWER_TYPES, SPLITS, columns_for, read_manifest
from medran.names import ROLE_KIND, ROLES
from medran.params import ValidateDataParams
from medran.quality.gx import Expect, TableCheck
from medran.quality.images import image_facts

NO_FINDING = "No Finding"
# Canonical columns holding a list per row; every other canonical column holds one string.
_LIST_COLUMNS = {"labels"}


def _in_set(column: str, values: list[Any], notes: str) -> Expect:
    return Expect(
        "expect_column_values_to_be_in_set", {"column": column, "value_set": values}, notes
    )


def _between(column: str, low: float | None, high: float | None, notes: str) -> Expect:
    kwargs = {"column": column, "min_value": low, "max_value": high}
    return Expect("expect_column_values_to_be_between", kwargs, notes)


def _confined(path: Any) -> bool:
    """Relative, inside the prepared root: no leading '/', no '..' part, not empty."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    return ".." not in PurePosixPath(path).parts


def _per_row(frame: pd.DataFrame, inputs: list[str], key: str, values: pd.Series) -> pd.Series:
    """Map a per-``key`` aggregate back onto rows (null where the inputs are missing)."""
    if not set(inputs) <= set(frame.columns):
        return pd.Series(pd.NA, index=frame.index, dtype="object")
    return frame[key].map(values)


def _file_columns(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Open each distinct image once (vqa rows share images) and spread the facts over rows."""
    out = pd.DataFrame(index=frame.index)
    if "image_path" not in frame.columns:
        for column in ("path_confined", "image_exists", "image_decodes", "image_sha256_matches"):
            out[column] = pd.NA
        return out.assign(image_width=pd.NA, image_height=pd.NA, image_mode=pd.NA)
    out["path_confined"] = frame["image_path"].map(_confined)
    distinct = frame.loc[out["path_confined"], "image_path"].drop_duplicates().tolist()
    facts = image_facts([root / p for p in distinct], pixels=False).set_index(
        pd.Index(distinct, dtype="object")
    )
    # Paths refused by the confinement check are never opened: they count as not existing.
    rows = facts.reindex(frame["image_path"].astype("object")).set_index(frame.index)
    exists = rows["exists"].fillna(False).astype(bool)
    out["image_exists"] = exists
    # Facts about a file that is not there are null (GX skips nulls), so a missing image
    # fails "exists" once instead of also failing every check that needs its bytes.
    out["image_decodes"] = rows["decodes"].astype("object").where(exists)
    out["image_width"], out["image_height"] = rows["width"], rows["height"]
    out["image_mode"] = rows["mode"]
    if "sha256" in frame.columns:
        matches = rows["sha256"].astype("object") == frame["sha256"].astype("object")
        out["image_sha256_matches"] = matches.astype("object").where(exists)
    else:
        out["image_sha256_matches"] = pd.NA
    return out


def _base_columns(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    out = _file_columns(frame, root)
    has = set(frame.columns)
    images = frame.drop_duplicates("image_path") if "image_path" in has else frame
    hashes = images.groupby("sha256").size() if {"sha256", "image_path"} <= has else None
    out["sha256_n_images"] = _per_row(frame, ["sha256", "image_path"], "sha256", hashes)
    groups = frame.groupby("group_id")["split"].nunique() if {"group_id", "split"} <= has else None
    out["group_n_splits"] = _per_row(frame, ["group_id", "split"], "group_id", groups)
    per_image = (
        frame.groupby("image_path")["split"].nunique() if {"image_path", "split"} <= has else None
    )
    out["image_n_splits"] = _per_row(frame, ["image_path", "split"], "image_path", per_image)
    return out


def _chars(series: pd.Series) -> pd.Series:
    return series.map(lambda v: len(v.strip()) if isinstance(v, str) else pd.NA).astype("Int64")


def _as_list(value: Any) -> list[Any] | None:
    # Parquet list columns come back as numpy arrays; anything else is not a list of labels.
    return list(value) if isinstance(value, list | tuple | np.ndarray) else None


def _caption_columns(frame: pd.DataFrame) -> pd.DataFrame:
    chars = _chars(frame["caption"]) if "caption" in frame.columns else pd.NA
    return pd.DataFrame({"caption_chars": chars}, index=frame.index)


def _label_columns(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    if "labels" not in frame.columns:
        return out.assign(
            labels_count=pd.NA,
            labels_blank=pd.NA,
            no_finding_combined=pd.NA,
            labels_unseen_in_train=pd.NA,
        )
    lists = frame["labels"].map(_as_list)
    # A non-list cell counts as zero labels, so the "at least one label" check names it.
    out["labels_count"] = lists.map(lambda v: len(v) if v is not None else 0)
    out["labels_blank"] = lists.map(
        lambda v: sum(not (isinstance(x, str) and x.strip()) for x in v or [])
    )
    out["no_finding_combined"] = lists.map(lambda v: bool(v) and NO_FINDING in v and len(v) > 1)
    if "split" in frame.columns:
        train = {x for v in lists[frame["split"] == "train"] for x in v or []}
        unseen = [
            "" if split == "train" else "|".join(sorted({str(x) for x in v or []} - train))
            for split, v in zip(frame["split"], lists, strict=True)
        ]
        out["labels_unseen_in_train"] = pd.Series(unseen, index=frame.index, dtype="object")
    else:
        out["labels_unseen_in_train"] = pd.NA
    return out


def _vqa_columns(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for column in ("question", "answer"):
        out[f"{column}_chars"] = _chars(frame[column]) if column in frame.columns else pd.NA
    if {"split", "answer_type"} <= set(frame.columns):
        closed = (frame["answer_type"] == "closed").groupby(frame["split"]).sum()
        out["split_closed_questions"] = frame["split"].map(closed)
    else:
        out["split_closed_questions"] = pd.NA
    return out


def _base_expectations(
    columns: tuple[str, ...], params: ValidateDataParams, size: int
) -> list[Expect]:
    expects = [
        Expect(
            "expect_table_row_count_to_be_between",
            {"min_value": params.min_rows},
            "enough rows to train and evaluate on",
        ),
        Expect("expect_column_values_to_be_unique", {"column": "id"}, "one row per id"),
        Expect(
            "expect_column_values_to_match_regex",
            {"column": "sha256", "regex": "^[0-9a-f]{64}$"},
            "sha256 is a lowercase hex digest",
        ),
        _in_set("split", list(SPLITS), "only the canonical splits"),
        _in_set("path_confined", [True], "image_path is relative and stays inside the data root"),
        _in_set("image_exists", [True], "every image file exists"),
        _in_set("image_decodes", [True], "every image decodes fully (Pillow verify + load)"),
        _in_set("image_sha256_matches", [True], "sha256 is the hash of the file bytes"),
        _between("image_width", size, size, "images are square, prepare_data.image_size wide"),
        _between("image_height", size, size, "images are square, prepare_data.image_size high"),
        _in_set("image_mode", [params.image_mode], "images are stored in the expected mode"),
        _between("sha256_n_images", 1, 1, "no image is stored twice under different paths"),
        _between("group_n_splits", 1, 1, "splits are disjoint by group (patient) id"),
        _between("image_n_splits", 1, 1, "an image belongs to one split only"),
    ]
    for column in columns:
        expects.append(Expect("expect_column_values_to_not_be_null", {"column": column}, "no gaps"))
        if column not in _LIST_COLUMNS:
            expects.append(
                Expect(
                    "expect_column_values_to_be_of_type",
                    {"column": column, "type_": "str"},
                    "text column",
                )
            )
    return expects


_KIND_EXPECTATIONS = {
    "captions": [_between("caption_chars", 1, None, "captions are non-empty strings")],
    "labels": [
        _between("labels_count", 1, None, "every image has a non-empty list of labels"),
        _between("labels_blank", 0, 0, "labels are non-empty strings"),
        _in_set("no_finding_combined", [False], f"{NO_FINDING!r} is never combined with a finding"),
        _in_set("labels_unseen_in_train", [""], "every val/test label also appears in train"),
    ],
    "vqa": [
        _in_set("answer_type", list(ANSWER_TYPES), "closed or open questions only"),
        _between("question_chars", 1, None, "questions are non-empty"),
        _between("answer_chars", 1, None, "answers are non-empty"),
        _between("split_closed_questions", 1, None, "every split has closed questions"),
    ],
}
_KIND_COLUMNS = {"captions": _caption_columns, "labels": _label_columns, "vqa": _vqa_columns}


def clean_check(
    role: str, kind: str, manifest: pd.DataFrame, root: Path, params: ValidateDataParams, size: int
) -> TableCheck:
    """Derive the per-row facts for one manifest and pair them with the clean expectations."""
    columns = columns_for(kind)
    derived = pd.concat([_base_columns(manifest, root), _KIND_COLUMNS[kind](manifest)], axis=1)
    frame = pd.concat([manifest.reset_index(drop=True), derived.reset_index(drop=True)], axis=1)
    id_column = "id"
    if "id" not in frame.columns:
        # Without ids GX cannot name rows; fall back to row numbers (the schema check still fails).
        id_column = "row_number"
        frame[id_column] = range(len(frame))
    expected = [*columns, *derived.columns, *([id_column] if id_column != "id" else [])]
    expects = [
        Expect(
            "expect_table_columns_to_match_set",
            {"column_set": expected, "exact_match": True},
            "canonical manifest columns plus the derived check columns",
        ),
        *_base_expectations(columns, params, size),
        *_KIND_EXPECTATIONS[kind],
    ]
    return TableCheck(name=f"clean.{role}", frame=frame, expectations=expects, id_column=id_column)


def clean_checks(
    data_root: Path, params: ValidateDataParams, image_size: int
) -> dict[str, TableCheck]:
    """One check per role of ``data/prepared`` (``read_manifest`` raises if one is missing)."""
    root = Path(data_root)
    return {
        role: clean_check(
            role, ROLE_KIND[role], read_manifest(root, role), root, params, image_size
        )
        for role in ROLES
    }
