"""`poisonlab compare RUN RUN [RUN ...]`: the config fields that differ between finished runs
and their metrics side by side."""

from __future__ import annotations

import argparse


def _compare(args: argparse.Namespace) -> int:
    from poisonlab.report.compare import compare_table
    print(compare_table([args.first, *args.others], args.format), end="")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    compare = subparsers.add_parser(
        "compare", help="differing config fields and metrics of finished run folders, "
                        "with each run's difference to the first")
    compare.add_argument("first", metavar="RUN", help="run folder every other run is compared to")
    compare.add_argument("others", metavar="RUN", nargs="+", help="more run folders")
    compare.add_argument("--format", default="markdown", help="markdown (default) or csv")
    compare.set_defaults(func=_compare)
