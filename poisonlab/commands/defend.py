"""`poisonlab defend VICTIM --defense NAME`: run a detection defense on a run folder or a released
model and write a defense result folder. `poisonlab defense-table STUDY`: a detection study's
table with "no defense" and each defense per victim. `poisonlab defense-histograms DIR...`: one
figure of the score histograms of several result folders."""

from __future__ import annotations

import argparse
import math

from poisonlab.commands.options import RegistryHelp, add_trust_options, trust_options
from poisonlab.defenses.base import DETECTORS
from poisonlab.config import read_yaml, set_dotted


def _threshold_text(threshold: float | None) -> str:
    """A threshold as printed; none for a detector that only purifies (ONION's default)."""
    if threshold is None or not math.isfinite(threshold):
        return "none (purify only)"
    return f"{threshold:.4g}"


def _defend(args: argparse.Namespace) -> int:
    from poisonlab.experiment.detection import DetectionConfig, run_detection
    from poisonlab.registry import validate_config
    from poisonlab.report.detection import histogram_grid_of
    from poisonlab.report.tables import markdown_table
    raw = read_yaml(args.config) if args.config else {}
    raw["victim"] = args.victim
    if args.defense:
        given = raw.get("defense")
        raw["defense"] = {**(given if isinstance(given, dict) else {}), "name": args.defense}
    for key in ("name", "output_dir"):
        if getattr(args, key):
            raw[key] = getattr(args, key)
    for assignment in args.set or []:
        set_dotted(raw, assignment)
    config = validate_config(DetectionConfig, raw, where=args.config or "defend")
    metrics = run_detection(config, force=args.force, progress=not args.quiet,
                            **trust_options(args))
    columns = ["defense", "clean_accuracy_no_defense", "attack_success_rate_no_defense",
               "clean_accuracy", "attack_success_rate", "false_rejection_rate",
               "false_acceptance_rate", "auroc"]
    rows = [{**metrics, "threshold": _threshold_text(metrics["threshold"])}]
    if "threshold_calibrated" in metrics:  # the same detector at a dev-calibrated threshold
        rows.append({"defense": metrics["defense"], "threshold":
                     f"{_threshold_text(metrics['threshold_calibrated'])} (calibrated)",
                     **{k: metrics.get(f"{k}_calibrated", metrics.get(k)) for k in columns[1:]}})
    print(markdown_table(rows, ["defense", "threshold", *columns[1:]], percent=columns[1:]))
    histogram_grid_of([config.result_dir], config.result_dir / "histogram.png")
    audited = (config.result_dir / "calibration_scores.jsonl").is_file()
    audit = " calibration_scores.jsonl," if audited else ""
    print(f"result folder: {config.result_dir} (scores.jsonl,{audit} histogram.png)")
    return 0


def _histograms(args: argparse.Namespace) -> int:
    from poisonlab.report.detection import histogram_grid_of
    histogram_grid_of(args.result_dirs, args.output)
    print(f"wrote {args.output}")
    return 0


def _table(args: argparse.Namespace) -> int:
    from poisonlab.report.detection import write_detection_table
    from poisonlab.studies import load_study
    from poisonlab.studies.runner import resolve_study_path, validate_cells
    study = load_study(resolve_study_path(args.study))
    cells = [(cell.labels, cell.folder) for cell in validate_cells(study)]
    path = write_detection_table(study, cells, args.output_dir or study.folder)
    print(path.read_text(encoding="utf-8"))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "defend", help=RegistryHelp("run a detection defense ({names}) on a victim", DETECTORS))
    parser.add_argument("victim", help="finished run folder (save_weights: true) or a released "
                        "classifier (builtin name, folder, Hub id)")
    parser.add_argument("--defense", help=RegistryHelp("detector: {names}", DETECTORS))
    parser.add_argument("--config", help="YAML with defense/data/attack settings")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a value, e.g. --set defense.threshold=null "
                             "--set data.test_size=300")
    parser.add_argument("--name", help="result folder name (default: defense)")
    parser.add_argument("--output-dir", help="where result folders go (default: defenses)")
    parser.add_argument("--force", action="store_true", help="rerun a finished result")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_trust_options(parser)
    parser.set_defaults(func=_defend)

    plot = subparsers.add_parser("defense-histograms",
                                 help="score histograms of defense result folders, one figure")
    plot.add_argument("result_dirs", nargs="+", help="defense result folders")
    plot.add_argument("--output", "-o", required=True, help="PNG to write")
    plot.set_defaults(func=_histograms)

    table = subparsers.add_parser(
        "defense-table", help="detection study table: no defense and each defense per victim")
    table.add_argument("study", help="detection study YAML or name (e.g. detection-minilm)")
    table.add_argument("--output-dir", help="where table.md/table.csv go (default: the study "
                       "folder)")
    table.set_defaults(func=_table)
