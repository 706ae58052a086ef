"""`poisonlab poison-weights CONFIG` (release a poisoned model) and `poisonlab victim CONFIG`
(fine-tune released weights cleanly and measure CA / ASR)."""

from __future__ import annotations

import argparse

from poisonlab.attacks.weight_base import WEIGHT_ATTACKS
from poisonlab.commands.options import (RegistryHelp, add_config_options, add_trust_options, config_overrides,
                                   print_run_summary, trust_options)
from poisonlab.config import read_yaml, set_dotted
from poisonlab.errors import ConfigError


def _poison_weights(args: argparse.Namespace) -> int:
    from poisonlab.experiment.release import release as release_weights
    raw = read_yaml(args.config)
    for assignment in args.set or []:
        set_dotted(raw, assignment)
    if "name" not in raw:
        raise ConfigError(f"{args.config}: field 'name': the weight-poisoning attack to run "
                          f"({', '.join(WEIGHT_ATTACKS.names())})")
    attack = WEIGHT_ATTACKS.spec(raw).build()
    release = release_weights(attack, args.output_dir, force=args.force, progress=not args.quiet,
                              **trust_options(args))
    metrics = release.record["proxy_test_metrics"]
    print(f"released: {release.folder}")
    print(f"proxy test: CA {100 * metrics['clean_accuracy']:.1f}%  "
          f"ASR {100 * metrics['attack_success_rate']:.1f}%  trigger {release.trigger}")
    return 0


def _victim(args: argparse.Namespace) -> int:
    from poisonlab.experiment.victim import load_victim_config, run_victim
    config = load_victim_config(args.config, config_overrides(args))
    metrics = run_victim(config, force=args.force, progress=not args.quiet, **trust_options(args))
    print_run_summary(config.name, metrics, ["weights", "head", "tuning"],
                      f"{config.output_dir}/{config.name}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    poison = subparsers.add_parser(
        "poison-weights", help=RegistryHelp("release a weight-poisoned model ({names})",
                                            WEIGHT_ATTACKS))
    poison.add_argument("config", help="YAML: {name: <attack>, base_model, trigger, proxy, "
                                       "training, ...}")
    poison.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a value, e.g. --set training.epochs=1")
    poison.add_argument("--output-dir", default="released", help="parent of the release folder")
    poison.add_argument("--force", action="store_true", help="re-poison an existing release")
    poison.add_argument("--quiet", action="store_true", help="no progress bar")
    add_trust_options(poison)
    poison.set_defaults(func=_poison_weights)

    victim = subparsers.add_parser(
        "victim", help="fine-tune released weights on clean data; CA and ASR of the trigger")
    victim.add_argument("config", help="YAML victim config (poison or released, data, tuning)")
    add_config_options(victim, set_example="tuning.name=lora",
                       output_help="where the run folder goes",
                       force_help="rerun a finished victim run")
    add_trust_options(victim)
    victim.set_defaults(func=_victim)
