"""DVC stage ``report``: summary tables, figures, plot data and an MLflow summary run."""

import argparse
from pathlib import Path

from medran.params import load_params
from medran.runner import stage_main, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reports", type=Path, required=True, help="the stages' metrics root")
    parser.add_argument("--data", type=Path, required=True, help="the data root")
    parser.add_argument("--gates", nargs="+", required=True, help="validate_data gate names")
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"))
    parser.add_argument("--benchmarks", type=Path, help="run-budget JSON, read if it exists")
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--figures", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True, help="folder of plot data")
    parser.add_argument("--metrics", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    from medran.pipeline import report
    from medran.reporting.inputs import Expected

    paths = report.ReportPaths(
        args.reports, args.data, args.lock, args.benchmarks, args.summary, args.figures, args.plots
    )
    expected = Expected.from_params(params, tuple(args.gates))
    metrics = report.run(params.report, expected, paths, params.experiment)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    stage_main(main, "report")
