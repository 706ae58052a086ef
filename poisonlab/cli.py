"""The `poisonlab` command. User errors print one line and exit 2; `--help` on every subcommand."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, Sequence

from poisonlab.cli_options import (add_config_options, add_trust_options, config_overrides,
                                   model_trust_overrides, print_run_summary)
from poisonlab.errors import PoisonlabError

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

DATA_DIR_HELP = "research data directory (default $POISONLAB_DATA_DIR)"


def _run(args: argparse.Namespace) -> int:
    from poisonlab.experiment import load_run_config, run_experiment
    config = load_run_config(args.config, config_overrides(args) + model_trust_overrides(args))
    metrics = run_experiment(config, force=args.force, progress=not args.quiet)
    print_run_summary(config.name, metrics, ["tuning", "attack"], config.run_dir)
    return 0


def _list(args: argparse.Namespace) -> int:
    from poisonlab.registries import all_registries
    for registry in all_registries():
        print(f"{registry.kind} registry:")
        for entry in registry.entries():
            print(f"  {entry.name:<20} {entry.summary}")
            if args.verbose:
                for field, info in entry.config_class.model_fields.items():
                    default = info.get_default(call_default_factory=True)
                    if hasattr(default, "model_dump"):
                        default = default.model_dump(mode="json")
                    print(f"      {field} = {default!r}  {info.description or ''}")
    from poisonlab.data.loading import BUILTIN_SETS
    from poisonlab.data.research import RESEARCH_SETS
    from poisonlab.models.builtin import BUILTIN_MODELS
    print("models:")
    for model in BUILTIN_MODELS.values():
        print(f"  {model.name:<20} {model.description}")
    print("data sets:")
    print(f"  builtin: {', '.join(BUILTIN_SETS)}; research (data directory): "
          f"{', '.join(RESEARCH_SETS)}; or a local .jsonl/.csv/.tsv file or folder, or a Hub name")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from poisonlab.quickstart import quickstart
    quickstart(tiny=args.tiny, output_dir=args.output_dir or "runs/quickstart",
               force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poisonlab", description=__doc__)
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one experiment from a YAML config")
    run.add_argument("config", help="YAML run config (see configs/)")
    add_config_options(run, set_example="training.epochs=1",
                       output_help="where run folders go (default: config's output_dir)",
                       force_help="rerun even if the run finished")
    add_trust_options(run)
    run.set_defaults(func=_run)

    listing = sub.add_parser("list", help="list attacks, tuning strategies, defenses, models, data")
    listing.add_argument("--verbose", "-v", action="store_true", help="show config fields")
    listing.set_defaults(func=_list)

    quick = sub.add_parser("quickstart",
                           help="BadNet + LoRA on minilm / movie-snippets, clean vs poisoned")
    quick.add_argument("--tiny", action="store_true", help="tiny-bert, a few seconds")
    quick.add_argument("--output-dir", help="default runs/quickstart")
    quick.add_argument("--force", action="store_true", help="rerun finished runs")
    quick.set_defaults(func=_quickstart)

    for add_parser in _extension_parsers():
        add_parser(sub)
    return parser


def _extension_parsers() -> list[Callable]:
    """Subcommands that live beside their feature (icl, mner, study, defend)."""
    parsers = []
    for module in ("poisonlab.icl.cli", "poisonlab.mner.cli", "poisonlab.studies.cli",
                   "poisonlab.defenses.cli", "poisonlab.defenses.repair_cli",
                   "poisonlab.experiment.victim_cli"):
        try:
            parsers.append(__import__(module, fromlist=["add_parser"]).add_parser)
        except ModuleNotFoundError as exc:
            if not module.startswith(exc.name or "?"):
                raise
    return parsers


def _accept_data_dir_after_subcommands(parser: argparse.ArgumentParser) -> None:
    """Let `--data-dir` follow the subcommand too (`poisonlab run cfg.yaml --data-dir D`), as the
    error messages that say "pass --data-dir" suggest. Subcommands are built in several modules,
    so the option is added here to every (nested) subparser that lacks it; its default is
    SUPPRESS so that, when absent there, the value given before the subcommand stays."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for subparser in {id(p): p for p in action.choices.values()}.values():
            if "--data-dir" not in subparser._option_string_actions:
                subparser.add_argument("--data-dir", default=argparse.SUPPRESS,
                                       help=DATA_DIR_HELP)
            _accept_data_dir_after_subcommands(subparser)


# Raised while writing outputs (an unwritable folder, output_dir naming a file): the user can fix
# the path. Other OSErrors (disk full, I/O errors) stay tracebacks.
_PATH_ERRORS = (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _accept_data_dir_after_subcommands(parser)
    args = parser.parse_args(argv)
    try:
        from poisonlab.settings import set_data_dir
        set_data_dir(args.data_dir)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            return args.func(args)
    except PoisonlabError as exc:
        print(f"poisonlab: error: {exc}", file=sys.stderr)
        return 2
    except _PATH_ERRORS as exc:
        where = f" {exc.filename}" if exc.filename is not None else ""
        print(f"poisonlab: error: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("poisonlab: interrupted; finished runs are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
