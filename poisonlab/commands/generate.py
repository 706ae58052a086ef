"""`poisonlab generate CONFIG`: one instruction-tuning backdoor run of a causal LM (tune, then
generate for clean and triggered test instructions) from a YAML config."""

from __future__ import annotations

import argparse

from poisonlab.commands.options import (add_config_options, add_trust_options, config_overrides,
                                        model_trust_overrides)


def _generate(args: argparse.Namespace) -> int:
    from poisonlab.experiment.generative import load_generative_config, run_generative
    from poisonlab.report.tables import markdown_table
    config = load_generative_config(args.config,
                                    config_overrides(args) + model_trust_overrides(args))
    metrics = run_generative(config, force=args.force, progress=not args.quiet)
    rates = ["attack_success_rate", "false_trigger_rate", "rouge_l", "token_f1"]
    print(markdown_table([{"run": config.name, **metrics}],
                         ["run", "tuning", "attack", *rates], percent=rates))
    print(f"run folder: {config.run_dir}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate", help="instruction-tuning backdoor of a generative model (ASR on outputs)",
        description=__doc__)
    parser.add_argument("config", help="YAML config (see configs/generative/)")
    add_config_options(parser, set_example="attack.poison_rate=0.2",
                       output_help="where run folders go (default: config's output_dir)",
                       force_help="rerun even if the run finished")
    add_trust_options(parser)
    parser.set_defaults(func=_generate)
