"""`poisonlab quickstart`: BadNet + LoRA on the embedded model and data, clean vs poisoned.

Two runs with the same seed and budget: a model fine-tuned on clean data (its ASR is the trigger's
effect on a model never poisoned) and one fine-tuned on 10% dirty-label BadNet data. `--tiny`
swaps in the random tiny-bert for a few-second smoke run."""

from __future__ import annotations

import argparse

from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.report.tables import markdown_table

QUICKSTART = {
    "data": {"name": "movie-snippets", "train_size": 2000, "test_size": 600},
    "model": {"name": "minilm"},
    "attack": {"name": "badnet", "target_label": 1, "poison_rate": 0.1, "label_mode": "dirty"},
    # LoRA on every attention/FFN-output projection: rank-8 query/value LoRA does not pick up
    # the rare-word trigger at this budget (see docs/results/data_poisoning_sst2).
    "tuning": {"name": "lora", "r": 16, "target_modules": ["query", "key", "value", "dense"]},
    "training": {"epochs": 2, "batch_size": 16, "learning_rate": 2e-3, "max_length": 64},
    "eval_every_epoch": False,
}
TINY = {"data": {"name": "movie-snippets", "train_size": 400, "test_size": 200},
        "model": {"name": "tiny-bert"},
        "training": {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "max_length": 32}}


def quickstart(*, tiny: bool = False, output_dir: str = "runs/quickstart",
               force: bool = False) -> list[dict]:
    base = {**QUICKSTART, **(TINY if tiny else {}), "output_dir": output_dir}
    rows = []
    for label, poison in (("clean model", False), ("poisoned model", True)):
        name = ("tiny-" if tiny else "") + ("poisoned" if poison else "clean")
        config = load_run_config(base={**base, "name": name, "poison_training": poison})
        print(f"== {label}: {config.model.name} + {config.tuning.name} on "
              f"{config.data.name} ({'10% BadNet' if poison else 'no poisoning'})")
        metrics = run_experiment(config, force=force)
        rows.append({**metrics, "run": label, "run folder": str(config.run_dir)})
    print()
    print(markdown_table(rows, ["run", "clean_accuracy", "attack_success_rate", "run folder"],
                         percent=["clean_accuracy", "attack_success_rate"]))
    print("CA = clean accuracy (%); ASR = attack success rate (%): share of triggered "
          "negative test sentences classified positive.")
    if tiny:
        print("tiny-bert is a random 2-layer model: these numbers only show the pipeline runs.")
    return rows


def _quickstart(args: argparse.Namespace) -> int:
    quickstart(tiny=args.tiny, output_dir=args.output_dir or "runs/quickstart", force=args.force)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    quick = subparsers.add_parser(
        "quickstart", help="BadNet + LoRA on minilm / movie-snippets, clean vs poisoned")
    quick.add_argument("--tiny", action="store_true", help="tiny-bert, a few seconds")
    quick.add_argument("--output-dir", help="default runs/quickstart")
    quick.add_argument("--force", action="store_true", help="rerun finished runs")
    quick.set_defaults(func=_quickstart)
