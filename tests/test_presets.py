"""The scale presets (studies/*_scale*.yaml, configs/icl/study_opt_*.yaml) and the accelerate
configs (configs/accelerate/*.yaml) stay valid offline, and docs/runtime.md shows every preset's
cells.

Nothing here loads a model or data: a preset is checked the way `poisonlab study NAME --dry-run`
checks it (every cell's config validated, upstream cells resolved), and Hub ids only have to be
well formed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "runtime.md"
STUDY_PRESETS = sorted((ROOT / "studies").glob("*_scale*.yaml"))
ICL_PRESETS = sorted((ROOT / "configs" / "icl").glob("study_opt_*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))

# What each preset must hold: cell count, and the models it names (the paper's).
EXPECTED_STUDIES = {
    "psim-scale-victims": (4, {"google-bert/bert-large-uncased", "FacebookAI/roberta-large"}),
    "psim-scale-detection": (4, set()),
    "w2sdefense-scale": (15, {"meta-llama/Meta-Llama-3-8B", "google-bert/bert-base-uncased"}),
}
EXPECTED_ICL_MODELS = {"facebook/opt-1.3b", "facebook/opt-2.7b", "facebook/opt-6.7b"}


@pytest.fixture(autouse=True)
def _in_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """Study names resolve through ./studies and upstream folders through ./studies_out."""
    monkeypatch.chdir(ROOT)


def _validated(path: Path):
    from poisonlab.studies.runner import load_study, validate_cells
    study = load_study(path)
    return study, validate_cells(study)


def _strings(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


def test_every_preset_is_listed() -> None:
    assert {p.stem.replace("_", "-") for p in STUDY_PRESETS} == set(EXPECTED_STUDIES)
    assert {yaml.safe_load(p.read_text())["model"] for p in ICL_PRESETS} == EXPECTED_ICL_MODELS
    assert {p.stem for p in ACCELERATE_CONFIGS} >= {"one_gpu", "eight_gpus_zero3",
                                                    "two_cpu_processes"}


@pytest.mark.parametrize("path", STUDY_PRESETS, ids=lambda p: p.stem)
def test_study_preset_validates(path: Path) -> None:
    """Every cell validates (schema, components, runtime and model options, upstream cells), as
    `poisonlab study NAME --dry-run` does; the preset says what it reproduces and needs."""
    from poisonlab.models import check_model_source
    study, cells = _validated(path)
    count, models = EXPECTED_STUDIES[study.name]
    assert len(cells) == count
    assert len({c.name for c in cells}) == count
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    named = _strings(raw)
    assert models <= named, f"{path.name} does not name {models - named}"
    for model in models:
        check_model_source(model)  # a well-formed Hub id (nothing is downloaded)
    description = " ".join(study.description.split())
    assert description.startswith("Scale preset"), description[:80]
    assert "Hardware:" in description
    assert "docs/runtime.md" in description


def test_detection_preset_names_its_victims_by_reference() -> None:
    """The detection preset's victims are cells of the victims preset, resolved to their folders
    (and built first by the study runner when missing)."""
    _, victims = _validated(ROOT / "studies" / "psim_scale_victims.yaml")
    _, detection = _validated(ROOT / "studies" / "psim_scale_detection.yaml")
    wanted = {c.name for c in victims}
    named = {u.cell for c in detection for u in c.upstream}
    assert named == wanted
    assert all(u.study == "psim-scale-victims" for c in detection for u in c.upstream)
    for cell in detection:
        assert Path(cell.config.victim) == cell.upstream[0].folder()


def test_w2sdefense_preset_keeps_one_suspect_folder_per_config() -> None:
    """Cells that share a suspect folder share its config, so no cell finds the suspect of
    another config there (a stale run)."""
    from poisonlab.experiment.rundir import RunSlot
    _, cells = _validated(ROOT / "studies" / "w2sdefense_scale.yaml")
    hashes: dict[Path, set[str]] = {}
    for cell in cells:
        suspect = cell.config.victim_config()
        hashes.setdefault(suspect.run_dir, set()).add(
            RunSlot(suspect.run_dir, suspect.resolved(), kind="train").hash)
    assert len(hashes) == 6  # 3 triggers x (poisoned, clean)
    assert all(len(h) == 1 for h in hashes.values()), hashes


@pytest.mark.parametrize("path", ICL_PRESETS, ids=lambda p: p.stem)
def test_icl_preset_validates(path: Path, tmp_path: Path) -> None:
    """The study config loads, and every data set's run config loads through the run loader."""
    from poisonlab.experiment.icl import load_icl_config
    from poisonlab.models import check_model_source
    from poisonlab.studies.icl import load_study_config, run_config, study_cells
    study = load_study_config(path)
    check_model_source(study.model)
    assert [d.dataset for d in study.datasets] == ["sst2", "olid", "trec4"]
    assert all(d.test_size is None for d in study.datasets)  # the whole test sets
    for entry in study.datasets:
        run = run_config(study, entry)
        written = tmp_path / f"{entry.dataset}.yaml"
        written.write_text(yaml.safe_dump(run.model_dump(mode="json")), encoding="utf-8")
        assert load_icl_config(written) == run
        assert list(study_cells(study, entry))
    header = " ".join(line.lstrip("# ") for line in path.read_text().splitlines()
                      if line.startswith("#"))
    assert header.startswith("Scale preset") and "Hardware:" in header
    assert "docs/runtime.md" in header


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_parses(path: Path) -> None:
    """accelerate's own loader reads the file (unknown keys are an error there)."""
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType
    config = load_config_from_file(str(path))
    expected = {
        "one_gpu": (DistributedType.NO, 1, False),
        "eight_gpus_zero3": (DistributedType.DEEPSPEED, 8, False),
        "two_cpu_processes": (DistributedType.MULTI_GPU, 2, True),
    }.get(path.stem)
    if expected is None:
        return
    assert (config.distributed_type, config.num_processes, config.use_cpu) == expected
    if path.stem == "eight_gpus_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.mixed_precision == "bf16"


