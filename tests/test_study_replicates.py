"""A study's `replicates` axis: the cells repeat at several seeds and the report adds the mean and
spread over them (summary.md, summary.csv, error bars on the plot)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml

from poisonlab.errors import ConfigError
from poisonlab.report.replicates import mean_sd, replicate_summary
from poisonlab.studies.runner import load_study, run_study


def test_summary_gives_mean_sample_sd_and_range_per_group():
    rows = [{"attack": "badnet", "seed": "s0", "clean_accuracy": 0.80, "attack_success_rate": 1.0},
            {"attack": "badnet", "seed": "s1", "clean_accuracy": 0.90, "attack_success_rate": 0.5},
            {"attack": "badnet", "seed": "s2", "clean_accuracy": 0.85, "attack_success_rate": None},
            {"attack": "clean", "seed": "s0", "clean_accuracy": 0.70, "attack_success_rate": 0.1}]
    badnet, clean = replicate_summary(rows, ["attack", "seed"], "seed",
                                      ["clean_accuracy", "attack_success_rate"])
    assert badnet["n"] == 3 and badnet["attack"] == "badnet" and "seed" not in badnet
    assert badnet["clean_accuracy"] == pytest.approx(0.85)
    assert badnet["clean_accuracy_sd"] == pytest.approx(0.05)
    assert (badnet["clean_accuracy_min"], badnet["clean_accuracy_max"]) == (0.80, 0.90)
    # a missing value is left out of its column's statistics, not counted as zero
    assert badnet["attack_success_rate"] == pytest.approx(0.75)
    assert badnet["attack_success_rate_sd"] == pytest.approx(statistics.stdev([1.0, 0.5]))
    assert clean["n"] == 1 and clean["clean_accuracy_sd"] is None
    assert mean_sd(0.85, 0.05, percent=True) == "85.0 ± 5.0"
    assert mean_sd(0.7, None, percent=True) == "70.0"
    assert mean_sd(None, None, percent=True) == "-"
    assert mean_sd(12.5, 0.25, percent=False) == "12.5 ± 0.25"


def _study(tmp_path: Path, synthetic_dir: Path, **extra) -> Path:
    study = {
        "name": "seeded", "pipeline": "data-poisoning", "output_dir": str(tmp_path / "out"),
        "base": {"data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
                 "training": {"epochs": 4, "learning_rate": 3e-3, "max_length": 32},
                 "eval_every_epoch": False},
        "axes": {"attack": {"badnet": {"attack": {"name": "badnet", "target_label": 1,
                                                  "poison_rate": 0.2}}},
                 "seed": {"s0": {"seed": 0}, "s1": {"seed": 1}}},
        "replicates": "seed", **extra}
    path = tmp_path / "seeded.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_a_seeded_study_reports_each_seed_and_their_mean(tmp_path, synthetic_dir):
    study = load_study(_study(tmp_path, synthetic_dir))
    rows = run_study(study, progress=False)
    ran = [json.loads((study.folder / "cells" / f"badnet__{s}" / "metrics.json").read_text())
           for s in ("s0", "s1")]
    assert [m["seed"] for m in ran] == [0, 1]  # each cell ran at its own seed
    cas = [r["clean_accuracy"] for r in rows]
    assert cas[0] != cas[1]  # the seeds differ, so a mean that took one of them would fail
    with open(study.folder / "summary.csv", encoding="utf-8") as handle:
        (summary,) = list(csv.DictReader(handle))
    assert summary["attack"] == "badnet" and summary["n"] == "2"
    assert float(summary["clean_accuracy"]) == pytest.approx(statistics.fmean(cas))
    assert float(summary["clean_accuracy_min"]) == pytest.approx(min(cas))
    text = (study.folder / "summary.md").read_text(encoding="utf-8")
    assert "| attack | n | clean_accuracy | attack_success_rate |" in text
    assert "Mean ± sample standard deviation over seed (s0, s1)" in text
    assert (study.folder / "plot.png").stat().st_size > 0
    assert (study.folder / "summary.png").stat().st_size > 0
    assert "| badnet | s1 |" in (study.folder / "table.md").read_text(encoding="utf-8")


def test_replicates_must_name_an_axis(tmp_path, synthetic_dir):
    with pytest.raises(ConfigError, match="field 'replicates': no axis 'seeds'"):
        load_study(_study(tmp_path, synthetic_dir, replicates="seeds"))
