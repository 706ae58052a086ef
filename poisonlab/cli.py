"""The `poisonlab` command. User errors print one line and exit 2; `--help` on every subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Sequence

from poisonlab.commands import COMMANDS
from poisonlab.commands.options import (add_global_options, add_global_options_to_subcommands,
                                        apply_global_options)
from poisonlab.errors import PoisonlabError

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poisonlab", description=__doc__)
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"poisonlab.commands.{name}").add_parser(sub)
    add_global_options_to_subcommands(parser)
    return parser


# Raised while writing outputs (an unwritable folder, output_dir naming a file): the user can fix
# the path. Other OSErrors (disk full, I/O errors) stay tracebacks.
_PATH_ERRORS = (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        apply_global_options(args)
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
