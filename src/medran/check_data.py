"""``medran check-data``: a user's raw dataset through the format reader and the clean gate,
before it is wired into ``params.yaml``.

The dataset is read as ``prepare_data`` reads a source, converted and split into a temporary
folder with the project's ``prepare_data`` params, and validated by the clean gate's check of
its role (``validate_data@clean``). Nothing in the project changes. A clean dataset gets the
``params.yaml`` source entry that would read it; otherwise every problem is listed, by file
and row: the reader stops at the first bad row (its error names the file and row), the image
conversion at the first undecodable image, and the gate lists every failed expectation with
its rows' source ids and image files.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from medran.data.errors import DataError
from medran.data.manifest import SPLITS, read_manifest
from medran.data.readers import READERS
from medran.errors import InputError
from medran.names import ROLE_KIND, ROLES
from medran.params import Params, SourceSpec
from medran.pipeline.prepare_data import describe_image, prepare_role, read_source
from medran.quality.gx import failure_line, validate_tables
from medran.quality.suites import clean_check

# The role a format's rows take when none is given: captions feed pre-training.
DEFAULT_ROLE = {"captions": "upstream", "labels": "cls", "vqa": "vqa"}


@dataclass
class Finding:
    """What the check found: the source entry it read, the rows per split, the problems (one
    string each, its rows on the lines below it)."""

    role: str
    spec: SourceSpec
    splits: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def entry(self) -> str:
        """The ``params.yaml`` lines that make ``prepare_data`` read this dataset."""
        source = self.spec.model_dump()
        return yaml.safe_dump({"prepare_data": {"sources": {self.role: source}}}, sort_keys=False)


def source_spec(
    fmt: str, path: Path, role: str | None, options: dict[str, Any]
) -> tuple[str, SourceSpec, str | None]:
    """(role, the source entry, the command that links the dataset into the project when it
    lies outside: params.yaml reads sources inside it), or an error naming the bad value and
    what is allowed, before any work."""
    if fmt not in READERS:
        raise InputError(f"unknown --format {fmt!r}; allowed: {sorted(READERS)}")
    kind = READERS[fmt].kind
    role = role or DEFAULT_ROLE[kind]
    fitting = [r for r in ROLES if ROLE_KIND[r] == kind]
    if role not in fitting:
        raise InputError(f"--role {role!r} does not take {kind} rows ({fmt}); allowed: {fitting}")
    if not path.is_dir():
        raise InputError(f"{path} is not a directory: give the dataset's root folder")
    absolute, project = path.resolve(), Path.cwd().resolve()
    if absolute.is_relative_to(project):
        return (
            role,
            SourceSpec(format=fmt, path=absolute.relative_to(project).as_posix(), options=options),
            None,
        )
    inside = f"data/raw/{absolute.name}"
    link = f"ln -s {absolute} {inside}"
    return role, SourceSpec(format=fmt, path=inside, options=options), link


def check(role: str, spec: SourceSpec, params: Params, where: Path) -> Finding:
    """Read the dataset at ``where`` as ``spec`` and ``role``, convert and validate it; never
    raises on bad data."""
    found = Finding(role, spec)
    p = params.prepare_data.model_copy(update={"sources": {role: spec}})
    try:
        frame = read_source(role, spec.model_copy(update={"path": str(where)}), Path.cwd())
    except DataError as e:
        found.problems.append(str(e))
        return found
    with tempfile.TemporaryDirectory(prefix="medran-check-") as tmp:
        root = Path(tmp)
        try:
            prepare_role(role, frame, p, params.seed, root)
        except DataError as e:
            found.problems.append(str(e))
            return found
        manifest = read_manifest(root, role)
        found.splits = {s: int((manifest["split"] == s).sum()) for s in SPLITS}
        gate = clean_check(
            role, ROLE_KIND[role], manifest, root, params.validate_data, p.image_size
        )
        (outcome,) = validate_tables([gate], max_examples=params.validate_data.max_examples)
    rows = frame.set_index("id")
    for failed in outcome.failed:
        lines = [failure_line("validate_data@clean", failed)]
        lines += [f"  {_row(rows, i)}" for i in failed.example_ids or []]
        found.problems.append("\n".join(lines))
    return found


def _row(rows: pd.DataFrame, row_id: Any) -> str:
    """A manifest id as the user's data names it: the source id and its image file."""
    if row_id not in rows.index:
        return str(row_id)
    row = rows.loc[row_id]
    return f"row {row['source_id']} ({describe_image(row['image'])})"
