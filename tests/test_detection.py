"""Detection defenses (PSIM, ONION, STRIP) on a tiny backdoored model: the detection contract,
calibration, ONION's batched/cached scores, PSIM's random labels, the CLI and study cells."""

import json

import numpy as np
import pytest
import torch

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.defenses.base import DETECTORS, Detector, DetectorConfig, SuspectModel
from poisonlab.defenses.detect_perplexity import LeaveOneOutPerplexity, naive_suspicion
from poisonlab.experiment.detection import evaluate_detector
from poisonlab.defenses.psim import random_labels
from poisonlab.models import load_causal_lm, load_classifier
from poisonlab.training import TrainingConfig, train_classifier
from synthetic import synthetic_examples, synthetic_splits


# Tiny-model settings per detector. PSIM: on a 2-layer BERT the pooled first virtual token of
# P-tuning barely depends on the input, so the module is LoRA here (any strategy is allowed) with
# a learning rate that moves a tiny model in one epoch. ONION gets an LM trained on the synthetic
# language (a random LM has no notion of an outlier word).
DETECTOR_PARAMS = {
    "psim": {"threshold": None, "target_frr": 0.1, "tuning": "lora",
             "training": {"epochs": 1, "learning_rate": 3e-3, "max_length": 32}},
    "onion": {"threshold": None, "target_frr": 0.1, "max_length": 32},
    "strip": {"target_frr": 0.1, "copies": 10},
    "rap": {"target_frr": 0.1},
}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny BERT fully fine-tuned on BadNet-poisoned synthetic data, saved as a release."""
    splits = synthetic_splits()
    attack = DATA_ATTACKS.build("badnet", {"poison_rate": 0.1, "target_label": 1})
    poisoned_train, _ = attack.poison(splits.train)
    torch.manual_seed(0)
    loaded = load_classifier("tiny-bert", 2)
    train_classifier(loaded.model, loaded.tokenizer, poisoned_train,
                     TrainingConfig(epochs=4, learning_rate=3e-3, max_length=32), progress=False)
    folder = tmp_path_factory.mktemp("release") / "poisoned-tiny-bert"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder, splits, attack


@pytest.fixture(scope="module")
def synthetic_lm(tmp_path_factory):
    """tiny-llama trained briefly as a language model on clean synthetic sentences."""
    lm = load_causal_lm("tiny-llama", seed=0)
    texts = [e.text for e in synthetic_examples(256, seed=5)]
    ids = [[lm.tokenizer.bos_token_id or lm.tokenizer.eos_token_id] + s for s in
           lm.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    optimizer = torch.optim.AdamW(lm.model.parameters(), lr=1e-2)
    lm.model.train()
    for epoch in range(2):
        for start in range(0, len(ids), 32):
            from poisonlab.training.trainer import collate
            batch = collate(ids[start:start + 32], lm.tokenizer.pad_token_id)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = lm.model(**batch, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    lm.model.eval()
    folder = tmp_path_factory.mktemp("lm") / "synthetic-lm"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def build(name, synthetic_lm, **overrides):
    params = {**DETECTOR_PARAMS[name], **overrides}
    if name == "onion":
        params["language_model"] = str(synthetic_lm)
    return DETECTORS.build(name, params)


def test_every_detector_is_configured_here():
    assert set(DETECTORS.names()) == set(DETECTOR_PARAMS)


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detector_flags_triggered_inputs_more_than_clean(name, released, synthetic_lm):
    folder, splits, attack = released
    suspect = SuspectModel.from_released(str(folder), max_length=32)
    dev, test = splits.dev[:60], splits.test[:60]
    detector = build(name, synthetic_lm).fit(suspect, splits.train, dev)
    poisoned_test, _ = attack.poisoned_test(test)
    metrics, rows = evaluate_detector(detector, test, poisoned_test, 1)
    assert metrics["attack_success_rate_no_defense"] > 0.9, "the fixture should be backdoored"
    assert metrics["auroc"] > 0.75
    assert (1 - metrics["false_acceptance_rate"]) > metrics["false_rejection_rate"] + 0.3
    # rejection can only remove correct clean answers and successful attacks
    assert metrics["clean_accuracy"] <= metrics["clean_accuracy_no_defense"]
    assert metrics["attack_success_rate"] <= metrics["attack_success_rate_no_defense"]
    assert len(rows) == len(test) + len(poisoned_test)
    clean_rows = [r for r in rows if r["split"] == "clean"]
    assert metrics["clean_accuracy"] == pytest.approx(np.mean(
        [r["prediction"] == r["label"] and not r["flagged"] for r in clean_rows]))


class FixedScores(Detector):
    """Scores each text by a lookup table: calibration tested without any model."""

    config_class = DetectorConfig

    def __init__(self, config, table):
        super().__init__(config)
        self.table = table

    def score(self, texts):
        return np.asarray([self.table[t] for t in texts])


def test_calibration_flags_at_most_the_target_share_even_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=1000), 1)  # many ties
    table = {f"t{i}": s for i, s in enumerate(scores)}
    detector = FixedScores(DetectorConfig(), table)
    for target in (0.01, 0.05, 0.2):
        detector.calibrate(list(table), target)
        frr = detector.flag(list(table)).mean()
        assert frr <= target and frr > target - 0.05
        assert detector.calibration_["clean_frr"] == pytest.approx(frr)
        assert detector.calibrated(list(table), target) == detector.threshold_


class RuleVictim(SuspectModel):
    """Predicts the target label 1 exactly when a trigger word ("cf" or "mn") is present, and
    records every text it classifies."""

    def __init__(self):
        super().__init__(None, None, 2, lambda: None)
        self.seen: list[str] = []

    def predict_logits(self, texts):
        self.seen.extend(texts)
        return np.asarray([[0.0, 1.0] if {"cf", "mn"} & set(t.split()) else [1.0, 0.0]
                           for t in texts])


class PurifyingTable(FixedScores):
    """Table scores; purification removes "cf" only (not "mn"); records what it scores and
    purifies."""

    def __init__(self, config, table):
        super().__init__(config, table)
        self.scored, self.purified = [], []

    def score(self, texts):
        self.scored.extend(texts)
        return super().score(texts)

    def purify(self, texts):
        self.purified.extend(texts)
        return [" ".join(w for w in t.split() if w != "cf") for t in texts]


def test_evaluation_goes_through_the_detector_once_per_input():
    from poisonlab.data import Example
    clean = {"a fine film": 0.1, "the cf film": 0.6, "a dull film": 0.2, "good fun": 0.7}
    poisoned = {"cf a fine film": 0.9, "mn good fun": 0.4, "cf the plot": 0.8}
    dev = {"d1": 0.05, "d2": 0.15, "d3": 0.3, "d4": 0.65}
    detector = PurifyingTable(DetectorConfig(threshold=0.5), {**clean, **poisoned, **dev})
    victim = RuleVictim()
    detector.fit(victim, [])
    calibrated = detector.calibrated(list(dev), 0.5)  # the 3rd highest of 4 dev scores
    assert calibrated == 0.15 and detector.threshold_ == 0.5  # the detector is unchanged
    assert detector.calibration_ == {"threshold": 0.5, "fixed": True}
    detector.scored.clear()
    metrics, rows = evaluate_detector(detector, [Example(t, 0) for t in clean],
                                      [Example(t, 0) for t in poisoned], 1,
                                      {"calibrated": calibrated})
    texts = list(clean) + list(poisoned)
    assert sorted(detector.scored) == sorted(texts) and sorted(detector.purified) == sorted(texts)
    # each input once as is, each purified input once
    assert sorted(victim.seen) == sorted(texts + detector.purify(texts))
    # no defense: "the cf film" is misclassified, every triggered input succeeds
    assert metrics["clean_accuracy_no_defense"] == 0.75
    assert metrics["attack_success_rate_no_defense"] == 1.0
    # at 0.5: "the cf film" and "good fun" rejected; purification saves all but "mn good fun"
    assert metrics["threshold"] == 0.5 and metrics["clean_accuracy"] == 0.5
    assert metrics["false_rejection_rate"] == 0.5
    assert metrics["attack_success_rate"] == pytest.approx(1 / 3)
    assert metrics["false_acceptance_rate"] == pytest.approx(1 / 3)
    assert metrics["clean_accuracy_loss"] == 0.25
    # at the calibrated 0.15: every input but "a fine film" rejected
    assert metrics["threshold_calibrated"] == 0.15
    assert metrics["clean_accuracy_calibrated"] == 0.25
    assert metrics["false_rejection_rate_calibrated"] == 0.75
    assert metrics["attack_success_rate_calibrated"] == 0.0
    assert metrics["false_acceptance_rate_calibrated"] == 0.0
    assert [r["flagged"] for r in rows] == [False, True, False, True, True, False, True]
    assert [r["prediction"] for r in rows] == [0, 0, 0, 0, 0, 1, 0]
    assert [r["prediction_no_defense"] for r in rows] == [0, 1, 0, 0, 1, 1, 1]


def test_evaluation_flags_by_the_detectors_rule():
    """Evaluation holds no threshold logic of its own: a detector's `flagged` decides."""
    from poisonlab.data import Example

    class LowIsSuspicious(FixedScores):
        def flagged(self, scores, threshold=None):
            return ~super().flagged(scores, threshold)

    table = {"a": 0.1, "b": 0.9, "c": 0.2}
    detector = LowIsSuspicious(DetectorConfig(threshold=0.5), table).fit(RuleVictim(), [])
    metrics, rows = evaluate_detector(detector, [Example("a", 0), Example("b", 0)],
                                      [Example("c", 0)], 1)
    assert [r["flagged"] for r in rows] == [True, False, True]
    assert metrics["false_rejection_rate"] == 0.5 and metrics["false_acceptance_rate"] == 0.0


