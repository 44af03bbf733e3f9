"""DVC stage ``eval_upstream@<level>``: retrieval and zero-shot metrics of a pre-trained model."""

import argparse
from pathlib import Path

from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("level", type=float)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    params.check_level(args.level)
    from medran.pipeline import eval_upstream

    metrics = eval_upstream.run(
        params.eval_upstream, args.level, args.data, args.model, params.experiment
    )
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "eval_upstream")
