"""`poisonlab repair`: repair a finished run's model on clean data and report CA/ASR before and
after (the trigger is the run's own attack, applied to the defender's test split)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from poisonlab.config import set_dotted
from poisonlab.errors import ConfigError


def _repair(args: argparse.Namespace) -> int:
    from poisonlab.defenses.repair_pipeline import run_repair_cell
    from poisonlab.report.tables import markdown_table
    suspect = Path(args.suspect)
    if not (suspect / "config.yaml").exists():
        raise ConfigError(f"{suspect}: not a run folder (no config.yaml)")
    victim = yaml.safe_load((suspect / "config.yaml").read_text(encoding="utf-8"))
    for key in ("name", "output_dir", "save_weights"):
        victim.pop(key, None)
    repair: dict = {"name": args.defense}
    for assignment in args.set or []:
        set_dotted(repair, assignment)
    data = {"name": args.data, "train_size": args.train_size, "test_size": args.test_size}
    common = {"output_dir": args.output_dir, "victim": victim, "victim_name": suspect.name,
              "victims_dir": str(suspect.parent), "defender_data": data,
              "seed": victim.get("seed", 0)}
    rows = []
    for name, spec in (("suspect", None), (args.defense, repair)):
        metrics = run_repair_cell({**common, "name": f"{suspect.name}__{name}", "repair": spec},
                                  force=args.force, progress=not args.quiet)
        rows.append({"model": name, **metrics})
    print(markdown_table(rows, ["model", "clean_accuracy", "attack_success_rate"],
                         percent=["clean_accuracy", "attack_success_rate"]))
    print(f"run folders: {args.output_dir}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repair", help="repair a run's model (w2sdefense, finetune, fineprune) on clean data")
    parser.add_argument("suspect", help="finished run folder whose model is suspect")
    parser.add_argument("--defense", default="w2sdefense", help="repair defense name")
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
    parser.set_defaults(func=_repair)
