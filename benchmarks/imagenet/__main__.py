"""``python -m benchmarks.imagenet prepare-val|check``: lay out ImageNet for the ``imagenet`` task.

Exit codes: 0 done; 1 some validation images could not be placed (the report names
them; nothing else was changed); 2 bad input (one line, nothing moved).
"""

from __future__ import annotations

import sys

import argparse
import os
import typing

from . import layout
from .prepare import GroundTruthError, find_ground_truth, sort_validation

PROG = "python -m benchmarks.imagenet"


class ArgumentParser(argparse.ArgumentParser):
    """A usage error on one line, exit 2 (as ``benchmarks.config``'s parser, which this
    command does not import: it moves files and needs neither torch nor the config)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    prepare = commands.add_parser(
        "prepare-val", help="sort the flat validation folder into class folders",
        description="Move each image of <data-dir>/imagenet/val/ into val/<wnid>/ as the official "
        "ground truth says; safe to rerun (an interrupted run continues), moves nothing it "
        "cannot place.")
    check = commands.add_parser("check", help="say whether the layout is complete (exit 0) or "
                                "what to put where (exit 2)")
    for sub in (prepare, check):
        sub.add_argument("--data-dir", default=os.environ.get("VASSO_DATA") or "./data",
                         help="dataset root holding imagenet/ (default: $VASSO_DATA, else ./data)")
    prepare.add_argument("--solution", help=f"Kaggle's {'LOC_val_solution.csv'} (default: the "
                         "one in <data-dir>/imagenet, if any)")
    prepare.add_argument("--devkit", help="the extracted ILSVRC2012_devkit_t12 folder (default: "
                         "the one in <data-dir>/imagenet, if any)")
    prepare.add_argument("--dry-run", action="store_true", help="report, move nothing")
    return parser


def prepare_val(args) -> int:
    base = layout.root(args.data_dir)
    val = base / "val"
    if not val.is_dir():
        raise GroundTruthError(f"{val} does not exist: put the official validation images "
                               f"(ILSVRC2012_val_*.JPEG) there, then run this again")
    source, labels = find_ground_truth(base, args.solution, args.devkit)
    report = sort_validation(val, labels, dry_run=args.dry_run)
    print("\n".join(report.lines(val, source, len(labels), args.dry_run)), flush=True)
    return 0 if report.complete else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "check":
        problem = layout.missing_data(args.data_dir)
        if problem:
            print(f"{PROG}: error: {problem}", file=sys.stderr, flush=True)
            return 2
        print(f"{layout.root(args.data_dir)}: the ImageFolder layout is complete")
        return 0
    try:
        return prepare_val(args)
    except GroundTruthError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
