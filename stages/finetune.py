"""DVC stage ``finetune@<level>-<task>-<method>``: a downstream method on a pre-trained model."""

import argparse
from pathlib import Path

from medran.params import check_choices, load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("level", type=float)
    parser.add_argument("task")
    parser.add_argument("method")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pretrain", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    params.check_level(args.level)
    check_choices("task", [args.task], params.finetune.tasks)
    check_choices("method", [args.method], params.finetune.methods)
    from medran.pipeline import finetune

    metrics = finetune.run(
        params.finetune,
        args.level,
        args.task,
        args.method,
        args.data,
        args.pretrain,
        args.out,
        args.cache,
        params.experiment,
    )
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "finetune")
