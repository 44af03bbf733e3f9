"""``build_noisy@<level>``: the upstream corpus with a fraction p of training pairs adversarial.

Level p replaces the training pairs of rank < round(p * n_train) in the attack order, so the
levels are nested and differ only in p. Validation and test pairs stay clean. Images are
referenced (paths relative to the data root), not copied; every row keeps its provenance.
"""

from __future__ import annotations

import json

import pandas as pd

from medran import layout
from medran.attacks.selection import n_replaced
from medran.contracts import BuildNoisyPaths
from medran.data.errors import DataError
from medran.data.manifest import (
    ADV_CAPTION_COLUMNS,
    ADV_IMAGE_COLUMNS,
    NOISY_COLUMNS,
    read_manifest,
    read_table,
)
from medran.fsutil import replace_dir
from medran.params import Params

# caption choice -> column of the joined frame that holds it
CAPTION_COLUMN = {
    "clean": "caption",
    "rewrite": "adv_caption",
    "captioner": "adv_caption",
    "target": "target_caption",
}


def noisy_manifest(
    upstream: pd.DataFrame,
    attacks: pd.DataFrame,
    captions: pd.DataFrame,
    level: float,
    caption: str,
) -> pd.DataFrame:
    """Join the clean corpus with its attacked counterparts for ``level``."""
    n_train = int((upstream["split"] == "train").sum())
    needed = n_replaced(level, n_train)
    if needed > len(attacks):
        raise DataError(
            f"noise level {level} needs {needed} adversarial pairs but the attack made "
            f"{len(attacks)}; raise attack_images.max_fraction to at least {level}"
        )
    chosen = attacks.loc[
        attacks["rank"] < needed, ["id", "adv_image_path", "target_id", "adv_sha256"]
    ]
    chosen = chosen.merge(captions[["id", "adv_caption", "target_caption"]], on="id", how="left")
    missing = chosen.loc[chosen["adv_caption"].isna(), "id"]
    if not missing.empty:
        raise DataError(f"attacked ids without an adversarial caption: {list(missing[:10])}")

    frame = upstream.merge(chosen, on="id", how="left")
    frame["is_adversarial"] = frame["adv_image_path"].notna()
    if frame.loc[frame["is_adversarial"], "split"].ne("train").any():
        raise DataError("the attack manifest names ids outside the upstream train split")
    clean_path = (layout.PREPARED.as_posix() + "/") + frame["image_path"]
    adv = frame["is_adversarial"]
    frame["clean_image_path"] = clean_path
    frame["image_path"] = clean_path.where(~adv, frame["adv_image_path"])
    frame["sha256"] = frame["sha256"].where(~adv, frame["adv_sha256"])
    frame["caption"] = frame["caption"].where(~adv, frame[CAPTION_COLUMN[caption]])
    frame["caption_kind"] = "clean"
    frame.loc[adv, "caption_kind"] = caption
    frame["target_id"] = frame["target_id"].where(adv, None)
    frame["noise_level"] = float(level)
    return frame.loc[:, list(NOISY_COLUMNS)].sort_values("id").reset_index(drop=True)


def run(params: Params, *, paths: BuildNoisyPaths, level: float) -> dict:
    data_root = paths.data
    upstream = read_manifest(data_root / layout.PREPARED, "upstream")
    attacks = read_table(
        data_root / layout.ATTACK_IMAGES / "manifest.parquet", ADV_IMAGE_COLUMNS, "attack_images"
    )
    captions = read_table(
        data_root / layout.ATTACK_CAPTIONS / "manifest.parquet",
        ADV_CAPTION_COLUMNS,
        "attack_captions",
    )
    captions = captions.rename(columns={"clean_caption": "_clean"})
    frame = noisy_manifest(upstream, attacks, captions, level, params.build_noisy.caption)

    train = frame["split"] == "train"
    metrics = {
        "noise_level": float(level),
        "n_rows": len(frame),
        "n_train": int(train.sum()),
        "n_adversarial": int(frame["is_adversarial"].sum()),
        "adversarial_fraction": float(frame.loc[train, "is_adversarial"].mean()),
    }
    with replace_dir(paths.out) as tmp:
        frame.to_parquet(tmp / "manifest.parquet", index=False, compression="zstd")
        (tmp / "level.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
