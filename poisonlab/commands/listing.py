"""`poisonlab list`: every registered component (from the registries themselves), the builtin
models and the data sets."""

from __future__ import annotations

import argparse


def _list(args: argparse.Namespace) -> int:
    from poisonlab.data.loading import BUILTIN_SETS
    from poisonlab.data.research import RESEARCH_SETS
    from poisonlab.models.builtin import BUILTIN_MODELS
    from poisonlab.registries import REGISTRIES
    for registry in REGISTRIES:
        print(f"{registry.kind} ({len(registry.names())} registered):")
        for entry in registry.entries():
            print(f"  {entry.name:<20} {entry.summary}")
            if args.verbose:
                for field, info in entry.config_class.model_fields.items():
                    default = info.get_default(call_default_factory=True)
                    if hasattr(default, "dump"):
                        default = default.dump()
                    elif hasattr(default, "model_dump"):
                        default = default.model_dump(mode="json")
                    print(f"      {field} = {default!r}  {info.description or ''}")
    print("models:")
    for model in BUILTIN_MODELS.values():
        print(f"  {model.name:<20} {model.description}")
    print("data sets:")
    for name in BUILTIN_SETS:
        print(f"  {name:<20} builtin (embedded package)")
    for name in RESEARCH_SETS:
        print(f"  {name:<20} research set (data directory)")
    print("  or a local .jsonl/.csv/.tsv file or folder, or a Hub name (online)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser(
        "list", help="list attacks, tuning strategies, defenses, models and data sets")
    listing.add_argument("--verbose", "-v", action="store_true", help="show config fields")
    listing.set_defaults(func=_list)
