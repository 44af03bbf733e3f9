"""DVC stage ``pretrain@<level>``: CLIP contrastive pre-training on one noisy corpus."""

import argparse
from pathlib import Path

from medran.launch import is_main_process, relaunch
from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("level", type=float)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--curve", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    params.check_level(args.level)
    relaunch(params.pretrain.num_processes, params.pretrain.mixed_precision)
    from medran.pipeline import pretrain

    metrics = pretrain.run(
        params.pretrain,
        args.level,
        args.data,
        args.model,
        args.checkpoints,
        params.experiment,
        args.curve,
    )
    if is_main_process():
        write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "pretrain")
