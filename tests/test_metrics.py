import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from poisonlab.metrics import (attack_success_rate, auroc, clean_accuracy, false_acceptance_rate,
                               false_rejection_rate, per_class_accuracy)


def test_asr_counts_only_non_target_examples():
    # three classes, target 2: the example whose true label is 2 is left out
    predictions = [2, 2, 0, 2]
    true_labels = [0, 1, 1, 2]
    assert attack_success_rate(predictions, true_labels, target_label=2) == pytest.approx(2 / 3)


def test_asr_is_not_one_minus_accuracy_for_three_classes():
    predictions, true_labels = [1, 1], [0, 0]  # wrong, but not the target
    assert attack_success_rate(predictions, true_labels, target_label=2) == 0.0


def test_rejected_inputs_follow_the_psim_convention():
    assert clean_accuracy([1, 0], [1, 0], rejected=[True, False]) == 0.5
    assert attack_success_rate([1, 1], [0, 0], 1, rejected=[True, False]) == 0.5


def test_per_class_and_detection_rates():
    assert per_class_accuracy([0, 1, 1], [0, 0, 1], 2) == [0.5, 1.0]
    assert false_rejection_rate([True, False, False, False]) == 0.25
    assert false_acceptance_rate([True, False]) == 0.5


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 5, 50).astype(float)
    poisoned = rng.integers(2, 7, 40).astype(float)
    expected = roc_auc_score([0] * 50 + [1] * 40, np.concatenate([clean, poisoned]))
    assert auroc(clean, poisoned) == pytest.approx(expected)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        clean_accuracy([1, 0], [1])
