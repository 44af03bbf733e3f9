"""``attack_captions``: an adversarial caption for every attacked image (docs/architecture.md,
"Attacks").

Reads the ``attack_images`` manifest (which ids were attacked, their targets and saved PNGs)
and the prepared upstream and target captions, asks the configured backend (``rules``,
``llm`` or ``captioner``) for one caption per row, and writes ``manifest.parquet`` with
exactly :data:`~medran.data.manifest.ADV_CAPTION_COLUMNS`, sorted by id, plus ``examples.md``
(clean -> adversarial, also logged to MLflow). Inputs are checked and the backend's model is
loaded before any caption is made; the output folder is assembled next to its final place and
moved there only when complete.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medran import layout
from medran.attacks.captions import CaptionJob, Resources, Rewrite, get_backend
from medran.attacks.captions.captioner import RETRIEVAL
from medran.attacks.captions.llm import REJECTIONS
from medran.attacks.lexicon import body_part_of
from medran.contracts import AttackCaptionsPaths
from medran.data.errors import DataError
from medran.data.manifest import ADV_CAPTION_COLUMNS, read_manifest, read_table
from medran.data.paths import resolve_under
from medran.fsutil import replace_dir
from medran.params import Params

log = logging.getLogger(__name__)

MANIFEST, EXAMPLES = "manifest.parquet", "examples.md"
N_EXAMPLES = 10
NEEDED = ("id", "target_id", "target_body_part", "adv_image_path")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("clean_caption", pa.string()),
        ("target_caption", pa.string()),
        ("adv_caption", pa.string()),
        ("backend", pa.string()),
        ("changed", pa.bool_()),
        ("changed_words", pa.list_(pa.string())),
        ("fallback", pa.bool_()),
    ]
)
assert tuple(SCHEMA.names) == ADV_CAPTION_COLUMNS


def read_jobs(data_root: Path) -> tuple[list[CaptionJob], pd.DataFrame, pd.DataFrame]:
    """One job per attacked id (sorted), and the prepared upstream and target manifests."""
    path = data_root / layout.ATTACK_IMAGES / MANIFEST
    attacks = read_table(path, NEEDED, "attack_images")
    duplicated = sorted(set(attacks["id"][attacks["id"].duplicated()]))
    if duplicated:
        raise DataError(f"{path}: duplicate id(s) {duplicated[:10]}")
    prepared = data_root / layout.PREPARED
    upstream = read_manifest(prepared, "upstream").set_index("id")
    targets = read_manifest(prepared, "targets").set_index("id")
    _check_known(attacks["id"], upstream.index, f"{path}: id(s) not in the upstream manifest")
    paired = attacks["target_id"].dropna()
    _check_known(paired, targets.index, f"{path}: target_id(s) not in the targets manifest")
    target_captions = targets["caption"].astype(str).to_dict()
    jobs = [
        CaptionJob(
            id=row.id,
            clean_caption=str(upstream.at[row.id, "caption"]),
            target_caption=target_captions.get(row.target_id, ""),
            target_body_part=row.target_body_part if _given(row.target_body_part) else None,
            adv_image_path=resolve_under(data_root, row.adv_image_path, f"{path} ({row.id})"),
        )
        for row in attacks.sort_values("id").itertuples(index=False)
    ]
    return jobs, upstream, targets


def _given(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _check_known(ids: pd.Series, known: pd.Index, message: str) -> None:
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise DataError(f"{message}: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")


def caption_pool(upstream: pd.DataFrame, targets: pd.DataFrame) -> tuple[str, ...]:
    """The retrieval captioner's candidates: upstream train captions and the target pool."""
    train = upstream.loc[upstream["split"] == "train", "caption"]
    return tuple(sorted(set(train.astype(str)) | set(targets["caption"].astype(str))))


def to_frame(jobs: list[CaptionJob], rewrites: list[Rewrite], backend: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [j.id for j in jobs],
            "clean_caption": [j.clean_caption for j in jobs],
            "target_caption": [j.target_caption for j in jobs],
            "adv_caption": [r.caption for r in rewrites],
            "backend": backend,
            "changed": [r.caption != j.clean_caption for j, r in zip(jobs, rewrites, strict=True)],
            "changed_words": [list(r.changed_words) for r in rewrites],
            "fallback": [r.fallback for r in rewrites],
        },
        columns=list(ADV_CAPTION_COLUMNS),
    ).sort_values("id", ignore_index=True)


