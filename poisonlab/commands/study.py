"""`poisonlab study CONFIG`: run (or resume) a study and write its table and plot."""

from __future__ import annotations

import argparse
from poisonlab.commands.options import add_config_options, add_trust_options, trust_options
from poisonlab.runtime import main_process


def _study(args: argparse.Namespace) -> int:
    from poisonlab.report.tables import markdown_table
    from poisonlab.studies import load_study, run_study
    from poisonlab.studies.runner import resolve_study_path, validate_cells
    study = load_study(resolve_study_path(args.config), list(args.set or []))
    if args.output_dir:
        study.output_dir = args.output_dir
    if args.dry_run:
        rows = [{"cell": c.name, **c.labels, "status": c.status, "folder": str(c.folder)}
                for c in validate_cells(study)]
        print(markdown_table(rows, ["cell", *study.axes, "status", "folder"]))
        print(f"{len(rows)} cells valid; {sum(r['status'] == 'to run' for r in rows)} to run")
        return 0
    run_study(study, force=args.force, progress=not args.quiet, only=args.only,
              **trust_options(args))
    if not main_process():  # rank 0 alone wrote the table; it alone prints it
        return 0
    print((study.folder / "table.md").read_text(encoding="utf-8"))
    print(f"study folder: {study.folder}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("study", help="run or resume a grid of runs (studies/*.yaml)")
    parser.add_argument("config", help="study YAML, or a study name from ./studies "
                        "(e.g. data-poisoning-sst2)")
    add_config_options(parser, set_example="base.training.epochs=1",
                       output_help="parent folder of the study folder",
                       force_help="rerun finished cells")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only cells whose name contains TEXT (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate every cell, list them with their status, run nothing")
    add_trust_options(parser)
    parser.set_defaults(func=_study)
