"""`poisonlab run CONFIG`: one train-and-measure run from a YAML config."""

from __future__ import annotations

import argparse

from poisonlab.commands.options import (add_config_options, add_trust_options, config_overrides,
                                        model_trust_overrides, print_run_summary)


def _run(args: argparse.Namespace) -> int:
    from poisonlab.experiment import load_run_config, run_experiment
    config = load_run_config(args.config, config_overrides(args) + model_trust_overrides(args))
    metrics = run_experiment(config, force=args.force, progress=not args.quiet)
    print_run_summary(config.name, metrics, ["tuning", "attack"], config.run_dir)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run one experiment from a YAML config")
    run.add_argument("config", help="YAML run config (see configs/)")
    add_config_options(run, set_example="training.epochs=1",
                       output_help="where run folders go (default: config's output_dir)",
                       force_help="rerun even if the run finished")
    add_trust_options(run)
    run.set_defaults(func=_run)
