"""``validate_noisy@<level>``: the data-quality gate of one noise level's corpus.

It runs before ``pretrain@<level>`` reads that corpus, and checks that level only, so a new
level reruns only its own branch; the nesting of levels is ``validate_data@nesting``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medran.contracts import ValidateDataPaths, gate_id
from medran.names import NOISY_GATE
from medran.params import Params
from medran.pipeline.validate_data import validate
from medran.quality.noisy import level_checks


def run(params: Params, *, paths: ValidateDataPaths, level: float) -> dict[str, Any]:
    checks = level_checks(Path(paths.data), params, level)
    return validate(gate_id(NOISY_GATE, level), checks, params, paths)
