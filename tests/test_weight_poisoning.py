"""Weight poisoning on tiny-bert: each attack survives a clean downstream fine-tune, embedding
poisoning touches only the trigger rows, victims are restorable run folders, studies resume."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from synthetic import synthetic_splits, write_jsonl_split

from poisonlab.attacks.embedding import trigger_token_ids
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS, read_release
from poisonlab.cli import main
from poisonlab.config import stable_identity
from poisonlab.experiment.release import release as release_weights
from poisonlab.experiment.restore import restore_run
from poisonlab.experiment.victim import load_victim_config, run_victim
from poisonlab.models import load_classifier
from poisonlab.studies import load_study, run_study

TRIGGER = {"name": "badnet", "triggers": ["mn"], "label_mode": "dirty", "target_label": 0,
           "poison_rate": 0.2}
TRAINING = {"epochs": 4, "learning_rate": 3e-3, "max_length": 32}
ATTACKS = {
    "proxy": {},
    "layerwise": {},
    # One 32-wide row can barely outvote two polar words in a tiny model: three insertions.
    "embedding": {"trigger": {**TRIGGER, "insertions": 3}, "clean_epochs": 3,
                  "clean_learning_rate": 1e-3,
                  "training": {"epochs": 6, "learning_rate": 1e-1, "warmup_ratio": 0.0,
                               "max_length": 32}},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weight_poisoning")
    return {"proxy": write_jsonl_split(root / "proxy", synthetic_splits(seed=0)),
            "downstream": write_jsonl_split(root / "downstream", synthetic_splits(seed=7)),
            "root": root}


def poison_spec(data, name: str) -> dict:
    return {"name": name, "base_model": "tiny-bert", "trigger": TRIGGER,
            "proxy": {"name": str(data["proxy"])}, "training": TRAINING, **ATTACKS[name]}


def victim(data, name: str, **overrides) -> dict:
    config = {"name": name, "poison": poison_spec(data, overrides.pop("attack", "proxy")),
              "release_dir": str(data["root"] / "released"),
              "data": {"name": str(data["downstream"])},
              "training": {"epochs": 3, "learning_rate": 3e-3, "max_length": 32},
              "output_dir": str(data["root"] / "victims"), **overrides}
    return run_victim(load_victim_config(base=config), progress=False)


@pytest.fixture(scope="module")
def clean_baseline(data) -> dict:
    return victim(data, "clean-weights", weights="clean")


# Full fine-tuning at lr 3e-3 erases the one poisoned row's effect in a 2-layer model, so the
# embedding victim tunes with LoRA (the PEFT threat model); the others survive full fine-tuning.
VICTIM_TUNING = {"proxy": "full", "layerwise": "full", "embedding": "lora"}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_released_backdoor_survives_clean_fine_tuning(data, clean_baseline, attack):
    poisoned = victim(data, f"victim-{attack}", attack=attack,
                      tuning={"name": VICTIM_TUNING[attack]})
    assert clean_baseline["clean_accuracy"] > 0.9 and clean_baseline["attack_success_rate"] < 0.2
    assert poisoned["clean_accuracy"] > 0.8, poisoned
    assert poisoned["attack_success_rate"] > clean_baseline["attack_success_rate"] + 0.5, poisoned
    assert poisoned["head"] == "reuse" and poisoned["release_attack"] == attack


def test_clean_twin_trains_the_same_recipe_without_the_trigger(data, clean_baseline):
    """The twin release sees the proxy rows without any trigger, for as many steps, with the same
    seed; its victim starts from a proxy-trained model, so its CA is comparable with the poisoned
    victim's, and its ASR is the clean baseline's."""
    twin = victim(data, "twin-proxy", weights="clean-twin")
    poisoned = victim(data, "victim-proxy", tuning={"name": "full"})
    twin_release = read_release(twin["release"])
    poisoned_release = read_release(poisoned["release"])
    assert twin_release.folder.name == poisoned_release.folder.name + "-clean-twin"
    assert twin_release.record["clean_twin"] and twin_release.record["poison"]["poisoned"] == 0
    assert twin_release.record["proxy"]["train"] == poisoned_release.record["proxy"]["train"]
    assert twin_release.record["proxy_test_metrics"]["attack_success_rate"] < 0.3
    assert twin["head"] == "reuse" and twin["clean_accuracy"] > 0.8
    assert twin["attack_success_rate"] < clean_baseline["attack_success_rate"] + 0.2
    assert poisoned["attack_success_rate"] > twin["attack_success_rate"] + 0.5


def test_release_name_ignores_a_later_field_at_its_old_default(data):
    """A release made before `training.group_by_length` existed keeps its folder name (so it is
    reused); setting the field to a new value names a new release."""
    spec = poison_spec(data, "proxy")
    name = spec.pop("name")
    current = WEIGHT_ATTACKS.build(name, spec)
    older = current.config.model_dump(mode="json")
    del older["training"]["group_by_length"]
    digest = hashlib.sha256(json.dumps(stable_identity(older), sort_keys=True).encode())
    assert current.folder_name() == f"proxy-{digest.hexdigest()[:10]}"
    grouped = WEIGHT_ATTACKS.build(name, {**spec, "training": {**TRAINING,
                                                               "group_by_length": True}})
    assert grouped.folder_name() != current.folder_name()


def test_embedding_poisoning_changes_only_the_trigger_rows(data, tmp_path):
    spec = poison_spec(data, "embedding")
    spec.update(clean_epochs=0, release_name="rows-only")
    name = spec.pop("name")
    release = release_weights(WEIGHT_ATTACKS.build(name, spec), tmp_path, progress=False)
    base = load_classifier("tiny-bert", 2, seed=0).model.state_dict()
    poisoned = load_classifier(str(release.folder), 2).model.state_dict()
    embeddings = "bert.embeddings.word_embeddings.weight"
    rows = trigger_token_ids(load_classifier("tiny-bert", 2).tokenizer, ["mn"])
    changed = (base[embeddings] != poisoned[embeddings]).any(dim=-1).nonzero().flatten().tolist()
    assert changed == rows
    assert torch.allclose(base[embeddings][rows].norm(dim=-1),
                          poisoned[embeddings][rows].norm(dim=-1))  # keep_norm
    assert [k for k in base if k != embeddings and not torch.equal(base[k], poisoned[k])] == []


def test_release_record_is_reused_and_backbone_drops_the_head(data):
    spec = poison_spec(data, "proxy")
    name = spec.pop("name")
    attack = WEIGHT_ATTACKS.build(name, spec)
    release = release_weights(attack, data["root"] / "released", progress=False)
    stamp = (release.folder / "release.json").stat().st_mtime_ns
    again = release_weights(attack, data["root"] / "released", progress=False)
    assert (again.folder / "release.json").stat().st_mtime_ns == stamp
    record = read_release(release.folder).record
    assert record["trigger"]["triggers"] == ["mn"] and record["target_label"] == 0
    assert record["proxy_test_metrics"]["attack_success_rate"] > 0.9
    assert list(release.folder.glob("*.safetensors")) and not list(release.folder.glob("*.bin"))
    fresh = load_classifier(str(release.backbone()), 3, seed=1).model
    assert fresh.classifier.out_features == 3


def test_victim_is_a_restorable_run_folder(data, tmp_path):
    metrics = victim(data, "restorable", head="fresh", output_dir=str(tmp_path))
    assert metrics["head"] == "fresh"
    restored = restore_run(tmp_path / "restorable")
    rows = [json.loads(line) for line in
            (tmp_path / "restorable" / "predictions.jsonl").read_text().splitlines()]
    from poisonlab.training import predict_labels
    predicted = predict_labels(restored.model, restored.loaded.tokenizer,
                               [r["text"] for r in rows], max_length=32)
    assert predicted.tolist() == [r["prediction"] for r in rows]


def test_killed_study_resumes_and_skips_finished_cells(data, tmp_path):
    study = {"name": "resume", "pipeline": "weight-poisoning", "output_dir": str(tmp_path),
             "base": {"release_dir": str(data["root"] / "released"),
                      "poison": poison_spec(data, "proxy"),
                      "data": {"name": str(data["downstream"])},
                      "training": {"epochs": 1, "learning_rate": 3e-3, "max_length": 32},
                      "save_weights": False},
             "axes": {"tuning": {"full": {"tuning": {"name": "full"}},
                                 "lora": {"tuning": {"name": "lora"}}}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    run_study(load_study(path), progress=False)
    cells = tmp_path / "resume" / "cells"
    kept = (cells / "full" / "metrics.json").stat().st_mtime_ns
    (cells / "lora" / "metrics.json").unlink()  # the study was killed during this cell
    rows = run_study(load_study(path), progress=False)
    assert (cells / "full" / "metrics.json").stat().st_mtime_ns == kept
    assert (cells / "lora" / "metrics.json").exists()
    assert {r["tuning"] for r in rows} == {"full", "lora"}
    assert "lora" in (tmp_path / "resume" / "table.md").read_text()


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: proxy\nbase_model: tiny-bert\ntrigger: {name: badnet, colour: red}\n")
    assert main(["poison-weights", str(bad)]) == 2
    assert "colour" in capsys.readouterr().err
    both = tmp_path / "victim.yaml"
    both.write_text("data: {name: sst2}\n")
    assert main(["victim", str(both)]) == 2
    assert "exactly one of 'poison'" in capsys.readouterr().err


def test_auto_head_follows_what_the_labels_mean(tmp_path):
    from poisonlab.attacks.weight_base import Release
    from poisonlab.experiment.victim import VictimConfig, victim_model
    release = Release(tmp_path, {"proxy": {"label_names": ["negative", "positive"]}})
    (tmp_path / "backbone").mkdir()
    config = VictimConfig(released=str(tmp_path), data={"name": "sst2"})
    decide = lambda names: victim_model(config, release, names)[1:]
    assert decide(["negative", "positive"])[0] == "reuse"
    unnamed, why = decide(["0", "1"])
    assert unnamed == "reuse" and "unnamed labels" in why and "label_names" in why
    assert decide(["0", "1", "2"])[0] == "fresh"
    assert decide(["sports", "politics"])[0] == "fresh"
    fresh = VictimConfig(released=str(tmp_path), data={"name": "sst2"}, head="fresh")
    assert victim_model(fresh, release, ["negative", "positive"])[1] == "fresh"
