"""DVC stage ``prepare_data``: read the configured sources, write canonical manifests + images."""

import argparse
from pathlib import Path

from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    from medran.pipeline import prepare_data

    metrics = prepare_data.run(params.prepare_data, Path.cwd(), args.out, params.seed)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "prepare_data")
