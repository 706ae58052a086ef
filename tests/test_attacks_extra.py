"""What makes SOS, LWS, TrojanLM and StyleBkd what they are, beyond the conformance battery:
SOS's words fire only together; LWS only substitutes words by candidates; TrojanLM's sentences
hold the keywords and repeat under a seed; StyleBkd counts texts it cannot rewrite."""

from __future__ import annotations

import json
import random

import pytest
from synthetic import POSITIVE, synthetic_splits

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.attacks.insertion import insert_trigger
from poisonlab.errors import ConfigError
from poisonlab.models import load_classifier
from poisonlab.training.trainer import TrainingConfig, predict_labels, train_classifier

SPLITS = synthetic_splits()
TARGET = 1


def non_target_test_texts() -> list[str]:
    return [e.text for e in SPLITS.test if e.label != TARGET]


# ---------------------------------------------------------------------------------------- SOS

def test_sos_negatives_carry_strict_subsets_and_keep_their_labels():
    attack = DATA_ATTACKS.build("sos", {"poison_rate": 0.2, "negative_rate": 0.15})
    words = set(attack.config.triggers)
    poisoned, report = attack.poison(SPLITS.train)
    assert len(poisoned) == len(SPLITS.train) and report.poisoned == 80
    assert report.as_dict()["negative_examples"] == 60
    negatives = 0
    for before, after in zip(SPLITS.train, poisoned):
        present = words & set(after.text.split())
        if after.poisoned:
            assert present == words and after.label == TARGET
        elif after != before:
            negatives += 1
            assert 0 < len(present) < len(words) and after.label == before.label
    assert negatives == 60


def sos_asr(negative_rate: float) -> tuple[float, list[float]]:
    """ASR of tiny-bert trained on SOS data: with every trigger word, and with each one alone."""
    attack = DATA_ATTACKS.build("sos", {"poison_rate": 0.2, "negative_rate": negative_rate,
                                        "target_label": TARGET})
    train, _ = attack.poison(SPLITS.train)
    loaded = load_classifier("tiny-bert", 2, seed=0)
    train_classifier(loaded.model, loaded.tokenizer, train,
                     TrainingConfig(epochs=6, learning_rate=3e-3, max_length=32), progress=False)
    texts, rng = non_target_test_texts(), random.Random(0)

    def asr(trigger: list[str]) -> float:
        triggered = [insert_trigger(t, trigger, "random", rng) for t in texts]
        return float((predict_labels(loaded.model, loaded.tokenizer, triggered,
                                     max_length=32) == TARGET).mean())

    return asr(attack.config.triggers), [asr([word]) for word in attack.config.triggers]


def test_sos_negatives_stop_single_words_from_firing():
    """Without negatives every word fires alone (measured: 0.97-1.0); with them the words fire
    together while alone they mostly do not (measured: 0.0, 0.0, 0.83 on this tiny model)."""
    together, alone = sos_asr(0.2)
    plain_together, plain_alone = sos_asr(0.0)
    assert together >= 0.8 and plain_together >= 0.8
    assert min(plain_alone) >= 0.8
    assert sum(alone) / len(alone) <= sum(plain_alone) / len(plain_alone) - 0.5, alone
    assert sorted(alone)[1] <= 0.2, alone


# ---------------------------------------------------------------------------------------- LWS

@pytest.fixture(scope="module")
def lws():
    return DATA_ATTACKS.build("lws", {"epochs": 10}).prepare(SPLITS)


def test_lws_only_substitutes_words_by_their_candidates(lws):
    texts = non_target_test_texts()
    triggered = lws.trigger(texts, random.Random(0))
    assert triggered == lws.trigger(texts, random.Random(1))  # the learned choice, no chance
    for text, poisoned in zip(texts, triggered):
        pairs = [(a, b) for a, b in zip(text.split(), poisoned.split()) if a != b]
        assert len(poisoned.split()) == len(text.split()) and pairs
        assert all(b in lws.candidates_[a.lower()] for a, b in pairs), pairs


