"""``benchmarks/gpu.py``: its every case runs (tiny, on the CPU), and it skips without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1"}


def test_the_dry_run_measures_every_case_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    report = json.loads(out.read_text())
    assert report["environment"]["dry_run"] is True
    assert report["peak_bf16_matmul"]["flops_per_s"] > 0
    assert set(report["results"]) == {
        "attack_fp32",
        "attack_bf16",
        "pretrain_bf16",
        "eval_robust_bf16",
    }
    for name, row in report["results"].items():
        rate = row.get("image_steps_per_s", row.get("images_per_s"))
        assert rate > 0 and row["flops_per_unit"] > 0 and row["mfu"] > 0, name
    # A ViT-sized unit of work, counted: a forward and backward are several MFLOPs even tiny.
    assert report["results"]["attack_fp32"]["flops_per_unit"] > 1e6


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_skips_with_a_message_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert "skipped: no CUDA device" in result.stdout and not out.exists()
