"""Progress bars on the long jobs: shown on stderr when the caller asks, silent otherwise; a
training bar stays on screen and ends with a summary."""

import re

import pytest

from poisonlab.data import Example
from poisonlab.defenses.base import DETECTORS, SuspectModel
from poisonlab.experiment.measure import EvaluationSets, evaluate
from poisonlab.models import load_causal_lm, load_classifier
from poisonlab.training import TrainingConfig, predict_logits, train_classifier
from poisonlab.training.generation import GenerationConfig, generate
from synthetic import synthetic_examples


def last_line(err: str) -> str:
    """What a terminal shows last: tqdm redraws with carriage returns."""
    return re.split(r"[\r\n]+", err.strip())[-1]


@pytest.fixture(scope="module")
def tiny_bert():
    return load_classifier("tiny-bert", 2, seed=0)


def test_prediction_shows_a_bar_over_the_texts_only_when_asked(tiny_bert, capsys):
    texts = [e.text for e in synthetic_examples(40)]
    quiet = predict_logits(tiny_bert.model, tiny_bert.tokenizer, texts, batch_size=8)
    assert capsys.readouterr().err == ""
    shown = predict_logits(tiny_bert.model, tiny_bert.tokenizer, texts, batch_size=8,
                           progress=True, description="score")
    err = capsys.readouterr().err
    assert "score" in err and "/40 [" in err and "text/s" in err  # a fast bar may end at 0/40
    assert (shown == quiet).all()


def test_evaluation_names_each_test_set(tiny_bert, capsys):
    test = synthetic_examples(16)
    sets = EvaluationSets(test, [Example("cf " + e.text, e.label) for e in test], 1)
    evaluate(tiny_bert.model, tiny_bert.tokenizer, sets, 2, progress=True)
    err = capsys.readouterr().err
    assert "evaluate clean" in err and "evaluate triggered" in err


def test_a_training_bar_stays_and_ends_with_epochs_loss_and_speed(capsys):
    loaded = load_classifier("tiny-bert", 2, seed=0)
    history = train_classifier(loaded.model, loaded.tokenizer, synthetic_examples(32),
                               TrainingConfig(epochs=2, batch_size=8, max_length=16),
                               description="fit")
    line = last_line(capsys.readouterr().err)
    assert line.startswith("fit: 100%") and "8/8" in line
    assert f"2 epochs, final loss {history[-1]['loss']:.4f}" in line
    assert re.search(r"[\d.]+ examples/s", line)
    train_classifier(loaded.model, loaded.tokenizer, synthetic_examples(8),
                     TrainingConfig(epochs=1, batch_size=8, max_length=16), progress=False)
    assert capsys.readouterr().err == ""


def test_generation_shows_a_bar_over_the_prompts_only_when_asked(capsys):
    tiny = load_causal_lm("tiny-llama", seed=0)
    prompts = [tiny.tokenizer("Hello " * k)["input_ids"] for k in range(1, 6)]
    config = GenerationConfig(max_new_tokens=3, batch_size=2)
    eos = [tiny.tokenizer.eos_token_id]
    quiet = generate(tiny.model, tiny.tokenizer, prompts, config, stop_ids=eos)
    assert capsys.readouterr().err == ""
    shown = generate(tiny.model, tiny.tokenizer, prompts, config, stop_ids=eos, progress=True)
    err = capsys.readouterr().err
    assert "generate" in err and "/5 [" in err and "prompt/s" in err
    assert shown == quiet


def test_strip_scoring_shows_a_bar_when_fitted_with_progress(tiny_bert, capsys):
    suspect = SuspectModel(tiny_bert.model, tiny_bert.tokenizer, 2, lambda: tiny_bert,
                           max_length=16)
    train = synthetic_examples(16)
    DETECTORS.build("strip", {"copies": 3, "threshold": 0.0}).fit(suspect, train)
    detector = DETECTORS.build("strip", {"copies": 3}).fit(suspect, train, progress=True)
    err = capsys.readouterr().err
    assert "strip" in err and "/48 [" in err  # 16 calibration texts x 3 copies
    detector.score([e.text for e in train[:4]])
    assert "/12 [" in capsys.readouterr().err


def test_a_suspect_with_progress_shows_a_bar_over_what_its_victim_scores(tiny_bert, capsys):
    """RAP, PSIM's comparison and a detector's evaluation score through the suspect."""
    texts = [e.text for e in synthetic_examples(20)]
    quiet = SuspectModel(tiny_bert.model, tiny_bert.tokenizer, 2, lambda: tiny_bert,
                         max_length=16)
    logits = quiet.predict_logits(texts)
    assert "victim predictions" not in capsys.readouterr().err
    shown = SuspectModel(tiny_bert.model, tiny_bert.tokenizer, 2, lambda: tiny_bert,
                         max_length=16, progress=True)
    assert (shown.predict_logits(texts) == logits).all()
    assert "victim predictions" in capsys.readouterr().err
