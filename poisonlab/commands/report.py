"""`poisonlab report STUDY_OR_RUN`: one self-contained HTML page of a run folder or a study
(its folder, its YAML or its name in ./studies)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from poisonlab.errors import PoisonlabError


def _study_config(name: str) -> tuple[Path, dict[str, Any]]:
    """(folder, resolved config) of a study YAML or a study name in ./studies."""
    from poisonlab.studies import load_study
    from poisonlab.studies.runner import resolve_study_path
    study = load_study(resolve_study_path(name))
    return study.folder, study.model_dump()


def _report(args: argparse.Namespace) -> int:
    from poisonlab.report.figures import replot
    from poisonlab.report.folder import read_folder
    from poisonlab.report.html import write_html_report
    path = Path(args.target)
    if path.is_dir():
        result = read_folder(path)
    elif path.suffix in (".yaml", ".yml") or not ("/" in args.target or path.exists()):
        folder, config = _study_config(args.target)
        result = read_folder(folder, config, f"the study config {args.target}")
    else:
        raise PoisonlabError(f"{path}: not a run or study folder")
    if result.kind == "study" and result.config is None:
        # a folder of committed tables only (docs/results): its title names the study
        try:
            result.config = _study_config(result.title)[1]
            result.config_source = (f"studies/ as it is now (study '{result.title}'); this "
                                    "folder keeps only the study's tables")
        except PoisonlabError:
            pass
    if args.replot:
        for written in replot(result.tables):
            print(f"wrote {written}")
    print(f"wrote {write_html_report(result, args.output)}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML page of a run or study folder")
    parser.add_argument("target", metavar="STUDY_OR_RUN",
                        help="run folder, study folder, study YAML or study name "
                             "(e.g. data-poisoning-sst2)")
    parser.add_argument("--output", "-o", help="HTML file to write (default: "
                        "<folder>/report.html)")
    parser.add_argument("--replot", action="store_true",
                        help="also redraw each table's PNG beside its CSV (table.csv -> "
                             "plot.png), from the CSV alone")
    parser.set_defaults(func=_report)
