"""`poisonlab export RUN --output DIR`: a finished training run as a standard Hugging Face model
folder with a model card (optionally pushed to the Hub)."""

from __future__ import annotations

import argparse

from poisonlab.commands.options import add_trust_options, trust_options


def _export(args: argparse.Namespace) -> int:
    from poisonlab.experiment.export import check_can_push, export_run, push_to_hub
    if args.push_to_hub:
        check_can_push(args.push_to_hub)
    folder = export_run(args.run, args.output, merge=args.merge, **trust_options(args))
    print(f"exported: {folder}")
    if args.push_to_hub:
        print(f"pushed: {push_to_hub(folder, args.push_to_hub)}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="write a finished training run as a Hugging Face model folder "
                       "(safetensors, config.json, tokenizer, model card)")
    export.add_argument("run", metavar="RUN", help="finished run folder with trained weights")
    export.add_argument("--output", required=True, metavar="DIR",
                        help="the model folder to create (must not exist)")
    export.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True,
                        help="merge a peft adapter into the base weights (default), or keep it "
                             "as an adapter beside the base model in DIR/base (--no-merge)")
    export.add_argument("--push-to-hub", metavar="REPO_ID",
                        help="also upload the folder to this Hub model repository (online)")
    add_trust_options(export)
    export.set_defaults(func=_export)
