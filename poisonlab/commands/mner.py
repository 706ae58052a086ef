"""`poisonlab mner train | eval | thresholds | predict | synth | report`: the MNER-QG subcommands.

The main CLI calls `add_parser(subparsers)`; each handler takes the argparse namespace and returns
an exit code; user mistakes raise PoisonlabError subclasses (printed as one line, exit 2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from poisonlab.commands.options import add_trust_options, trust_options
from poisonlab.errors import ConfigError, DataError


def _train(args: argparse.Namespace) -> int:
    from poisonlab.config import load_config
    from poisonlab.experiment.mner import run_training
    from poisonlab.mner.config import MnerConfig
    config = load_config(MnerConfig, args.config, args.set or [])
    out = Path(args.output_dir) / (args.name or Path(args.config).stem)
    metrics = run_training(config, out, tuple(args.eval_splits), force=args.force,
                           **trust_options(args))
    print(json.dumps({split: metrics[split] for split in args.eval_splits}, indent=1))
    print(f"run folder: {out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from poisonlab.experiment.mner import run_eval
    metrics = run_eval(args.run, args.split, threshold=args.threshold, device=args.device,
                       **trust_options(args))
    print(json.dumps(metrics, indent=1))
    return 0


def _thresholds(args: argparse.Namespace) -> int:
    from poisonlab.mner.thresholds import DEFAULT_GRID, sweep_thresholds
    result = sweep_thresholds(args.run, args.split, tuple(args.grid or DEFAULT_GRID),
                              device=args.device)
    print("| threshold | P | R | F1 |\n| --- | --- | --- | --- |")
    for row in result["sweep"]:
        print(f"| {row['threshold']:g} | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
              f"{100 * row['f1']:.2f} |")
    print(f"best on {args.split}: {result['best_threshold']:g}  (apply it: poisonlab mner eval "
          f"{args.run} --threshold {result['best_threshold']:g})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from poisonlab.io import write_jsonl
    from poisonlab.experiment.mner import single_process_runtime
    from poisonlab.mner.dataset import load_split
    from poisonlab.mner.train import load_run, predict, prediction_rows
    pipe = load_run(args.run, device=args.device, **trust_options(args))
    images = Path(args.images) if args.images else None
    if pipe.config.model.image and images is None:
        raise ConfigError("this model has an image branch: pass --images FOLDER")
    if images is not None and not images.is_dir():
        raise DataError("image folder not found", path=images)
    split = load_split(Path(args.input), images, {}, pipe.config.model.image_size)
    runtime = single_process_runtime(pipe.config.runtime)
    rows = prediction_rows(split, predict(pipe, split, runtime))
    write_jsonl(args.out, rows)
    print(f"{len(rows)} tweets -> {args.out}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from poisonlab.mner.synthetic import generate
    out = generate(args.out, args.train, args.valid, args.test, args.seed)
    print(f"synthetic MNER set written to {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from poisonlab.report.mner import ablation_table, per_type_table
    if len(args.runs) == 1 and "=" not in args.runs[0]:
        print(per_type_table(args.runs[0], args.split))
        return 0
    variants: dict[str, list[str]] = {}
    for arg in args.runs:
        name, _, runs = arg.rpartition("=") if "=" in arg else (Path(arg).name, "", arg)
        variants.setdefault(name, []).extend(r for r in runs.split(",") if r)
    print(ablation_table(variants, args.split))
    return 0


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                        help="where the model runs (default: the run's runtime.device), e.g. "
                             "cpu for a run trained on a GPU")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("mner", help="MNER-QG multimodal NER with query grounding")
    commands = parser.add_subparsers(dest="mner_command", required=True)

    train = commands.add_parser("train", help="train, evaluate, write a run folder")
    train.add_argument("config", help="YAML config (see configs/mner/)")
    train.add_argument("--output-dir", default="runs/mner", help="where run folders go "
                                                                  "(default runs/mner)")
    train.add_argument("--name", help="run folder name (default: the config file's name)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.epochs=1 (repeatable)")
    train.add_argument("--eval-splits", nargs="+", default=["test"], choices=["valid", "test"])
    train.add_argument("--force", action="store_true",
                       help="start over: replace a finished run and drop its checkpoint "
                            "(without it a finished run of the same config is reused and an "
                            "interrupted one resumes)")
    add_trust_options(train)
    train.set_defaults(func=_train)

    evaluate = commands.add_parser("eval", help="evaluate a run folder's model on a split")
    evaluate.add_argument("run", help="run folder written by `mner train`")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.add_argument("--threshold", type=float,
                          help="span threshold instead of the run's decode.threshold "
                               "(choose it on valid with `mner thresholds`)")
    _add_device_option(evaluate)
    add_trust_options(evaluate)
    evaluate.set_defaults(func=_eval)

    sweep = commands.add_parser("thresholds", help="F1 at several span thresholds on a held-out "
                                                   "split (one forward pass); picks the best")
    sweep.add_argument("run", help="run folder written by `mner train`")
    sweep.add_argument("--split", default="valid", choices=["valid", "test"],
                       help="choose on valid; test only to inspect")
    sweep.add_argument("--grid", type=float, nargs="+", help="thresholds to try (default 0.1 to 0.7 "
                                                             "in steps of 0.1)")
    _add_device_option(sweep)
    sweep.set_defaults(func=_thresholds)

    pred = commands.add_parser("predict", help="tag a CoNLL file (tags of the input are ignored)")
    pred.add_argument("run", help="run folder written by `mner train`")
    pred.add_argument("input", help="CoNLL file (IMGID: lines, token<TAB>tag; tags may be O)")
    pred.add_argument("--images", help="image folder (required by models with the image branch)")
    pred.add_argument("--out", required=True, help="predictions JSONL")
    _add_device_option(pred)
    add_trust_options(pred)
    pred.set_defaults(func=_predict)

    synth = commands.add_parser("synth", help="write the synthetic multimodal set")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--train", type=int, default=400)
    synth.add_argument("--valid", type=int, default=100)
    synth.add_argument("--test", type=int, default=200)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_synth)

    report = commands.add_parser("report", help="markdown table: one run per type, several "
                                                "runs side by side")
    report.add_argument("runs", nargs="+", metavar="RUN | NAME=RUN[,RUN...]",
                        help="run folders; NAME=RUN,RUN,... averages runs (e.g. seeds) into one "
                             "row, mean ± standard deviation")
    report.add_argument("--split", default="test", choices=["valid", "test"])
    report.set_defaults(func=_report)
    return parser