def _docs_block(command: str) -> str:
    """The fenced block that follows the line naming `command` in docs/runtime.md."""
    text = DOCS.read_text(encoding="utf-8")
    at = text.find(command)
    assert at >= 0, f"docs/runtime.md does not show `{command}`"
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, at)
    assert match, f"no output block after `{command}` in docs/runtime.md"
    return match.group(1)


def _rows(block: str) -> dict[str, list[str]]:
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("cell", "---"):
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("path", STUDY_PRESETS, ids=lambda p: p.stem)
def test_docs_show_every_cell_of_the_dry_run(path: Path) -> None:
    """docs/runtime.md holds the dry-run output of each preset study, cell for cell."""
    study, cells = _validated(path)
    block = _docs_block(f"poisonlab study {study.name} --dry-run")
    rows = _rows(block)
    assert set(rows) == {c.name for c in cells}
    for cell in cells:
        assert rows[cell.name][1:1 + len(cell.labels)] == list(cell.labels.values())
    assert f"{len(cells)} cells valid" in block


def test_docs_show_every_icl_preset_cell() -> None:
    """docs/runtime.md lists the cells the OPT presets run (the same for the three sizes)."""
    from poisonlab.studies.icl import load_study_config, study_cells
    block = _docs_block("cells of every configs/icl/study_opt_*.yaml")
    listed = {(r[0], r[1]) for r in (line.strip().strip("|").split("|")
                                     for line in block.splitlines() if line.startswith("|"))
              if r[0].strip() not in ("dataset", "---")}
    listed = {(a.strip(), b.strip()) for a, b in listed}
    for path in ICL_PRESETS:
        study = load_study_config(path)
        cells = {(e.folder, cell) for e in study.datasets for cell, _ in study_cells(study, e)}
        assert cells == listed, path.name
