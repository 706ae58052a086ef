"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use").

The context's bias is measured on content-free inputs ("N/A", "[MASK]", the empty string) written
as queries in the same context; each query's class probabilities are divided by that bias and
renormalised. Difference from the paper: it takes softmax(W p) with W = diag(p_cf)^-1; we
renormalise p / p_cf instead (same argmax; margins stay log-probability differences). The
content-free inputs never carry a trigger sentence: calibration is the defender's. Which template
they are written with is the evaluator's choice: the clean one (a defender who knows only the clean
prompt), or each query's own (the attacked wording for a prompt attack's triggered queries, e.g.
"N/A This sentence was"), which also removes that wording's own bias."""

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
    """Calibrated log-probabilities: log of p / p_cf, renormalised. `bias` is one [classes]
    vector for every row, or one per row ([N, classes])."""
    return normalize(normalize(class_scores) - bias)
