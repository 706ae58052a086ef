"""Training-set defenses (SANITIZERS: BKI, CUBE) and RAP's promise to leave the victim alone.

The conformance battery (test_conformance.py) covers RAP as a detector; the checks here are its
equivalent for the training-set registry, parametrised over SANITIZERS: the API rules of every
registry, and the functional promise, on tiny-bert and synthetic data with a BadNet backdoor:
the defense removes mostly poisoned examples, and the run trained on what it keeps has clearly
lower ASR than the same run without it, CA kept."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from poisonlab.defenses.base import DETECTORS, SuspectModel
from poisonlab.defenses.sanitize_base import SANITIZERS
from poisonlab.errors import ConfigError
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.rundir import config_hash
from poisonlab.models.architecture import input_embeddings

ENTRIES = [pytest.param(entry, id=entry.name) for entry in SANITIZERS.entries()]
TRAINING = {"epochs": 6, "learning_rate": 3e-3, "max_length": 32}
BACKDOOR = {"name": "badnet", "target_label": 1, "poison_rate": 0.2}
PRECISE = 0.8       # at least this share of what a defense removes was poisoned
LOWER_ASR = 0.3     # the sanitized run's ASR is at least this much lower
# What a tiny test model cannot show, measured (as the battery's MODEL_LIMITS): strict xfail.
MODEL_LIMITS = {
    "cube": "tiny-bert trained on the poisoned set maps every text to one of two points (the "
            "clean-positive and poisoned centroids have cosine 0.99999 at every layer and "
            "pooling tried), so HDBSCAN finds one cluster per label and CUBE removes 0 of the 80 "
            "poisoned examples",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_api_rules(entry):
    """The battery's API checks: lower-case name, the constructor only stores the config, an
    unknown key names itself, the config round-trips through YAML, the summary cites a paper."""
    assert re.fullmatch(r"[a-z][a-z0-9-]*", entry.name)
    for values in (None, entry.component.conformance):
        component = SANITIZERS.build(entry.name, values)
        assert vars(component) == {"config": component.config}
        text = yaml.safe_dump(component.config.model_dump(mode="json"))
        assert entry.config_class.model_validate(yaml.safe_load(text)) == component.config
    with pytest.raises(ConfigError, match="no_such_option"):
        SANITIZERS.build(entry.name, {"no_such_option": 1})
    assert re.search(r"\(.*\d{4}\)", entry.summary), entry.summary


def run(synthetic_dir, tmp_path, name: str, sanitize: dict | None = None) -> dict:
    config = load_run_config(base={
        "name": name, "data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
        "attack": BACKDOOR, "sanitize": sanitize, "training": TRAINING,
        "eval_every_epoch": False, "save_weights": False, "output_dir": str(tmp_path)})
    return run_experiment(config, progress=False)


@pytest.fixture(scope="module")
def undefended(tmp_path_factory) -> dict:
    from synthetic import synthetic_splits, write_jsonl_split
    root = tmp_path_factory.mktemp("undefended")
    return run(write_jsonl_split(root / "data", synthetic_splits()), root, "undefended")


@pytest.mark.parametrize("entry", ENTRIES)
def test_sanitized_run_removes_poison_and_lowers_asr(entry, undefended, synthetic_dir, tmp_path,
                                                     request):
    if entry.name in MODEL_LIMITS:
        request.applymarker(pytest.mark.xfail(reason=MODEL_LIMITS[entry.name], strict=True))
    metrics = run(synthetic_dir, tmp_path, entry.name,
                  {"name": entry.name, **entry.component.conformance})
    removal = metrics["sanitize"]
    assert undefended["attack_success_rate"] >= 0.8, "the undefended run should be backdoored"
    assert removal["poisoned"] == metrics["poison"]["poisoned"] > 0
    assert removal["removal_precision"] >= PRECISE, removal
    assert metrics["sizes"]["train"] == removal["kept"] == 400 - removal["removed"]
    assert metrics["clean_accuracy"] >= 0.8, metrics
    assert metrics["attack_success_rate"] <= undefended["attack_success_rate"] - LOWER_ASR, (
        f"ASR {undefended['attack_success_rate']:.2f} -> {metrics['attack_success_rate']:.2f}, "
        f"removal recall {removal['removal_recall']:.2f}")


def test_no_sanitize_keeps_the_run_identity(synthetic_dir):
    """`sanitize: null` is not part of a run's identity: finished runs stay current."""
    resolved = load_run_config(base={"data": {"name": str(synthetic_dir)}}).resolved()
    assert resolved["sanitize"] is None
    assert config_hash(resolved) == config_hash(
        {k: v for k, v in resolved.items() if k != "sanitize"})


def test_rap_leaves_the_victims_embeddings_and_predictions_alone():
    from synthetic import synthetic_splits
    splits = synthetic_splits()
    suspect = SuspectModel.from_released("tiny-bert", max_length=32)
    texts = [e.text for e in splits.test[:20]]
    table, before = input_embeddings(suspect.victim).weight.detach().clone(), \
        suspect.predict_logits(texts)
    rap = DETECTORS.build("rap", {"epochs": 1}).fit(suspect, splits.train[:40], splits.dev[:20])
    rap.score(texts)
    assert torch.equal(input_embeddings(suspect.victim).weight, table)
    assert (suspect.predict_logits(texts) == before).all()
