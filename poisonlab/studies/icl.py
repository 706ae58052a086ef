"""The ICLAttack study: clean ICL vs each attack on several data sets, with an ablation over the
number of poisoned demonstrations and the trigger position. Every cell is an ordinary run folder
(`<output_dir>/<dataset>/<cell>`), so a killed study resumes; the model and each data set's scores
are shared across cells (the clean context is scored once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field

from poisonlab.attacks.icl_base import ICL_ATTACKS
from poisonlab.config import StrictConfig, load_config
from poisonlab.icl.verbalizer import Aggregation
from poisonlab.experiment.icl import (DemonstrationConfig, ICLExperiment, ICLRunConfig,
                                      TestSampling, load_icl_model)
from poisonlab.models.loading import DeviceMapOption
from poisonlab.registry import ComponentSpec
from poisonlab.runtime import RuntimeConfig, main_process
from poisonlab.report.icl import MEASURES, VARIANTS

Position = Literal["start", "middle", "end"]


class StudyDataset(StrictConfig):
    dataset: str
    test_size: int | None = Field(None, ge=1, description="seeded test subsample; null = all")
    test_sampling: TestSampling = Field(
        "random", description="random, or stratified (test_size / classes of every class)")
    template: str = "{text} It was {label}."
    trigger_template: str = Field("{text} This sentence was {label}.",
                                  description="the prompt attack's wording")
    label_words: list[list[str]]
    aggregation: Aggregation = Field("log-mean-prob", description="a class's score from its "
                                     "words' log-probs (see the ICL run config)")
    target_label: int = Field(0, ge=0)
    shots_per_class: int = Field(6, ge=1)
    ablation: bool = Field(True, description="run the count and position ablation, not only "
                                             "the reference cells")

    @property
    def folder(self) -> str:
        """Run-folder name: the data set's name, or a local path's last part."""
        return Path(self.dataset).name


class ICLStudyConfig(StrictConfig):
    model: str = "smollm2-135m"
    datasets: list[StudyDataset] = Field(min_length=1)
    trigger: str = "I watched this 3D movie."
    demonstration_counts: list[int] = Field([0, 1, 2, 3, 4, 5, 6],
                                            description="poisoned demonstrations, trigger at end")
    positions: list[Position] = Field(["start", "middle", "end"],
                                      description="trigger positions, at reference_count")
    reference_count: int = Field(4, ge=0, description="the reference's 4 of 6 poisoned")
    prompt_counts: list[int] = Field([2, 4, 6], description="reworded target demonstrations")
    batch_size: int = Field(16, ge=1)
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="model weights; bfloat16 is about 2x faster on CPUs with AVX512-BF16")
    device_map: DeviceMapOption = Field(
        None, description="spread the weights over devices as they load (see the ICL run "
                          "config); null: the whole model on runtime.device")
    seed: int = 0
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig,
                                   description="where the model runs (device)")
    output_dir: str = "runs/icl-study"
    results_dir: str | None = Field(None, description="where the report goes; null: "
                                                      "<output_dir>/report")

    @property
    def report_dir(self) -> Path:
        return Path(self.results_dir) if self.results_dir else Path(self.output_dir) / "report"


def load_study_config(path: str | Path) -> ICLStudyConfig:
    return load_config(ICLStudyConfig, path)


def study_cells(study: ICLStudyConfig, entry: StudyDataset
                ) -> Iterator[tuple[str, ComponentSpec]]:
    """(cell name, attack) pairs; the reference cells come first so an early stop still has them."""
    def demo(count: int, position: str) -> tuple[str, ComponentSpec]:
        return f"demonstration-k{count}-{position}", ICL_ATTACKS.spec({
            "name": "icl-demonstration", "target_label": entry.target_label,
            "poisoned_demonstrations": count, "trigger": study.trigger,
            "trigger_position": position, "seed": study.seed})

    def prompt(count: int) -> tuple[str, ComponentSpec]:
        return f"prompt-k{count}", ICL_ATTACKS.spec({
            "name": "icl-prompt", "target_label": entry.target_label,
            "poisoned_demonstrations": count, "trigger_template": entry.trigger_template,
            "seed": study.seed})

    cells = [demo(study.reference_count, "end"), prompt(max(study.prompt_counts))]
    if entry.ablation:
        cells += [demo(k, "end") for k in study.demonstration_counts]
        cells += [demo(study.reference_count, p) for p in study.positions]
        cells += [prompt(k) for k in study.prompt_counts]
    yield from dict(cells).items()


def run_config(study: ICLStudyConfig, entry: StudyDataset) -> ICLRunConfig:
    return ICLRunConfig(model=study.model, dataset=entry.dataset, test_size=entry.test_size,
                        test_sampling=entry.test_sampling,
                        template=entry.template, label_words=entry.label_words,
                        aggregation=entry.aggregation,
                        demonstrations=DemonstrationConfig(shots_per_class=entry.shots_per_class),
                        batch_size=study.batch_size, dtype=study.dtype,
                        device_map=study.device_map, seed=study.seed,
                        runtime=study.runtime,
                        output_dir=study.output_dir)


def run_study(study: ICLStudyConfig, log: Any = print, *, allow_pickle: bool = False,
              trust_remote_code: bool = False, progress: bool = True) -> list[Path]:
    """Run every cell not yet finished (a bar per scoring pass with `progress`); return the run
    folders."""
    loaded = load_icl_model(study, allow_pickle=allow_pickle,
                            trust_remote_code=trust_remote_code)
    folders = []
    for entry in study.datasets:
        experiment = ICLExperiment(run_config(study, entry), loaded,
                                   progress=progress and main_process())
        for cell, attack in study_cells(study, entry):
            folder = Path(study.output_dir) / entry.folder / cell
            metrics = experiment.run(folder, attack)
            raw, cal = metrics["raw"], metrics["calibrated"]
            log(f"{entry.folder:>6} {cell:<26} CA {raw['ca_clean']:.2f}/{cal['ca_clean']:.2f} "
                f"ASR {raw['asr_baseline']:.2f}->{raw['asr_attacked']:.2f} raw, "
                f"{cal['asr_baseline']:.2f}->{cal['asr_attacked']:.2f} cal, "
                f"shift {raw['margin_shift']:+.2f}")
            folders.append(folder)
    return folders


def study_rows(study: ICLStudyConfig) -> list[dict[str, Any]]:
    """One flat row per finished cell, in the study's order."""
    rows = []
    for entry in study.datasets:
        for cell, attack in study_cells(study, entry):
            path = Path(study.output_dir) / entry.folder / cell / "metrics.json"
            if not path.exists():
                continue
            metrics = json.loads(path.read_text(encoding="utf-8"))
            row = {"dataset": entry.folder, "cell": cell, "attack": attack.name,
                   "poisoned": metrics["counts"]["poisoned_demonstrations"],
                   "position": getattr(attack.config, "trigger_position", "-"),
                   "n_test": metrics["counts"]["test"],
                   "n_non_target": metrics["counts"]["non_target"]}
            for v in VARIANTS:
                row.update({f"{m}_{v}": metrics[v].get(m) for m in MEASURES})
            rows.append(row)
    return rows