def test_calibrated_threshold_meets_target_frr_on_held_out_clean_data(released):
    folder, splits, _ = released
    suspect = SuspectModel.from_released(str(folder), max_length=32)
    dev, held_out = synthetic_examples(300, seed=11), synthetic_examples(300, seed=12)
    detector = DETECTORS.build("strip", {"target_frr": 0.1, "copies": 8}).fit(
        suspect, splits.train, dev)
    assert detector.calibration_["clean_frr"] <= 0.1
    held_out_frr = detector.flag([e.text for e in held_out]).mean()
    assert abs(held_out_frr - 0.1) < 0.06


def test_fixed_threshold_is_used_as_given(released):
    folder, splits, _ = released
    suspect = SuspectModel.from_released(str(folder), max_length=32)
    detector = DETECTORS.build("strip", {"threshold": -0.3, "copies": 4}).fit(
        suspect, splits.train, splits.dev)
    assert detector.threshold_ == -0.3 and detector.calibration_["fixed"]


TEXTS = ["the movie was cf really good and fun", "awful", "", "a dull , boring mn film .",
         "I watched this 3D movie and it was great", "it's a wonderful life , isn't it ?",
         "bb tq", "  spaced   out   words  ", "ünïcödé wörds and émojis 🙂 here"]


def test_onion_batched_cached_scores_equal_the_per_variant_computation():
    lm = load_causal_lm("tiny-llama", seed=0)
    texts = TEXTS + [e.text for e in synthetic_examples(12, seed=3)]
    batched = LeaveOneOutPerplexity(lm, batch_tokens=96).suspicion(texts)  # many small batches
    naive = naive_suspicion(LeaveOneOutPerplexity(lm), texts)
    for text, a, b in zip(texts, batched, naive):
        assert a.shape == (len(text.split()),)
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)


