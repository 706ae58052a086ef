"""`poisonlab data show NAME` (splits, sizes, label names, a few rows) and `poisonlab data
prepare NAME` (build a research set in the data directory from its Hub source, online)."""

from __future__ import annotations

import argparse
from collections import Counter

SHOWN_ROWS = 3
SHOWN_CHARACTERS = 100


def _show(args: argparse.Namespace) -> int:
    from poisonlab.data import load_dataset
    dataset = load_dataset(args.name)
    print(f"{dataset.name}: {dataset.num_labels} labels, from {dataset.source or dataset.name}")
    print("labels: " + ", ".join(f"{i} {name}" for i, name in enumerate(dataset.label_names)))
    for split in ("train", "dev", "test"):
        examples = dataset.split(split)
        counts = Counter(e.label for e in examples)
        print(f"{split}: {len(examples)} rows"
              + (f" (per label: {', '.join(f'{k}: {counts[k]}' for k in sorted(counts))})"
                 if examples else ""))
    print("first training rows:")
    for example in dataset.train[:args.rows]:
        text = example.text if len(example.text) <= SHOWN_CHARACTERS else (
            example.text[:SHOWN_CHARACTERS] + "...")
        print(f"  [{example.label}] {text}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from poisonlab.data.prepare import prepare
    print(f"prepared: {prepare(args.name)}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect a data set, or prepare a research set")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="splits, sizes, label names and a few rows")
    show.add_argument("name", help="builtin name, research set, local file or folder, Hub name")
    show.add_argument("--rows", type=int, default=SHOWN_ROWS, help="training rows to print")
    show.set_defaults(func=_show)
    prepare = actions.add_parser(
        "prepare", help="download a research set from its Hub source into the data directory "
                        "(online; an unknown name lists the supported ones)")
    prepare.add_argument("name", help="research set to build")
    prepare.set_defaults(func=_prepare)
