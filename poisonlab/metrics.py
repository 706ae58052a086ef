"""Every metric poisonlab reports, defined once. Result files record DEFINITIONS_VERSION.

- Clean accuracy (CA): accuracy on the clean test split.
- Attack success rate (ASR): among test examples whose true label is NOT the target label, with
  the trigger applied, the fraction predicted as the target label. (Not 1 - accuracy: that is only
  equal for two classes.)
- Detection: FRR = share of clean inputs flagged; FAR = share of poisoned inputs not flagged;
  AUROC of the detector's scores (poisoned = positive class).
- After a detection defense (the PSIM paper's convention): a flagged input is rejected; a rejected
  clean input counts as an error in CA, a rejected poisoned input is not a success in ASR.
- In-context attacks: ASR lift = attacked ASR - baseline ASR (the same triggered inputs with clean
  demonstrations). Flip rate: of the non-target inputs predicted correctly without the trigger,
  the share predicted as the target with it. Margin shift: with margin = target score - true
  class's score, the mean (over non-target inputs) of the trigger's margin change in the poisoned
  context minus its margin change in the clean context.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFINITIONS_VERSION = "1"


def _arrays(*seqs: Sequence) -> list[np.ndarray]:
    arrays = [np.asarray(s) for s in seqs]
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"length mismatch: {[len(a) for a in arrays]}")
    return arrays


def clean_accuracy(predictions: Sequence[int], labels: Sequence[int],
                   rejected: Sequence[bool] | None = None) -> float:
    """Share of clean examples predicted correctly (a rejected example is an error)."""
    pred, gold = _arrays(predictions, labels)
    if len(gold) == 0:
        return float("nan")
    correct = pred == gold
    if rejected is not None:
        correct &= ~_arrays(rejected)[0].astype(bool)
    return float(correct.mean())


def attack_success_rate(predictions: Sequence[int], true_labels: Sequence[int], target_label: int,
                        rejected: Sequence[bool] | None = None) -> float:
    """Share of triggered non-target examples predicted as the target (a rejected one is a miss).

    `predictions` are on the triggered inputs; `true_labels` are their labels before poisoning.
    Examples whose true label is the target are left out of the denominator."""
    pred, gold = _arrays(predictions, true_labels)
    keep = gold != target_label
    if not keep.any():
        return float("nan")
    success = pred == target_label
    if rejected is not None:
        success &= ~_arrays(rejected)[0].astype(bool)
    return float(success[keep].mean())


def per_class_accuracy(predictions: Sequence[int], labels: Sequence[int],
                       num_labels: int) -> list[float]:
    pred, gold = _arrays(predictions, labels)
    return [float((pred[gold == c] == c).mean()) if (gold == c).any() else float("nan")
            for c in range(num_labels)]


def false_rejection_rate(clean_flags: Sequence[bool]) -> float:
    """FRR: share of clean inputs the detector flags."""
    flags = np.asarray(clean_flags, dtype=bool)
    return float(flags.mean()) if len(flags) else float("nan")


def false_acceptance_rate(poisoned_flags: Sequence[bool]) -> float:
    """FAR: share of poisoned inputs the detector lets through."""
    flags = np.asarray(poisoned_flags, dtype=bool)
    return float((~flags).mean()) if len(flags) else float("nan")


def auroc(clean_scores: Sequence[float], poisoned_scores: Sequence[float]) -> float:
    """Probability that a random poisoned input scores above a random clean one (ties count 1/2)."""
    clean = np.asarray(clean_scores, dtype=float)
    poisoned = np.asarray(poisoned_scores, dtype=float)
    if len(clean) == 0 or len(poisoned) == 0:
        return float("nan")
    scores = np.concatenate([clean, poisoned])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    rank_sum = ranks[len(clean):].sum()
    n_p, n_c = len(poisoned), len(clean)
    return float((rank_sum - n_p * (n_p + 1) / 2) / (n_p * n_c))


def asr_lift(attacked_asr: float, baseline_asr: float) -> float:
    """How much the attack adds over the same trigger with no backdoor (a biased model can reach a
    high ASR with no attack at all)."""
    return float(attacked_asr - baseline_asr)


def flip_rate(clean_predictions: Sequence[int], triggered_predictions: Sequence[int],
              true_labels: Sequence[int], target_label: int) -> float:
    """Of the non-target inputs predicted correctly without the trigger, the share the trigger
    sends to the target: a paired measure, so a label bias alone cannot raise it."""
    clean, triggered, gold = _arrays(clean_predictions, triggered_predictions, true_labels)
    keep = (gold != target_label) & (clean == gold)
    if not keep.any():
        return float("nan")
    return float((triggered[keep] == target_label).mean())


def target_margin(class_scores: np.ndarray, true_labels: Sequence[int],
                  target_label: int) -> np.ndarray:
    """Per example: score of the target class minus score of the true class ([N, classes] in)."""
    scores = np.asarray(class_scores, dtype=float)
    gold = np.asarray(true_labels)
    return scores[:, target_label] - scores[np.arange(len(gold)), gold]


def margin_shift(attacked_clean: np.ndarray, attacked_triggered: np.ndarray,
                 baseline_clean: np.ndarray, baseline_triggered: np.ndarray,
                 true_labels: Sequence[int], target_label: int) -> float:
    """Mean over non-target inputs of (the trigger's margin change in the poisoned context) minus
    (its margin change in the clean context); each argument is [N, classes] class log-scores of the
    same N inputs. Positive means the poisoned context makes the trigger push toward the target
    more than the trigger does on its own; a context bias shifts clean and triggered alike and
    cancels."""
    gold = np.asarray(true_labels)
    keep = gold != target_label
    if not keep.any():
        return float("nan")

    def margin(scores: np.ndarray) -> np.ndarray:
        return target_margin(scores, gold, target_label)[keep]

    shift = (margin(attacked_triggered) - margin(attacked_clean)) - (
        margin(baseline_triggered) - margin(baseline_clean))
    return float(shift.mean())