def test_onion_purification_removes_the_trigger(synthetic_lm):
    detector = DETECTORS.build("onion", {"language_model": str(synthetic_lm), "threshold": 0.0,
                                         "max_length": 32})
    detector.fit(None, [])
    triggered = DATA_ATTACKS.build("badnet", {"triggers": ["cf"]}).trigger(
        [e.text for e in synthetic_examples(30, seed=4)], __import__("random").Random(0))
    purified = detector.purify(triggered)
    kept = np.mean(["cf" in p.split() for p in purified])
    assert kept < 0.2


def test_psim_labels_are_uniformly_random_and_seeded():
    examples = synthetic_examples(2000, seed=1)
    first, again = random_labels(examples, 2, seed=0), random_labels(examples, 2, seed=0)
    other = random_labels(examples, 2, seed=1)
    labels = np.array([e.label for e in first])
    assert [e.label for e in first] == [e.label for e in again]
    assert [e.label for e in first] != [e.label for e in other]
    assert [e.text for e in first] == [e.text for e in examples]
    assert abs(labels.mean() - 0.5) < 0.05
    agreement = np.mean(labels == np.array([e.label for e in examples]))
    assert abs(agreement - 0.5) < 0.05  # independent of the true labels
    three = np.bincount([e.label for e in random_labels(examples, 3, seed=0)], minlength=3)
    assert three.min() > 600


