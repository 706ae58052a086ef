"""The subcommands of `poisonlab`, one module each; every module has `add_parser(subparsers)`.
Options shared by several subcommands are defined once, in `options.py`."""

COMMANDS = ("run", "study", "quickstart", "listing", "weights", "defend", "repair", "icl", "mner",
            "generate", "compare", "export", "data", "report")
