"""The ``medran`` command: the make targets' equivalents and ``check-data``.

Each subcommand runs in the project's root (where ``params.yaml`` and ``dvc.yaml`` are), as
the make targets do; ``medran <command> --help`` describes it.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from medran.errors import InputError

COMMANDS = {
    "repro": "run the whole pipeline (dvc repro), what `make repro` does",
    "report": "bring reports/summary.md up to date (dvc repro report)",
    "ui": "serve the MLflow UI on the project's store and print its address (`make ui`)",
    "benchmark": "time the whole default pipeline from nothing (`make benchmark`)",
    "check-data": "check a raw dataset against a format reader and the clean gate",
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="medran", description="medran: the make targets as commands, and check-data."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        sub.add_parser(name, help=summary, description=summary, add_help=name != "benchmark")
    sub.choices["ui"].add_argument("--port", type=int, default=5000)
    check = sub.choices["check-data"]
    check.add_argument("--format", required=True, help="a reader, e.g. chestxray14_csv")
    check.add_argument("path", type=Path, help="the dataset's root folder")
    check.add_argument("--role", help="upstream, targets, cls or vqa (default: by format)")
    check.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a reader option"
    )
    check.add_argument("--params", type=Path, default=Path("params.yaml"))
    return top


def main(argv: list[str] | None = None) -> None:
    args, rest = parser().parse_known_args(argv)
    if rest and args.command != "benchmark":  # the benchmark parses its own options
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        code = _run(args, rest)
    except InputError as e:  # a bad argument or input: named, no traceback, as argparse exits
        print(f"medran {args.command}: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if args.command == "repro":
        return _dvc(["repro"], "Summary: reports/summary.md; the runs: medran ui")
    if args.command == "report":
        return _dvc(["repro", "report"], "Summary: reports/summary.md")
    if args.command == "ui":
        from medran import ui

        ui.main(["--port", str(args.port)])
    if args.command == "benchmark":
        from medran import benchmark

        benchmark.main(rest)
    if args.command == "check-data":
        return _check_data(args)
    return 0


def _dvc(command: list[str], done: str) -> int:
    code = subprocess.run(["dvc", *command], check=False).returncode
    if code == 0:
        print(done)
    return code


def _check_data(args: argparse.Namespace) -> int:
    from medran.check_data import check, source_spec
    from medran.params import load_params

    options = dict(_option(text) for text in args.option)
    role, spec, link = source_spec(args.format, args.path, args.role, options)
    params = load_params(args.params)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    found = check(role, spec, params, args.path.resolve())
    if found.problems:
        print(
            f"{args.path}: {len(found.problems)} problem(s) reading it as {role} ({spec.format}):"
        )
        for problem in found.problems:
            print(textwrap.indent(problem, "  "))
        return 1
    counts = ", ".join(f"{split} {n}" for split, n in found.splits.items())
    print(f"{args.path}: {sum(found.splits.values())} rows ({counts}); the clean gate passed.")
    if link:
        print(f"params.yaml reads sources inside the project: link it there first,\n  {link}")
    print("Its params.yaml source entry:\n")
    print(found.entry(), end="")
    return 0


def _option(text: str) -> tuple[str, str | int | float | bool]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"--option {text!r}: expected KEY=VALUE")
    parsed = yaml.safe_load(value) if value else value
    return key, parsed if isinstance(parsed, str | int | float | bool) else value


if __name__ == "__main__":
    main()
