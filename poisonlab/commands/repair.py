"""`poisonlab repair`: repair a finished run's model on clean data and report CA/ASR before and
after (the trigger is the run's own attack, applied to the defender's test split)."""

from __future__ import annotations

import argparse
from pathlib import Path

from poisonlab.commands.options import RegistryHelp, add_trust_options, trust_options
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.config import set_dotted
from poisonlab.errors import ConfigError


def _repair(args: argparse.Namespace) -> int:
    from poisonlab.experiment.repair import RepairCellConfig, run_repair_cell
    from poisonlab.registry import validate_config
    from poisonlab.report.tables import markdown_table
    suspect = Path(args.suspect)
    if not (suspect / "config.yaml").is_file():
        raise ConfigError(f"{suspect}: not a run folder (no config.yaml)")
    repair: dict = {"name": args.defense}
    for assignment in args.set or []:
        set_dotted(repair, assignment)
    data = {"name": args.data, "train_size": args.train_size, "test_size": args.test_size}
    from poisonlab.experiment.restore import trained_run_config
    common = {"output_dir": args.output_dir, "suspect": str(suspect), "defender_data": data,
              "seed": trained_run_config(suspect).seed}
    cells = [validate_config(RepairCellConfig, {**common, "name": f"{suspect.name}__{name}",
                                                "repair": spec}, where="repair")
             for name, spec in (("suspect", None), (args.defense, repair))]
    for cell in cells:
        cell.resolved()  # every field checked before the first run
    rows = []
    for cell in cells:
        metrics = run_repair_cell(cell, force=args.force, progress=not args.quiet,
                                  **trust_options(args))
        rows.append({"model": cell.repair.name if cell.repair else "suspect", **metrics})
    print(markdown_table(rows, ["model", "clean_accuracy", "attack_success_rate"],
                         percent=["clean_accuracy", "attack_success_rate"]))
    print(f"run folders: {args.output_dir}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair", help=RegistryHelp("repair a run's model ({names}) on clean data", REPAIRS))
    parser.add_argument("suspect", help="finished run folder whose model is suspect")
    parser.add_argument("--defense", default="w2sdefense",
                        help=RegistryHelp("repair defense: {names} (default %(default)s)", REPAIRS))
    parser.add_argument("--data", required=True,
                        help="defender data set (train: clean data; test: evaluation)")
    parser.add_argument("--train-size", type=int, help="subsample the defender's clean data")
    parser.add_argument("--test-size", type=int, help="subsample the evaluation split")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="repair config value, e.g. --set preset=insertsent "
                             "--set tuning.r=64")
    parser.add_argument("--output-dir", default="runs/repairs")
    parser.add_argument("--force", action="store_true", help="rerun finished repairs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_trust_options(parser)
    parser.set_defaults(func=_repair)
