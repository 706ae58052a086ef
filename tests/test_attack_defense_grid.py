"""The attack-defense grid: one study whose cells are a data-poisoning run with no defense, with a
training-set defense (retrained on what it keeps), or with a detector on the undefended model;
its heat map; and `poisonlab list` naming the paper of every attack and defense.

The grid runs on tiny-bert and synthetic data with a BadNet backdoor (the training settings of
tests/test_training_defenses.py, where the backdoor is learnt and BKI removes it)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from poisonlab.attacks.base import DATA_ATTACKS
from poisonlab.attacks.icl_base import ICL_ATTACKS
from poisonlab.attacks.instruction_base import INSTRUCTION_ATTACKS
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS
from poisonlab.defenses.base import DETECTORS
from poisonlab.defenses.generative_base import GENERATIVE_DEFENSES
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.defenses.sanitize_base import SANITIZERS
from poisonlab.errors import ConfigError
from poisonlab.report.heatmap import heatmap_figure, heatmap_values
from poisonlab.studies.runner import cells, load_study, run_study, validate_cells

TRAINING = {"epochs": 6, "learning_rate": 3e-3, "max_length": 32}


def write_study(tmp_path: Path, synthetic_dir: Path, **extra) -> Path:
    study = {
        "name": "grid", "pipeline": "attack-defense", "output_dir": str(tmp_path / "out"),
        "base": {"seed": 0, "data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
                 "training": TRAINING, "eval_every_epoch": False},
        "axes": {
            "attack": {"badnet": {"attack": {"name": "badnet", "target_label": 1,
                                             "poison_rate": 0.2}},
                       "insertsent": {"attack": {"name": "insertsent", "target_label": 1,
                                                 "poison_rate": 0.2}}},
            "defense": {"none": {},
                        "strip": {"detect": {"name": "strip", "copies": 4},
                                  "detect_data": {"dev_size": 60}},
                        "bki": {"sanitize": {"name": "bki", "keywords": 4, "training": TRAINING}}}},
        "columns": ["clean_accuracy", "attack_success_rate", "false_rejection_rate",
                    "sanitize.removal_recall"],
        **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_grid_shares_the_model_across_detectors_and_retrains_for_sanitizers(
        tmp_path, synthetic_dir):
    study = load_study(write_study(tmp_path, synthetic_dir,
                                   exclude=[{"attack": "insertsent"}]))
    rows = {row["cell"]: row for row in run_study(study, progress=False)}
    assert set(rows) == {"badnet__none", "badnet__strip", "badnet__bki"}
    folder = study.folder
    # one model run for "none" and STRIP (the detector's victim), one for the BKI retraining
    models = sorted(p for p in (folder / "models").iterdir() if not p.name.startswith("."))
    assert len(models) == 2
    none, strip, bki = rows["badnet__none"], rows["badnet__strip"], rows["badnet__bki"]
    assert none["model_run"] in {str(p) for p in models}
    assert strip["victim"] == none["model_run"]
    # STRIP measured the very model of the "none" cell, on the same test set
    assert strip["clean_accuracy_no_defense"] == none["clean_accuracy"]
    assert strip["attack_success_rate_no_defense"] == none["attack_success_rate"]
    assert 0 <= strip["false_rejection_rate"] <= 1 and "false_acceptance_rate" in strip
    # the backdoor was learnt without a defense; BKI removed poison and the retrained model
    # lost most of it
    assert none["attack_success_rate"] > 0.8
    assert bki["sanitize"]["removed_poisoned"] > 0.8 * bki["sanitize"]["poisoned"]
    assert bki["attack_success_rate"] < none["attack_success_rate"] - 0.3
    assert bki["model_run"] != none["model_run"]

    table = list(csv.DictReader((folder / "table.csv").open()))
    assert [r["defense"] for r in table] == ["none", "strip", "bki"]
    assert float(table[2]["sanitize.removal_recall"]) == bki["sanitize"]["removal_recall"]
    assert table[0]["false_rejection_rate"] == "" and table[1]["false_rejection_rate"] != ""
    assert (folder / "plot.png").stat().st_size > 0

    # a rerun reuses every cell and model run
    before = {p: p.stat().st_mtime_ns for p in models}
    assert all(c.status == "finished" for c in validate_cells(study))
    again = {row["cell"]: row for row in run_study(study, progress=False)}
    assert again["badnet__strip"]["auroc"] == strip["auroc"]
    assert {p: p.stat().st_mtime_ns for p in models} == before
    record = json.loads((folder / "cells" / "badnet__none" / "metrics.json").read_text())
    assert record["attack_success_rate"] == none["attack_success_rate"]


def test_exclude_leaves_out_matching_cells_and_names_unknown_labels(tmp_path, synthetic_dir):
    path = write_study(tmp_path, synthetic_dir, exclude=[{"attack": "insertsent",
                                                          "defense": "bki"}])
    names = [config["name"] for _, config in cells(load_study(path))]
    assert len(names) == 5 and "insertsent__bki" not in names and "badnet__bki" in names
    bad = write_study(tmp_path, synthetic_dir, exclude=[{"attack": "lws"}])
    with pytest.raises(ConfigError, match="exclude.0.*'attack'.*'lws'"):
        load_study(bad)


def test_detector_cell_rejects_an_unknown_detector_field_before_running(tmp_path,
                                                                        synthetic_dir):
    path = write_study(tmp_path, synthetic_dir)
    study = load_study(path, ["axes.defense.strip.detect.coppies=4"])
    with pytest.raises(ConfigError, match="coppies"):
        validate_cells(study)
    assert not (study.folder / "models").exists()


def test_shipped_grid_pairs_every_detector_with_the_undefended_model(monkeypatch):
    """studies/attack_defense_grid.yaml: every attack x defense on SST-2 and OLID (the syntactic
    trigger's tables exist for SST-2 only); detectors measure the "none" cell's model, and
    each training-set defense retrains its own."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    study = load_study("studies/attack_defense_grid.yaml")
    grid = {cell.name: cell.config for cell in validate_cells(study)}
    assert len(grid) == 2 * 7 * 7 - 7 and "olid__syntactic__none" not in grid
    for name, config in grid.items():
        dataset, attack, defense = name.split("__")
        assert config.data.name == dataset and config.attack.name == attack
        undefended = grid[f"{dataset}__{attack}__none"].model_run().run_dir
        if defense in ("onion", "strip", "rap", "psim"):
            assert config.detect.name == defense
            assert config.detection().victim == str(undefended)
        elif defense != "none":
            assert config.sanitize.name == defense and config.model_run().run_dir != undefended


def grid_rows() -> list[dict]:
    cells = [("sst2", "badnet", "none", 1.0), ("sst2", "badnet", "onion", 0.25),
             ("sst2", "sos", "none", 0.9), ("sst2", "sos", "onion", 0.875),
             ("olid", "badnet", "none", 0.96), ("olid", "badnet", "onion", 0.5)]
    return [{"dataset": d, "attack": a, "defense": f, "attack_success_rate": asr}
            for d, a, f, asr in cells]


def test_heatmap_values_are_percent_with_missing_cells_nan():
    rows = [r for r in grid_rows() if r["dataset"] == "olid"]
    values = heatmap_values(rows, "attack", "defense", "attack_success_rate",
                            ["badnet", "sos"], ["none", "onion"])
    assert values[0].tolist() == [96.0, 50.0]
    assert np.isnan(values[1]).all()


def test_heatmap_figure_has_a_labelled_panel_per_dataset_with_annotated_cells():
    fig = heatmap_figure(grid_rows(), row_axis="attack", column_axis="defense",
                         panel_axis="dataset", title="grid")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["dataset: sst2", "dataset: olid"]
    for ax in panels:
        assert ax.get_xlabel() == "defense"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "onion"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["badnet", "sos"]
    assert panels[0].get_ylabel() == "attack"
    assert [t.get_text() for t in panels[0].texts] == ["100", "25", "90", "88"]
    assert [t.get_text() for t in panels[1].texts] == ["96", "50", "n/a", "n/a"]
    assert fig._suptitle.get_text() == "grid"
    colorbar = next(ax for ax in fig.axes if ax not in panels)
    assert colorbar.get_ylim() == (0.0, 100.0) and "(%)" in colorbar.get_ylabel()


PAPER_REGISTRIES = (DATA_ATTACKS, WEIGHT_ATTACKS, ICL_ATTACKS, INSTRUCTION_ATTACKS, DETECTORS,
                    REPAIRS, SANITIZERS, GENERATIVE_DEFENSES)


@pytest.mark.parametrize("entry", [pytest.param(e, id=f"{r.kind}:{e.name}")
                                   for r in PAPER_REGISTRIES for e in r.entries()])
def test_list_names_each_attack_and_defense_and_its_paper(entry):
    """`poisonlab list` prints each attack's and defense's summary: what it does and
    whose paper it is."""
    assert len(entry.summary) > 20, entry.summary
    assert re.search(r"\([^)]*\b(19|20)\d\d\b[^)]*\)", entry.summary), entry.summary
