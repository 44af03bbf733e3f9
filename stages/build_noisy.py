"""DVC stage ``build_noisy@<level>``: mix adversarial pairs into the upstream training set."""

import argparse
from pathlib import Path

from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("level", type=float)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    from medran.pipeline import build_noisy

    params.check_level(args.level)
    metrics = build_noisy.run(params.build_noisy, args.level, args.data, args.out)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "build_noisy")
