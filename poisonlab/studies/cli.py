"""`poisonlab study CONFIG`: run (or resume) a study and write its table and plot."""

from __future__ import annotations

import argparse


def _study(args: argparse.Namespace) -> int:
    from poisonlab.studies import load_study, run_study
    study = load_study(args.config, list(args.set or []))
    if args.output_dir:
        study.output_dir = args.output_dir
    run_study(study, force=args.force, progress=not args.quiet, only=args.only)
    print((study.folder / "table.md").read_text(encoding="utf-8"))
    print(f"study folder: {study.folder}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("study", help="run or resume a grid of runs (studies/*.yaml)")
    parser.add_argument("config", help="study YAML (see studies/)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a study value, e.g. --set base.training.epochs=1")
    parser.add_argument("--output-dir", help="parent folder of the study folder")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only cells whose name contains TEXT (repeatable)")
    parser.add_argument("--force", action="store_true", help="rerun finished cells")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_study)
