"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use").

The context's bias is measured on content-free inputs ("N/A", "[MASK]", the empty string) written
with the clean template in the same context; each query's class probabilities are divided by that
bias and renormalised. Difference from the paper: it takes softmax(W p) with W = diag(p_cf)^-1;
we renormalise p / p_cf instead (same argmax; margins stay log-probability differences). The
content-free inputs never carry the trigger: calibration is the defender's, who knows only the
clean prompt, so it can remove a poisoned context's bias but not a trigger's effect."""

from __future__ import annotations

import numpy as np

DEFAULT_CONTENT_FREE = ("N/A", "[MASK]", "")


def normalize(class_scores: np.ndarray) -> np.ndarray:
    """Log-probabilities over the label set (log-softmax of the class scores)."""
    shifted = class_scores - class_scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def content_free_bias(content_free_scores: np.ndarray) -> np.ndarray:
    """log p_cf: the class distribution averaged (in probability) over the content-free inputs."""
    return np.log(np.exp(normalize(content_free_scores)).mean(axis=0))


def calibrate(class_scores: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Calibrated log-probabilities: log of p / p_cf, renormalised."""
    return normalize(normalize(class_scores) - bias[None, :])
