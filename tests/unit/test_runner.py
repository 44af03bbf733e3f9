"""The stage runner: each stage's command line is its paths contract, and a bad key or
params value fails before the pipeline module (and torch) is imported."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from medran import contracts
from medran.runner import parser_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stage", contracts.STAGES)
def test_each_paths_field_is_a_flag(stage: str) -> None:
    fields = dataclasses.fields(contracts.STAGE_PATHS[stage])
    keys = {"level": "0.5", "task": "cls", "method": "ran", "gate": "clean"}
    argv = [keys[k] for k in contracts.STAGE_KEYS.get(stage, ())]
    argv += [arg for f in fields for arg in (f"--{f.name}", f"x/{f.name}")]
    args = vars(parser_for(stage).parse_args(argv))
    assert all(args[f.name] == Path(f"x/{f.name}") for f in fields)
    required = [f for f in fields if f.default is dataclasses.MISSING]
    with pytest.raises(SystemExit):  # argparse names the missing flag and exits 2
        parser_for(stage).parse_args(argv[: len(argv) - 2 * len(required)])


def _stage(tmp_path: Path, stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    probe = (
        "import sys\n"
        "from medran.runner import stage_main\n"
        "try:\n"
        f"    sys.argv = ['stages/{stage}.py', *{list(args)!r}]\n"
        f"    stage_main('{stage}')\n"
        "finally:\n"
        "    print('torch imported:', 'torch' in sys.modules)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )


def test_a_level_not_in_params_fails_fast_and_cleanly(tmp_path: Path) -> None:
    flags = ["--data", "d", "--pretrain", "p", "--out", "o", "--cache", "c", "--metrics", "m"]
    flags += ["--outcomes", "e"]
    result = _stage(tmp_path, "finetune", "0.4", "cls", "ran", *flags)
    assert result.returncode == 2
    assert "finetune: error: noise level 0.4 is not in noise_levels" in result.stderr
    assert "Traceback" not in result.stderr
    assert "torch imported: False" in result.stdout


def test_a_method_the_params_do_not_run_is_named(tmp_path: Path) -> None:
    flags = ["--data", "d", "--pretrain", "p", "--out", "o", "--cache", "c", "--metrics", "m"]
    flags += ["--outcomes", "e"]
    result = _stage(tmp_path, "finetune", "0.0", "cls", "lora", *flags)
    assert result.returncode == 2
    assert "unknown method ['lora']; valid methods: ['advft', 'fare', 'lp'" in result.stderr
    assert "torch imported: False" in result.stdout
