"""DVC stage ``validate_data@<suite>``: Great Expectations gate; any failed expectation fails it."""

import argparse
from pathlib import Path

from medran.params import load_params
from medran.runner import stage_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suite")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, required=True, help="the data root, e.g. data")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    params = load_params(args.params)
    from medran.pipeline import validate_data

    # Writes <out>/result.json (a DVC metric) and Data Docs; raises if an expectation fails.
    validate_data.run(args.suite, args.data, args.out, params)


if __name__ == "__main__":
    stage_main(main, "validate_data")
