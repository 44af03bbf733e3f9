"""DVC stage ``attack_images``: MF-ii adversarial images for the upstream training pairs."""

import argparse
from pathlib import Path

from medran.launch import is_main_process
from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data"), help="the data root")
    parser.add_argument("--surrogate", type=Path, default=Path("data/surrogate/attack"))
    parser.add_argument("--out", type=Path, default=Path("data/attacks/images"))
    parser.add_argument("--metrics", type=Path, default=Path("reports/attack_images/metrics.json"))
    parser.add_argument("--figure", type=Path, default=Path("reports/attack_images/examples.png"))
    args = parser.parse_args()

    params = load_params(args.params)
    from medran.pipeline import attack_images

    metrics = attack_images.run(
        params.attack_images, args.data, args.surrogate, args.out, params.experiment, args.figure
    )
    if is_main_process():  # under `accelerate launch`, only rank 0 writes
        write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "attack_images")