def summarize(frame: pd.DataFrame, jobs: list[CaptionJob], rewrites: list[Rewrite]) -> dict:
    """Flat metrics: how many captions changed, fell back, and moved to another body part."""
    n = len(frame)
    clean_parts = [body_part_of(c) for c in frame["clean_caption"]]
    adv_parts = [body_part_of(c) for c in frame["adv_caption"]]
    moved = [a != c for a, c in zip(adv_parts, clean_parts, strict=True)]
    on_target = [j.target_body_part is not None and a == j.target_body_part
                 for j, a in zip(jobs, adv_parts, strict=True)]  # fmt: skip
    unchanged_part = [
        c is not None and not ch for c, ch in zip(clean_parts, frame["changed"], strict=True)
    ]

    def fraction(flags: pd.Series | list[bool]) -> float:
        return float(sum(bool(f) for f in flags) / n) if n else 0.0

    metrics = {
        "n": n,
        "n_changed": int(frame["changed"].sum()),
        "changed_fraction": fraction(frame["changed"]),
        "n_fallback": int(frame["fallback"].sum()),
        "fallback_fraction": fraction(frame["fallback"]),
        "n_empty": int((frame["adv_caption"].str.strip() == "").sum()),
        "mean_changed_words": float(frame["changed_words"].map(len).mean()) if n else 0.0,
        # Captions that name a body part but came back unchanged (0 for rules and llm).
        "n_unchanged_with_body_part": sum(unchanged_part),
        # The body part the adversarial caption names differs from the clean one / is the target's.
        "body_part_changed_fraction": fraction(moved),
        "target_body_part_fraction": fraction(on_target),
    }
    # Every reason is reported (0 when it never happened), so the metric keys are stable.
    reasons = Counter(r.reason for r in rewrites if r.fallback)
    metrics |= {f"fallback.{reason}": reasons[reason] for reason in REJECTIONS}
    metrics["unique_adv_captions"] = int(frame["adv_caption"].nunique())
    return metrics


def examples_markdown(frame: pd.DataFrame, n: int = N_EXAMPLES) -> str:
    """A small table of clean -> adversarial captions for people reading the run."""

    def cell(text: object) -> str:
        return str(text).replace("|", r"\|").replace("\n", " ")

    lines = [
        "| id | clean caption | adversarial caption | changed words | fallback |",
        "|---|---|---|---|---|",
    ]
    for row in frame.head(n).itertuples(index=False):
        words = ", ".join(row.changed_words)
        cells = (row.id, row.clean_caption, row.adv_caption, words, row.fallback)
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(frame: pd.DataFrame, out_dir: Path) -> None:
    """Write ``manifest.parquet`` and ``examples.md`` into a sibling folder, then swap it in."""
    with replace_dir(out_dir) as tmp:
        table = pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)
        pq.write_table(table, tmp / MANIFEST, compression="zstd")
        (tmp / EXAMPLES).write_text(examples_markdown(frame))


def run(params: Params, *, paths: AttackCaptionsPaths) -> dict:
    """Caption every attacked image with the configured backend; returns flat metrics."""
    p = params.attack_captions
    data_root = Path(paths.data)
    factory = get_backend(p.backend)
    jobs, upstream, targets = read_jobs(data_root)
    uses_images = p.backend == "captioner"
    if uses_images:  # fail on a missing PNG now, not after the model has run for a while
        absent = [j for j in jobs if not j.adv_image_path.is_file()]
        if absent:
            raise DataError(
                f"{len(absent)} adversarial image(s) missing, e.g. {absent[0].adv_image_path}"
            )
    retrieval = uses_images and p.captioner.model == RETRIEVAL
    pool = caption_pool(upstream, targets) if retrieval else ()
    backend = factory(p, Resources(data_root, paths.captioner, pool))
    log.info("attack_captions: %d rows, backend %s", len(jobs), p.backend)

    from medran.tracking import stage_run

    inputs = {
        "attack_images": data_root / layout.ATTACK_IMAGES,
        "prepared": data_root / layout.PREPARED,
    }
    if retrieval and paths.captioner is not None:
        inputs["captioner"] = Path(paths.captioner)
    tags = {"backend": p.backend, "seed": p.seed}
    with stage_run("attack_captions", params.experiment, p, inputs, tags) as tracker:
        rewrites = backend.rewrite(jobs)
        frame = to_frame(jobs, rewrites, p.backend)
        metrics = summarize(frame, jobs, rewrites)
        write_outputs(frame, paths.out)
        tracker.log_metrics(metrics)
        tracker.log_artifact(paths.out / EXAMPLES)
    if metrics["n_empty"]:
        log.warning("attack_captions: %d empty adversarial caption(s)", metrics["n_empty"])
    log.info(
        "attack_captions: %d/%d changed, %d fallback(s)",
        metrics["n_changed"],
        metrics["n"],
        metrics["n_fallback"],
    )
    return metrics