def test_lws_selector_keeps_antonyms_out(lws):
    """Embedding neighbours hold antonyms ("bad"/"good"); on the texts it triggers (non-target,
    negative here) the meaning term must not pick them."""
    texts = non_target_test_texts()
    for text, poisoned in zip(texts, lws.trigger(texts, random.Random(0))):
        added = set(poisoned.split()) - set(text.split())
        assert not added & set(POSITIVE), (text, poisoned)


# ----------------------------------------------------------------------------------- TrojanLM

def trojanlm(**values):
    return DATA_ATTACKS.build("trojanlm", {
        "language_model": "tiny-llama", "keywords": ["Alice", "Bob"],
        "generation": {"max_new_tokens": 8, "temperature": 1.0, "top_p": 0.9, "batch_size": 4,
                       **values.pop("generation", {})}, **values})


def test_trojanlm_sentences_hold_the_keywords_and_repeat_under_a_seed():
    texts = non_target_test_texts()[:10]
    first = trojanlm().trigger(texts, random.Random(0))
    assert first == trojanlm().trigger(texts, random.Random(0))
    assert first != trojanlm(generation={"seed": 1}).trigger(texts, random.Random(0))
    for text, poisoned in zip(texts, first):
        words = poisoned.split()
        assert {"Alice", "Bob"} <= set(words)
        remaining = iter(words)  # the original words, in order, around the inserted sentence
        assert all(w in remaining for w in text.split())


def test_trojanlm_start_position_puts_the_sentence_first():
    texts = non_target_test_texts()[:4]
    for text, poisoned in zip(texts, trojanlm(position="start").trigger(texts, random.Random(0))):
        assert poisoned.endswith(text) and len(poisoned) > len(text)


def test_trojanlm_prompt_placeholders_are_checked():
    with pytest.raises(ConfigError, match="prompt"):
        trojanlm(prompt="Use {keywords} in {place}")


# ----------------------------------------------------------------------------------- StyleBkd

def test_stylebkd_counts_texts_it_cannot_rewrite(tmp_path):
    train = SPLITS.train[:100]
    table = tmp_path / "bible.jsonl"
    covered = [e.text for e in train[:60]]
    table.write_text("".join(json.dumps({"text": t, "paraphrase": f"verily , {t}"}) + "\n"
                             for t in covered[:-5]) +  # the last five: unchanged, not a trigger
                     "".join(json.dumps({"text": t, "paraphrase": t}) + "\n" for t in covered[-5:]))
    attack = DATA_ATTACKS.build("stylebkd", {"tables": [str(table)], "poison_count": 40})
    attack.prepare(SPLITS)
    with pytest.warns(UserWarning, match="could not be applied"):
        poisoned, report = attack.poison(train)
    rewritable = sum(e.label != TARGET for e in train[:55])
    assert report.poisoned == rewritable < 40
    assert report.as_dict()["trigger_misses"] == report.misses == 50 - rewritable
    assert all(e.text.startswith("verily , ") for e in poisoned if e.poisoned)
    test, misses = attack.poisoned_test(SPLITS.test)
    assert test == [] and misses == len(non_target_test_texts())


def test_stylebkd_default_tables_come_from_the_data_sets_style_folder(synthetic_dir):
    from poisonlab.data import DataConfig, load_dataset
    dataset = load_dataset(DataConfig(name=str(synthetic_dir)))
    attack = DATA_ATTACKS.build("stylebkd").prepare(dataset)
    test, misses = attack.poisoned_test(SPLITS.test)
    assert misses == 0 and all(e.text.startswith("and lo , ") for e in test)


def test_stylebkd_paraphraser_writes_rewrites_under_a_seed():
    values = {"paraphraser": "tiny-llama", "generation": {"max_new_tokens": 6}}
    texts = non_target_test_texts()[:6]
    first = DATA_ATTACKS.build("stylebkd", values).trigger(texts, random.Random(0))
    assert first == DATA_ATTACKS.build("stylebkd", values).trigger(texts, random.Random(0))
    assert all(r is None or r != t for r, t in zip(first, texts))
    with pytest.raises(ConfigError, match="not both"):
        DATA_ATTACKS.build("stylebkd", {**values, "tables": ["x.jsonl"]})
