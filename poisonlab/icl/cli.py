"""`poisonlab icl`: run one in-context attack, or the study, from a YAML config.

  poisonlab icl run configs/icl/sst2_demonstration.yaml [--set test_size=200] [--out DIR]
  poisonlab icl study configs/icl/study.yaml      # runs unfinished cells, then writes the report
  poisonlab icl report configs/icl/study.yaml --output-dir DIR   # table + plot, finished cells

Reports go to <output_dir>/report unless --output-dir (or the study's results_dir) says where."""

from __future__ import annotations

import argparse
from pathlib import Path

from poisonlab.cli_options import add_trust_options, trust_options


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)


def _run(args: argparse.Namespace) -> int:
    from poisonlab.icl.run import ICLExperiment, load_icl_config
    config = load_icl_config(args.config, list(args.set or []))
    _threads(args)
    folder = Path(args.out or Path(config.output_dir) / Path(args.config).stem)
    metrics = ICLExperiment(config, **trust_options(args)).run(folder, force=args.force)
    for variant in ("raw", "calibrated"):
        values = metrics[variant]
        print(f"{variant:>10}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    print(f"run folder: {folder}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from poisonlab.icl.report import write_study_report
    from poisonlab.icl.study import load_study_config, run_study
    study = load_study_config(args.config)
    _threads(args)
    run_study(study, **trust_options(args))
    for path in write_study_report(study, args.output_dir):
        print(f"wrote {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from poisonlab.icl.report import write_study_report
    from poisonlab.icl.study import load_study_config
    for path in write_study_report(load_study_config(args.config), args.output_dir):
        print(f"wrote {path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `icl` (run / study / report) to the main `poisonlab` command."""
    icl = subparsers.add_parser("icl", help="in-context learning attacks on causal LMs",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = icl.add_subparsers(dest="icl_command", required=True, metavar="ACTION")

    run = sub.add_parser("run", help="evaluate one in-context attack (clean vs attacked)")
    run.add_argument("config", help="YAML config (see configs/icl/)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config value, e.g. --set attack.config.trigger_position=start")
    run.add_argument("--out", help="run folder (default <output_dir>/<config name>)")
    run.add_argument("--force", action="store_true", help="rerun even if the run finished")
    run.add_argument("--threads", type=int, help="torch CPU threads")
    add_trust_options(run)
    run.set_defaults(func=_run)

    study = sub.add_parser("study", help="run the study's unfinished cells, then its report")
    study.add_argument("config", help="study YAML (configs/icl/study.yaml)")
    study.add_argument("--threads", type=int, help="torch CPU threads")
    study.add_argument("--output-dir", help="where the report goes (default <output_dir>/report)")
    add_trust_options(study)
    study.set_defaults(func=_study)

    report = sub.add_parser("report", help="the study's table and plot from finished cells")
    report.add_argument("config", help="study YAML")
    report.add_argument("--output-dir", help="where the report goes (default <output_dir>/report)")
    report.set_defaults(func=_report)
    return icl
