"""``pretrain`` relaunches itself under ``accelerate launch`` with the configured topology."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medran import launch
from medran.errors import InputError
from tests.helpers import ROOT, section


@pytest.fixture
def execv(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(launch.os, "execv", lambda _, command: calls.append(command))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(sys, "argv", ["stages/pretrain.py", "0.1", "--data", "data"])
    return calls


def test_the_config_file_gives_the_topology_and_params_the_counts(
    execv: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    params = section("pretrain", num_processes=4, global_batch_size=64, mixed_precision="bf16")
    launch.relaunch(params)
    (command,) = execv
    start = command.index("accelerate.commands.launch") + 1
    assert command[start:] == [
        "--config_file",
        "configs/accelerate/one-machine.yaml",
        "--num_processes",
        "4",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "no",
        "stages/pretrain.py",
        "0.1",
        "--data",
        "data",
    ]


def test_one_process_or_a_launched_job_is_not_relaunched(
    execv: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    launch.relaunch(section("pretrain", num_processes=1, accelerate_config="missing.yaml"))
    monkeypatch.setenv("WORLD_SIZE", "16")
    launch.relaunch(section("pretrain", num_processes=4, accelerate_config="missing.yaml"))
    assert execv == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        ("num_processes: 2\n", "is not an Accelerate config"),
        ("distributed_type: [\n", "cannot be read"),
    ],
)
def test_a_bad_config_file_is_named_before_any_work(
    execv: list[list[str]], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "accelerate.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        launch.relaunch(section("pretrain", num_processes=2, accelerate_config=str(path)))
    assert str(path) in str(error.value) and execv == []


def test_the_shipped_configs_are_accelerate_configs() -> None:
    from accelerate.commands.config import load_config_from_file

    for path in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        config = load_config_from_file(str(path))
        assert config.distributed_type == "MULTI_GPU", path
