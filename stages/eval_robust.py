"""DVC stage ``eval_robust@<level>``: white-box PGD against every fine-tuned model of a level."""

import argparse
from pathlib import Path

from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("level", type=float)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pretrain", type=Path, required=True)
    parser.add_argument("--finetune", type=Path, required=True, help="the level's models")
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    params.check_level(args.level)
    from medran.pipeline import eval_robust

    metrics = eval_robust.run(
        params.eval_robust,
        args.level,
        args.data,
        args.pretrain,
        args.finetune,
        params.experiment,
        params.finetune.tasks,
        params.finetune.methods,
        params.finetune.seeds,
    )
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "eval_robust")
