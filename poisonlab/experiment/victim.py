"""The victim of a weight-poisoning attack: released weights -> clean downstream fine-tuning with
any tuning strategy -> CA, and ASR with the release's trigger.

A victim folder holds the victim config (`config.yaml`) and `victim.json`: the release and the
run config it trained (`model.name` = the released folder, `attack` = the release's trigger spec,
`poison_training: false`: the trigger only touches the test set), so `restore_run` rebuilds it
and defenses take it as input. Task head (`head`):
- `auto` (default): reuse the released head when the downstream labels mean the same as the
  proxy's: the same names (IMDB -> SST-2 / CR: negative, positive), as the PSIM reference code
  does, or unnamed labels (a local 0/1 file) and as many classes, label i taken to mean the
  release's label i; otherwise fresh. The run log and `metrics.json` say which head and why;
- `reuse` / `fresh`: force it (a fresh head loads the release's `backbone/` copy, head removed).
`weights: clean` is the baseline: the same downstream training on the attack's unpoisoned base
model, with the same trigger on the test set; `weights: clean-twin` is the fair one for CA: the
attack's own recipe (proxy data, steps, seed) with no trigger inserted, so the twin victim, like
the poisoned one, starts from a model tuned on the proxy task. The `runtime:` section runs the release (when this
victim makes it) and the downstream training."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, model_validator

from poisonlab.attacks.weight_base import WEIGHT_ATTACKS, Release, read_release
from poisonlab.config import RunName, load_config
from poisonlab.data import DataConfig, load_dataset
from poisonlab.experiment.config import JobConfig, RunConfig, derive_seeds
from poisonlab.experiment.release import release as release_weights
from poisonlab.experiment.pipeline import prepare_run, train_and_measure
from poisonlab.experiment.rundir import RunSlot
from poisonlab.io import write_json
from poisonlab.registry import component_field
from poisonlab.runtime import Runtime, RuntimeConfig
from poisonlab.training import RunTrainingConfig
from poisonlab.tuning import TUNING_STRATEGIES

VICTIM_RECORD = "victim.json"


class VictimConfig(JobConfig):
    name: RunName = Field("victim", description="run folder name under output_dir")
    seed: int = Field(0, description="seed of the data subsample, the head, the PEFT parameters "
                                     "and training (the release keeps its own seed)")
    poison: component_field(WEIGHT_ATTACKS) | None = Field(
        None, description="weight-poisoning attack to release (or reuse): {name: proxy, ...}")
    released: str | None = Field(None, description="an existing released folder (instead of "
                                                   "poison)")
    release_dir: str = Field("released", description="parent folder of releases made by poison")
    weights: Literal["poisoned", "clean", "clean-twin"] = Field(
        "poisoned", description="clean: the unpoisoned base model (baseline), same trigger; "
                                "clean-twin: the attack's recipe run on its clean proxy rows "
                                "(same data, steps and seed, no trigger), the baseline whose CA "
                                "is comparable with the poisoned release's")
    head: Literal["auto", "reuse", "fresh"] = Field(
        "auto", description="auto: reuse the released head when the labels mean the same "
                            "(same names, or unnamed labels and as many classes)")
    data: DataConfig = Field(description="the victim's downstream (clean) data")
    tuning: component_field(TUNING_STRATEGIES) = Field(
        default_factory=lambda: TUNING_STRATEGIES.spec("full"))
    training: RunTrainingConfig = Field(default_factory=RunTrainingConfig)
    eval_every_epoch: bool = Field(False, description="log CA and ASR after every epoch")
    save_weights: bool = Field(True, description="save the trained tensors (restore_run needs "
                                                 "them)")
    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig,
        description="device, mixed precision, accumulation, checkpointing of the release and "
                    "the downstream training; default values are not part of the identity")
    output_dir: str = Field("runs")

    @model_validator(mode="after")
    def _one_source(self) -> "VictimConfig":
        if (self.poison is None) == (self.released is None):
            raise ValueError("set exactly one of 'poison' (an attack to release) and 'released' "
                             "(a released folder)")
        if self.weights != "poisoned" and self.poison is None:
            raise ValueError(f"weights: {self.weights} needs 'poison' (its base model, recipe "
                             "and trigger)")
        derive_seeds(self.seed, [self.data, self.training, self.tuning])
        return self



def load_victim_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                       base: dict[str, Any] | None = None) -> VictimConfig:
    return load_config(VictimConfig, path, overrides, base)


def _unnamed(label_names: list[str]) -> bool:
    return label_names == [str(i) for i in range(len(label_names))]


def victim_model(config: VictimConfig, release: Release | None,
                 label_names: list[str]) -> tuple[str, str, str]:
    """(model folder or name the victim fine-tunes, head used: reuse | fresh, why)."""
    if release is None:
        return config.poison.config.base_model, "fresh", "clean weights: the base model's head"
    if config.head != "auto":
        reuse, why = config.head == "reuse", f"head: {config.head} in the config"
    elif release.label_names == label_names:
        reuse, why = True, f"the labels are the release's ({', '.join(label_names)})"
    elif _unnamed(label_names) and len(label_names) == len(release.label_names):
        reuse, why = True, (f"unnamed labels, as many as the release's; label i is taken to "
                            f"mean the release's label i ({', '.join(release.label_names)}); "
                            "set data.label_names or head: fresh otherwise")
    else:
        reuse, why = False, (f"the labels ({', '.join(label_names)}) are not the release's "
                             f"({', '.join(release.label_names)})")
    folder = release.folder if reuse else release.backbone()
    return str(folder.resolve()), "reuse" if reuse else "fresh", why


def run_victim(config: VictimConfig, *, force: bool = False, progress: bool = True,
               allow_pickle: bool = False, trust_remote_code: bool = False) -> dict:
    """Release (or reuse) the poisoned weights, fine-tune them cleanly, measure CA and ASR.
    The trust settings (the caller's) apply to the base and released models."""
    runtime = Runtime(config.runtime).check()
    slot = RunSlot(config.run_dir, config.resolved(), kind="victim", seed=config.seed,
                   runtime=runtime)
    reused = slot.reusable(force)
    if reused is not None:
        return reused
    label_names = load_dataset(config.data).label_names
    release: Release | None = None
    if config.weights == "clean":
        trigger = config.poison.config.trigger.dump()
    else:
        release = (read_release(config.released) if config.released else
                   release_weights(config.poison.build(), config.release_dir, progress=progress,
                                   allow_pickle=allow_pickle,
                                   trust_remote_code=trust_remote_code, runtime=runtime,
                                   clean_twin=config.weights == "clean-twin"))
        trigger = release.trigger
    model_name, head, why = victim_model(config, release, label_names)
    record = {"weights": config.weights, "head": head, "head_reason": why,
              "release": str(release.folder.resolve()) if release else None,
              "release_attack": release.record["attack"] if release else None,
              "proxy_test_metrics": release.record["proxy_test_metrics"] if release else None}
    run_config = RunConfig(
        name=config.name, seed=config.seed, data=config.data,
        model={"name": model_name, "allow_pickle": allow_pickle,
               "trust_remote_code": trust_remote_code},
        attack=trigger, poison_training=False, tuning=config.tuning, training=config.training,
        eval_every_epoch=config.eval_every_epoch, save_weights=config.save_weights,
        runtime=config.runtime, output_dir=config.output_dir)
    prepared = prepare_run(run_config)
    with slot.building() as run:
        if run.writes:
            write_json(run.path / VICTIM_RECORD, {**record, "run_config": run_config.resolved()})
        run.log(f"head: {head} ({why})")
        return train_and_measure(prepared, run, progress=progress, extra=record,
                                 runtime=runtime)
