"""Options shared by the subcommands, defined once: the global ones (`--data-dir`, `--threads`,
accepted before or after the subcommand), the config ones (`--set`, `--output-dir`, `--force`,
`--quiet`) and the trust flags."""

from __future__ import annotations

import argparse
from typing import Any


DATA_DIR_HELP = "research data directory (default $POISONLAB_DATA_DIR)"
THREADS_HELP = "torch CPU threads (default: torch's choice)"


def add_global_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument("--data-dir", default=default, help=DATA_DIR_HELP)
    parser.add_argument("--threads", type=int, default=default, help=THREADS_HELP)


def add_global_options_to_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let the global options follow the subcommand too (`poisonlab run cfg.yaml --data-dir D`),
    as error messages that say "pass --data-dir" suggest. Added to every (nested) subparser; the
    default there is SUPPRESS so a value given before the subcommand stays when absent after."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for subparser in {id(p): p for p in action.choices.values()}.values():
            if "--data-dir" not in subparser._option_string_actions:
                add_global_options(subparser, default=argparse.SUPPRESS)
            add_global_options_to_subcommands(subparser)


def apply_global_options(args: argparse.Namespace) -> None:
    from poisonlab.settings import set_data_dir
    set_data_dir(args.data_dir)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)


class RegistryHelp(str):
    """Help text naming a registry's components, filled in only when help is shown (so building
    the parser imports no component), and always in step with what is registered."""

    def __new__(cls, template: str, registry: Any) -> "RegistryHelp":
        text = super().__new__(cls, template)
        text.registry = registry
        return text

    def __mod__(self, params: Any) -> str:
        return str(self).replace("{names}", ", ".join(self.registry.names())) % params


def add_config_options(parser: argparse.ArgumentParser, *, set_example: str,
                       output_help: str, force_help: str) -> None:
    """`--set KEY=VALUE` (repeatable), `--output-dir`, `--force`, `--quiet`."""
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help=f"override a config value, e.g. --set {set_example}")
    parser.add_argument("--output-dir", help=output_help)
    parser.add_argument("--force", action="store_true", help=force_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """`--allow-pickle` and `--trust-remote-code`: trust is granted by the person running the
    command, never by a run folder or model being examined."""
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow pickle (.bin/.pt) weights, which can run code when loaded")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a model's own Python code (auto_map) to run")


def trust_options(args: argparse.Namespace) -> dict[str, bool]:
    return {"allow_pickle": bool(getattr(args, "allow_pickle", False)),
            "trust_remote_code": bool(getattr(args, "trust_remote_code", False))}


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The `--set` assignments, with `--output-dir` turned into one more."""
    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    return overrides


def model_trust_overrides(args: argparse.Namespace) -> list[str]:
    """The trust flags as `--set model.<flag>=true` assignments, for configs with a `model`
    section of the user's own."""
    return [f"model.{key}=true" for key, value in trust_options(args).items() if value]


def print_run_summary(name: str, metrics: dict[str, Any], columns: list[str],
                      folder: Any) -> None:
    """One-row CA/ASR table of a finished run, then where its folder is."""
    from poisonlab.report.tables import markdown_table
    print(markdown_table([{"run": name, **metrics}],
                         ["run", *columns, "clean_accuracy", "attack_success_rate"],
                         percent=["clean_accuracy", "attack_success_rate"]))
    print(f"run folder: {folder}")