def test_defend_cli_on_a_run_folder_and_a_detection_study(synthetic_dir, tmp_path, capsys):
    from poisonlab.cli import main
    from poisonlab.experiment import load_run_config, run_experiment
    from poisonlab.studies import run_study
    from poisonlab.studies.runner import StudyConfig
    run = load_run_config(base={
        "name": "victim", "data": {"name": str(synthetic_dir)}, "model": {"name": "tiny-bert"},
        "attack": {"name": "badnet", "poison_rate": 0.1, "target_label": 1},
        "training": {"epochs": 3, "learning_rate": 3e-3, "max_length": 32},
        "eval_every_epoch": False, "output_dir": str(tmp_path / "runs")})
    run_experiment(run, progress=False)
    code = main(["defend", str(run.run_dir), "--defense", "strip", "--set", "defense.copies=4",
                 "--output-dir", str(tmp_path / "defenses"), "--quiet"])
    assert code == 0
    metrics = json.loads((tmp_path / "defenses" / "defense" / "metrics.json").read_text())
    assert metrics["definitions_version"] and metrics["attack"] == "badnet"
    assert "clean_accuracy_calibrated" not in metrics  # strip calibrates by default
    code = main(["defend", str(run.run_dir), "--defense", "strip", "--set", "defense.copies=4",
                 "--set", "defense.threshold=-0.2", "--name", "fixed",
                 "--output-dir", str(tmp_path / "defenses"), "--quiet"])
    fixed = json.loads((tmp_path / "defenses" / "fixed" / "metrics.json").read_text())
    assert fixed["threshold"] == -0.2 and fixed["threshold_calibrated"] != -0.2
    printed = capsys.readouterr().out
    assert "(calibrated)" in printed and "calibration_scores.jsonl" in printed, printed
    audit = [json.loads(line) for line in
             (tmp_path / "defenses" / "fixed" / "calibration_scores.jsonl").open()]
    # the threshold is one of the audited dev scores (the (k+1)-th highest)
    assert fixed["threshold_calibrated"] in {row["score"] for row in audit}
    assert 0 <= fixed["false_rejection_rate_calibrated"] <= 0.2  # 5% on dev; test is held out
    assert (tmp_path / "defenses" / "defense" / "histogram.png").stat().st_size > 1000
    assert main(["defend", str(run.run_dir), "--defense", "nope", "--quiet",
                 "--output-dir", str(tmp_path / "d2")]) == 2
    # ONION only purifies by default: no threshold, printed as such beside the calibrated one
    capsys.readouterr()
    assert main(["defend", str(run.run_dir), "--defense", "onion", "--name", "onion",
                 "--set", "defense.language_model=tiny-llama", "--set", "data.test_size=8",
                 "--set", "data.dev_size=8", "--output-dir", str(tmp_path / "defenses"),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| onion | none (purify only) |" in printed and " (calibrated) |" in printed, printed

    study = StudyConfig(name="detect", pipeline="detection", output_dir=str(tmp_path / "studies"),
                        base={"victim": str(run.run_dir)},
                        axes={"victim": {"all": {}}, "defense": {"strip": {"defense": {"name": "strip", "copies": 4}},
                                          "strip-fixed": {"defense": {"name": "strip",
                                                                      "copies": 4,
                                                                      "threshold": -0.1}}}},
                        columns=["clean_accuracy_no_defense", "clean_accuracy",
                                 "attack_success_rate", "auroc"])
    rows = run_study(study, progress=False)
    assert [r["defense"] for r in rows] == ["strip", "strip-fixed"]
    assert "strip-fixed" in (tmp_path / "studies" / "detect" / "table.md").read_text()
    from poisonlab.report.detection import detection_table
    from poisonlab.studies.runner import validate_cells
    table = detection_table(study.axes, [(c.labels, c.folder) for c in validate_cells(study)])
    assert [(r["victim"], r["defense"]) for r in table] == [
        ("all", "none"), ("all", "strip"), ("all", "strip-fixed"), ("all", "strip-fixed")]
    assert "fixed" in table[2]["threshold"] and "dev FRR" in table[3]["threshold"]


def test_a_detection_runs_through_its_runtime_section(synthetic_dir, tmp_path):
    """`runtime:` of a detection config reaches the run protocol and the suspect: bf16 autocast
    is recorded in environment.json, and PSIM's module trains and scores through it."""
    from poisonlab.experiment.detection import DetectionConfig, run_detection
    config = DetectionConfig(
        name="psim-bf16", victim="tiny-bert", output_dir=str(tmp_path),
        data={"name": str(synthetic_dir), "train_size": 48, "test_size": 16},
        attack={"name": "badnet", "poison_rate": 0.1, "target_label": 1},
        defense={"name": "psim", "threshold": 0.7, "tuning": "lora",
                 "training": {"epochs": 1, "max_length": 16}},
        runtime={"mixed_precision": "bf16"})
    metrics = run_detection(config)
    environment = json.loads((tmp_path / "psim-bf16" / "environment.json").read_text())
    assert environment["runtime"]["mixed_precision"] == "bf16"
    assert 0 <= metrics["false_rejection_rate"] <= 1
