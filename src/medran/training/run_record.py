"""What a resumable run keeps beside its checkpoints, so that a rerun after a kill carries on
where it stopped and reports the whole run.

``fingerprint.txt``: the params and data the checkpoints belong to; ``history.jsonl``: every
logged step so far (the rows past the state a rerun resumes from are trained again, and
dropped); ``run_id.txt``: the MLflow run that trained them; ``exported``: the run's outputs
are complete. A finished, exported record is one a forced rerun starts afresh; a finished one
that was killed while exporting is resumed (zero steps left) and exported.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from medran.training.loop import read_progress

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.txt"
HISTORY = "history.jsonl"
RUN_ID = "run_id.txt"
EXPORTED = "exported"


def reset_stale(checkpoint_dir: Path, fingerprint: str, epochs: int) -> None:
    """Keep the record only if it was made with the same params and data and its run did not
    complete: a forced rerun of a completed run trains again instead of zero steps."""
    stamp = checkpoint_dir / FINGERPRINT
    progress = read_progress(checkpoint_dir) if checkpoint_dir.is_dir() else None
    complete = progress is not None and progress["epoch"] >= epochs
    complete &= (checkpoint_dir / EXPORTED).is_file()
    if stamp.is_file() and stamp.read_text() == fingerprint and not complete:
        return
    if checkpoint_dir.exists():
        log.info("discarding checkpoint %s: completed, or params or data changed", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    stamp.write_text(fingerprint)


class StepHistory:
    """The logged steps of a run across its restarts, in ``checkpoint_dir/history.jsonl``."""

    def __init__(self, checkpoint_dir: Path):
        self.folder, self.path = checkpoint_dir, checkpoint_dir / HISTORY
        progress = read_progress(checkpoint_dir)
        resumed = progress["step"] if progress else 0
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        self.rows = [row for row in map(json.loads, lines) if row["step"] <= resumed]
        self.path.write_text("".join(json.dumps(row) + "\n" for row in self.rows))
        run_id = checkpoint_dir / RUN_ID
        self.previous_run_id = run_id.read_text().strip() if self.rows and run_id.is_file() else ""

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def record_run_id(checkpoint_dir: Path, run_id: str | None) -> None:
    (checkpoint_dir / RUN_ID).write_text(run_id or "")


def mark_exported(checkpoint_dir: Path) -> None:
    (checkpoint_dir / EXPORTED).touch()
