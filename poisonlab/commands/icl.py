"""`poisonlab icl`: run one in-context attack, or the study, from a YAML config.

  poisonlab icl run configs/icl/sst2_demonstration.yaml [--set test_size=200] [--name NAME]
  poisonlab icl study configs/icl/study.yaml      # runs unfinished cells, then writes the report
  poisonlab icl report configs/icl/study.yaml --report-dir DIR   # table + plot, finished cells

Reports go to <output_dir>/report unless --report-dir (or the study's results_dir) says where."""

from __future__ import annotations

import argparse
from pathlib import Path

from poisonlab.commands.options import (add_config_options, add_trust_options, config_overrides,
                                        trust_options)
from poisonlab.runtime import main_process


def _run(args: argparse.Namespace) -> int:
    from poisonlab.experiment.icl import ICLExperiment, load_icl_config
    from poisonlab.icl.evaluate import QUERY_TEMPLATE, VARIANTS
    config = load_icl_config(args.config, config_overrides(args))
    folder = Path(config.output_dir) / (args.name or Path(args.config).stem)
    metrics = ICLExperiment(config, progress=not args.quiet, **trust_options(args)).run(
        folder, force=args.force)
    for variant in (*VARIANTS, QUERY_TEMPLATE):
        if variant in metrics:  # the query-template variant only where the attack rewords
            print(f"{variant}: " + ", ".join(
                f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in metrics[variant].items()))
    print(f"run folder: {folder}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from poisonlab.report.icl import write_study_report
    from poisonlab.studies.icl import load_study_config, run_study, study_rows
    study = load_study_config(args.config)
    run_study(study, **trust_options(args))
    if not main_process():  # rank 0 alone writes the report
        return 0
    for path in write_study_report(study, study_rows(study), args.report_dir):
        print(f"wrote {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from poisonlab.report.icl import write_study_report
    from poisonlab.studies.icl import load_study_config, study_rows
    study = load_study_config(args.config)
    for path in write_study_report(study, study_rows(study), args.report_dir):
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
    add_config_options(run, set_example="attack.trigger_position=start",
                       output_help="where run folders go (default: config's output_dir)",
                       force_help="rerun even if the run finished")
    run.add_argument("--name", help="run folder name (default: the config file's name)")
    add_trust_options(run)
    run.set_defaults(func=_run)

    study = sub.add_parser("study", help="run the study's unfinished cells, then its report")
    study.add_argument("config", help="study YAML (configs/icl/study.yaml)")
    study.add_argument("--report-dir", help="where the report goes (default <output_dir>/report)")
    add_trust_options(study)
    study.set_defaults(func=_study)

    report = sub.add_parser("report", help="the study's table and plot from finished cells")
    report.add_argument("config", help="study YAML")
    report.add_argument("--report-dir", help="where the report goes (default <output_dir>/report)")
    report.set_defaults(func=_report)
    return icl
