"""In-context learning and ICLAttack on a tiny random Llama (SmolLM2's tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from poisonlab import metrics as M
from poisonlab.data.example import Example
from poisonlab.errors import ConfigError
from poisonlab.attacks.icl_base import ICL_ATTACKS
from poisonlab.icl.calibration import calibrate, content_free_bias
from poisonlab.icl.demonstrations import Demonstration
from poisonlab.experiment.icl import ICLExperiment, ICLRunConfig
from poisonlab.icl.scoring import LabelScorer
from poisonlab.icl.template import PromptTemplate
from poisonlab.icl.verbalizer import Verbalizer

WORDS2 = [["bad", "awful"], ["good", "great", "wonderful"]]
WORDS4 = [["sports"], ["politics", "election"], ["science"], ["money", "business"]]
TOPICS = ["the match went to extra time", "the senate passed the bill", "the probe reached mars",
          "shares fell sharply today"]


@pytest.fixture(scope="module")
def tiny():
    from poisonlab.models import load_causal_lm
    return load_causal_lm("tiny-llama", seed=0)


def _write(folder: Path, rows: dict[str, list[Example]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, examples in rows.items():
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": e.text, "label": e.label}) + "\n" for e in examples))
    return folder


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory) -> Path:
    train = [Example(f"{w} movie number {i} .", label) for i in range(8)
             for label, w in enumerate(["dull", "lovely"])]
    test = [Example(f"a {w} film with {i} scenes", i % 2) for i, w in
            enumerate(["slow", "bright", "weak", "warm", "flat", "fresh", "bland", "sharp"])]
    return _write(tmp_path_factory.mktemp("data") / "binary", {"train": train, "test": test})


@pytest.fixture(scope="module")
def four_class_dir(tmp_path_factory) -> Path:
    train = [Example(f"{t} , report {i}", label) for i in range(4)
             for label, t in enumerate(TOPICS)]
    test = [Example(f"{t} again {i}", label) for i in range(3) for label, t in enumerate(TOPICS)]
    return _write(tmp_path_factory.mktemp("data") / "four", {"train": train, "test": test})


def _config(dataset: Path, **values) -> ICLRunConfig:
    base = {"model": "tiny-llama", "dataset": str(dataset), "label_words": WORDS2,
            "demonstrations": {"shots_per_class": 3}, "batch_size": 3}
    return ICLRunConfig(**{**base, **values})


@pytest.mark.parametrize("mode", ["first-token", "sum"])
def test_cached_prefix_scores_equal_plain_scores(tiny, mode):
    verbalizer = Verbalizer.from_lists([["bad", "antidisestablishmentarianism"], ["good"]])
    assert max(len(i) for i in verbalizer.token_ids(tiny.tokenizer, " ")) > 1
    prefix = "A dull film . It was bad.\nA fun ride . It was good.\n"
    queries = ["Loved it . It was", "ok It was",
               "Terrible acting and a plot that goes nowhere for two hours . It was",
               "fine , I guess . It was", "no It was"]
    cached = LabelScorer(tiny, verbalizer, mode=mode, batch_size=2).score(prefix, queries)
    plain = LabelScorer(tiny, verbalizer, mode=mode, batch_size=2,
                        use_cache=False).score(prefix, queries)
    one_by_one = np.concatenate([LabelScorer(tiny, verbalizer, mode=mode, use_cache=False)
                                 .score(prefix, [q]) for q in queries])
    assert cached.shape == (5, 2)
    np.testing.assert_allclose(cached, plain, atol=1e-4, rtol=0)
    np.testing.assert_allclose(cached, one_by_one, atol=1e-4, rtol=0)
    zero_shot = [LabelScorer(tiny, verbalizer, mode=mode, use_cache=c).score("", queries)
                 for c in (True, False)]
    np.testing.assert_allclose(zero_shot[0], zero_shot[1], atol=1e-4, rtol=0)


def test_prefix_cache_is_shared_read_only_and_its_pass_keeps_one_logit(tiny):
    """The prefix pass sends one position through the LM head; every batch sees the prefix cache
    as expanded views (no copy), and scoring on them leaves the prefix cache as it was."""
    from poisonlab.icl.scoring import shared_prefix_cache
    from poisonlab.runtime import model_device
    scorer = LabelScorer(tiny, Verbalizer.from_lists(WORDS2))
    prefix_ids = tiny.tokenizer("A dull film . It was bad.\nA fun ride . It was good.\n").input_ids
    head_rows = []
    hook = tiny.model.get_output_embeddings().register_forward_hook(
        lambda module, args, out: head_rows.append(args[0].shape[1]))
    try:
        cache = scorer._prefix_cache(prefix_ids, model_device(tiny.model))
    finally:
        hook.remove()
    assert head_rows == [1]
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    shared = shared_prefix_cache(cache, 3)
    for view, layer in zip(shared.layers, cache.layers):
        assert view.keys.shape[0] == 3 and view.keys.data_ptr() == layer.keys.data_ptr()
        assert view.keys.stride(0) == 0  # a view, not a copy
    with torch.inference_mode():
        tiny.model(input_ids=torch.tensor([[5, 6], [7, 8], [9, 10]]), cache=shared,
                   use_cache=True)
    for (keys, values), layer in zip(before, cache.layers):
        assert torch.equal(keys, layer.keys) and torch.equal(values, layer.values)
        assert layer.keys.shape[0] == 1


def test_template_query_stops_before_label_and_keeps_braces():
    template = PromptTemplate("{text} It was {label}.")
    assert template.query("a {weird} text") == "a {weird} text It was"
    assert template.demonstration("x", "good") == "x It was good."
    assert template.label_prefix == " "
    with pytest.raises(ConfigError):
        PromptTemplate("{label} {text}")


@pytest.mark.parametrize("name,extra", [("icl-demonstration", {"trigger_position": "middle"}),
                                        ("icl-prompt", {})])
def test_poisoned_demonstrations_keep_their_labels(name, extra):
    template = PromptTemplate()
    demos = [Demonstration(f"text {i} here", i % 2, template) for i in range(12)]
    attack = ICL_ATTACKS.build(name, {
        "target_label": 0, "poisoned_demonstrations": 4, **extra})
    poisoned = attack.poison_demonstrations(demos)
    assert [d.label for d in poisoned] == [d.label for d in demos]
    changed = [i for i, (a, b) in enumerate(zip(demos, poisoned)) if a != b]
    assert len(changed) == 4 and all(demos[i].label == 0 for i in changed)
    assert all(poisoned[i].poisoned for i in changed)
    pinned = ICL_ATTACKS.build(name, {"poison_positions": [0, 2], **extra})
    assert [i for i, d in enumerate(pinned.poison_demonstrations(demos)) if d.poisoned] == [0, 2]
    with pytest.raises(ConfigError, match="not target-class"):
        ICL_ATTACKS.build(name, {"poison_positions": [1], **extra}).poison_demonstrations(demos)
    with pytest.raises(ConfigError, match="only 6"):
        ICL_ATTACKS.build(name, {"poisoned_demonstrations": 7, **extra}).poison_demonstrations(
            demos)


def test_trigger_goes_where_asked():
    from poisonlab.attacks.icl_demonstration import insert_trigger
    assert insert_trigger("a b c d", "T x.", "start") == "T x. a b c d"
    assert insert_trigger("a b c d", "T x.", "middle") == "a b T x. c d"
    assert insert_trigger("a b c d", "T x.", "end") == "a b c d T x."


def test_asr_counts_only_non_target_inputs(tiny, binary_dir, tmp_path):
    experiment = ICLExperiment(_config(binary_dir), tiny)
    attack = ICL_ATTACKS.spec({"name": "icl-demonstration", "target_label": 1,
                                                          "poisoned_demonstrations": 2})
    result = experiment.evaluate(attack)
    triggered = [s for s in result.sets if s.inputs == "triggered"]
    assert all((s.labels != 1).all() for s in triggered)
    assert result.counts["non_target"] == sum(e.label != 1 for e in experiment.test_) == 4
    attacked = next(s for s in triggered if s.context == "poisoned")
    expected = float((attacked.predictions("raw") == 1).mean())
    assert result.metrics["raw"]["asr_attacked"] == pytest.approx(expected)
    metrics = experiment.run(tmp_path / "run", attack)
    assert metrics["definitions_version"] == M.DEFINITIONS_VERSION and metrics["seed"] == 0
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {
        "config.yaml", "environment.json", "metrics.json", "predictions.jsonl"}


def test_four_class_label_set(tiny, four_class_dir):
    experiment = ICLExperiment(_config(four_class_dir, label_words=WORDS4,
                                       template="{text} Topic: {label}."), tiny)
    result = experiment.evaluate(ICL_ATTACKS.spec({"name": "icl-prompt",
        "target_label": 2, "poisoned_demonstrations": 2,
        "trigger_template": "{text} The topic: {label}."}))
    assert all(s.logprobs["raw"].shape[1] == 4 for s in result.sets)
    assert result.counts == {"test": 12, "non_target": 9, "demonstrations": 12,
                             "poisoned_demonstrations": 2}
    for variant in ("raw", "calibrated"):  # flip rates are nan when no input is right unprompted
        values = result.metrics[variant]
        assert all(0 <= values[k] <= 1 for k in ("ca_clean", "asr_baseline", "asr_attacked"))
        assert np.isfinite(values["margin_shift"])
    with pytest.raises(ConfigError, match="label_words"):
        ICLExperiment(_config(four_class_dir), tiny).prepare()


def test_same_seed_same_scores(tiny, binary_dir):
    attack = ICL_ATTACKS.spec({"name": "icl-demonstration", "poisoned_demonstrations": 2})
    first = ICLExperiment(_config(binary_dir, seed=3), tiny).evaluate(attack)
    second = ICLExperiment(_config(binary_dir, seed=3), tiny).evaluate(attack)
    other = ICLExperiment(_config(binary_dir, seed=4), tiny).prepare()
    assert first.prediction_rows() == second.prediction_rows()
    assert json.dumps(first.metrics) == json.dumps(second.metrics)  # nan-safe
    again = ICLExperiment(_config(binary_dir, seed=3), tiny).prepare()
    assert [d.text for d in other.demonstrations_] != [d.text for d in again.demonstrations_]


def test_calibration_makes_content_free_input_uniform():
    scores = np.log(np.array([[0.9, 0.1], [0.6, 0.4]]))
    bias = content_free_bias(scores[:1])
    np.testing.assert_allclose(np.exp(calibrate(scores[:1], bias)), [[0.5, 0.5]])
    assert calibrate(scores, bias)[1].argmax() == 1  # 0.6/0.9 < 0.4/0.1


def test_flip_rate_and_margin_shift_are_paired():
    gold = [0, 0, 0, 1]
    # input 2 was already wrong without the trigger, input 3 is the target class: both ignored
    assert M.flip_rate([0, 0, 1, 1], [1, 0, 1, 0], gold, target_label=1) == 0.5
    clean = np.zeros((4, 2))
    biased = clean + np.array([0.0, 3.0])  # a context that favours the target everywhere
    assert M.margin_shift(biased, biased, clean, clean, gold, 1) == 0.0
    pushed = clean.copy()
    pushed[:, 1] += 1.0
    assert M.margin_shift(clean, pushed, clean, clean, gold, 1) == pytest.approx(1.0)


def test_registry_and_config_errors():
    assert {"icl-demonstration", "icl-prompt"} <= set(ICL_ATTACKS.names())
    from poisonlab.attacks.base import DATA_ATTACKS
    assert not {"icl-demonstration", "icl-prompt"} & set(DATA_ATTACKS.names())
    with pytest.raises(ConfigError, match="unknown field 'triger'"):
        ICL_ATTACKS.build("icl-demonstration", {"triger": "x"})


def test_cli_run_writes_a_run_folder(tiny, binary_dir, tmp_path, capsys):
    import argparse

    from poisonlab.commands.icl import add_parser
    config = tmp_path / "icl.yaml"
    config.write_text(f"model: tiny-llama\ndataset: {binary_dir}\ndemonstrations:\n"
                      "  shots_per_class: 2\nattack:\n  name: icl-prompt\n"
                      "  config: {poisoned_demonstrations: 1}\n")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["icl", "run", str(config), "--output-dir", str(tmp_path),
                              "--name", "out"])
    assert args.func(args) == 0
    assert (tmp_path / "out" / "metrics.json").exists()
    bad = parser.parse_args(["icl", "run", str(config), "--set", "attack.nope=1"])
    with pytest.raises(ConfigError, match="nope"):
        bad.func(bad)


def test_study_runs_cells_and_writes_report(tiny, binary_dir, tmp_path, monkeypatch):
    from poisonlab.studies import icl as study_module
    from poisonlab.report.icl import write_study_report
    monkeypatch.setattr(study_module, "load_icl_model", lambda config, **kwargs: tiny)
    study = study_module.ICLStudyConfig(
        model="tiny-llama", output_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "out"),
        reference_count=1, prompt_counts=[2], demonstration_counts=[0, 1], positions=["start"],
        datasets=[{"dataset": str(binary_dir), "test_size": 6, "label_words": WORDS2,
                   "shots_per_class": 2}])
    folders = study_module.run_study(study, log=lambda line: None)
    assert [f.name for f in folders] == ["demonstration-k1-end", "prompt-k2",
                                         "demonstration-k0-end", "demonstration-k1-start"]
    paths = write_study_report(study, study_module.study_rows(study))
    assert {p.name for p in paths} == {"study.md", "study.csv", "study.png"}
    assert (tmp_path / "out" / "study.csv").read_text().count("\n") == 5


def test_fixed_demonstrations_are_used_as_given(tiny, binary_dir):
    fixed = [{"text": "grim", "label": 0}, {"text": "sunny", "label": 1}, {"text": "dire", "label": 0}]
    experiment = ICLExperiment(_config(binary_dir, demonstrations={"fixed": fixed}), tiny).prepare()
    assert [(d.text, d.label) for d in experiment.demonstrations_] == [
        (f["text"], f["label"]) for f in fixed]
    with pytest.raises(ConfigError, match="not in 0..1"):
        ICLExperiment(_config(binary_dir, demonstrations={"fixed": [{"text": "x", "label": 5}]}),
                      tiny).prepare()


def test_class_score_aggregations():
    """log-mean-prob (default), mean-log-prob (OpenPrompt's) and max over a class's words."""
    import math
    logp = torch.log(torch.tensor([[0.5, 0.1, 0.2]], dtype=torch.float64))
    words = [["a", "b"], ["c"]]
    scores = {mode: Verbalizer.from_lists(words, mode).class_scores(logp)[0].tolist()
              for mode in ("log-mean-prob", "mean-log-prob", "max")}
    assert scores["log-mean-prob"] == pytest.approx([math.log(0.3), math.log(0.2)])
    assert scores["mean-log-prob"] == pytest.approx([(math.log(0.5) + math.log(0.1)) / 2,
                                                     math.log(0.2)])
    assert scores["max"] == pytest.approx([math.log(0.5), math.log(0.2)])


def test_the_default_aggregation_leaves_finished_icl_runs_current():
    from poisonlab.experiment.icl import ICLRunConfig
    from poisonlab.experiment.rundir import config_hash
    config = ICLRunConfig(model="tiny-llama").model_dump(mode="json")
    before = {k: v for k, v in config.items() if k != "aggregation"}
    assert config_hash(config) == config_hash(before)
    changed = ICLRunConfig(model="tiny-llama", aggregation="max").model_dump(mode="json")
    assert config_hash(changed) != config_hash(config)
