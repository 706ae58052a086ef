"""The detection contract: a detector scores inputs (higher = more suspicious) and flags those
above a threshold; flagged inputs are rejected, the rest go to the victim (purified first by
detectors that purify, such as ONION).

A detector's constructor stores its typed config; `fit(suspect, clean_train, clean_dev, cache=)`
learns what it needs from what a defender holds and sets the threshold: the config's `threshold`
when given, otherwise `calibrate` on clean data (the dev set, else the training set) to the
config's `target_frr`. Models a fit may share with other detectors (PSIM's module, ONION's
language model) go through the caller's `ModelCache`; without one nothing is shared.
Calibration and the flagging rule (score > threshold) live here only: evaluation code asks the
detector (`flagged`, `calibrated`) instead of comparing scores itself. Repair defenses (which
return a cleaned model) have their own contract in repair_base.py."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data import Example
from poisonlab.models import LoadedModel, load_classifier
from poisonlab.models.cache import ModelCache
from poisonlab.registry import Registry
from poisonlab.runtime import Runtime
from poisonlab.training import predict_logits


class DetectorConfig(StrictConfig):
    """Options shared by every detector."""

    threshold: float | None = Field(
        None, description="flag inputs whose score exceeds this; null: calibrate on clean data")
    target_frr: float = Field(0.05, gt=0, lt=1, description="when calibrating: the largest "
                                                            "share of clean inputs flagged")
    seed: int = Field(0, description="seeds everything random in the detector")


@dataclass
class SuspectModel:
    """What a defender holds: the deployed victim and the (possibly poisoned) weights it was
    tuned from, which defenses such as PSIM build on."""

    victim: torch.nn.Module
    tokenizer: Any
    num_labels: int
    load_weights: Callable[[], LoadedModel]  # a fresh copy of the suspect weights
    weights_id: str = ""  # names the suspect weights (what defenses may cache by)
    max_length: int = 128
    batch_size: int = 64
    # where the victim and what detectors train for it run (precision, processes); None: the
    # victim's device, one process, fp32
    runtime: Runtime | None = None
    progress: bool = False  # a bar over each batch of texts the victim scores

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        return predict_logits(self.victim, self.tokenizer, list(texts),
                              batch_size=self.batch_size, max_length=self.max_length,
                              runtime=self.runtime, progress=self.progress,
                              description="victim predictions")

    @classmethod
    def from_released(cls, name: str, num_labels: int = 2, *, allow_pickle: bool = False,
                      trust_remote_code: bool = False, **kwargs: Any) -> "SuspectModel":
        """A released classifier used as is: it is both the victim and the suspect weights."""
        trust = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
        loaded = load_classifier(name, num_labels, **trust)
        return cls(loaded.model, loaded.tokenizer, num_labels,
                   lambda: load_classifier(name, num_labels, **trust), name, **kwargs)


class Detector(ABC):
    """Base of every detector. Conformance battery (tests/test_conformance.py):
    `conformance` holds config values for a tiny, fast run; `applies_to` the model kinds
    ("encoder", "causal") it applies to; `known_limits` what a functional check cannot show
    for this component on a test model, {(check, model): measured reason} (the check runs as a
    strict expected failure, so a fix shows up)."""

    name: ClassVar[str]
    config_class: ClassVar[type[DetectorConfig]]
    conformance: ClassVar[dict] = {}
    applies_to: ClassVar[tuple[str, ...]] = ("encoder", "causal")
    known_limits: ClassVar[dict[tuple[str, str], str]] = {}

    def __init__(self, config: DetectorConfig):
        self.config = config

    def fit(self, suspect: SuspectModel, clean_train: Sequence[Example],
            clean_dev: Sequence[Example] | None = None, *,
            cache: ModelCache | None = None, progress: bool = False) -> "Detector":
        """Learn from the defender's data, then set the threshold (fixed or calibrated).
        Models in `cache` are reused and new ones stored there; without it nothing is shared.
        `progress`: bars on what takes long (training a module, scoring many variants)."""
        self.suspect_ = suspect
        self.progress_ = progress
        self._fit(suspect, list(clean_train), cache=cache)
        if self.config.threshold is not None:
            self.threshold_ = float(self.config.threshold)
            self.calibration_: dict[str, Any] = {"threshold": self.threshold_, "fixed": True}
        else:
            held_out = clean_dev if clean_dev else clean_train
            self.calibrate([e.text for e in held_out], self.config.target_frr)
        return self

    def _fit(self, suspect: SuspectModel, clean_train: list[Example], *,
             cache: ModelCache | None = None) -> None:
        """Detector-specific learning (default: nothing to learn)."""

    @abstractmethod
    def score(self, texts: Sequence[str]) -> np.ndarray:
        """One suspicion score per text; higher means more likely poisoned."""

    def flagged(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Which inputs with these scores are flagged at `threshold` (default: the detector's
        own): the one flagging rule, so scores computed once serve any threshold."""
        return np.asarray(scores, dtype=float) > (
            self.threshold_ if threshold is None else threshold)

    def flag(self, texts: Sequence[str]) -> np.ndarray:
        return self.flagged(self.score(texts))

    def purify(self, texts: Sequence[str]) -> list[str]:
        """The texts the victim sees (unchanged unless the detector purifies)."""
        return list(texts)

    def calibrated(self, clean_texts: Sequence[str], target_frr: float) -> float:
        """The threshold `calibrate` would set on these clean texts, leaving the detector as it
        is (e.g. a calibrated alternative to a fixed threshold)."""
        return self._calibration(clean_texts, target_frr)[0]

    def calibrate(self, clean_texts: Sequence[str], target_frr: float) -> "Detector":
        """Set the threshold so that at most `target_frr` of these clean texts are flagged."""
        self.threshold_, scores = self._calibration(clean_texts, target_frr)
        self.calibration_ = {"threshold": self.threshold_, "fixed": False,
                             "target_frr": target_frr, "texts": len(scores),
                             "clean_frr": float(self.flagged(scores).mean())}
        return self

    def _calibration(self, clean_texts: Sequence[str],
                     target_frr: float) -> tuple[float, np.ndarray]:
        scores = np.asarray(self.score(clean_texts), dtype=float)
        # kept so the threshold can be audited (a result folder writes them beside its scores)
        self.calibration_scores_ = list(zip(clean_texts, scores.tolist()))
        return calibrated_threshold(scores, target_frr), scores

    def defend(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(victim predictions, -1 where rejected; flags; scores): flagged inputs are rejected,
        the others are purified and classified in one batched pass."""
        scores = np.asarray(self.score(texts), dtype=float)
        flags = self.flagged(scores)
        predictions = np.full(len(texts), -1, dtype=np.int64)
        kept = np.flatnonzero(~flags)
        if len(kept):
            purified = self.purify([texts[i] for i in kept])
            predictions[kept] = self.suspect_.predict_logits(purified).argmax(-1)
        return predictions, flags, scores


def calibrated_threshold(clean_scores: np.ndarray, target_frr: float) -> float:
    """The (k+1)-th highest clean score, k = floor(target_frr * n): flags are strictly above it,
    so at most k clean inputs are flagged (ties can only flag fewer)."""
    scores = np.sort(np.asarray(clean_scores, dtype=float))[::-1]
    if len(scores) == 0:
        raise ValueError("calibration needs at least one clean text")
    allowed = int(np.floor(target_frr * len(scores) + 1e-9))
    return float(scores[min(allowed, len(scores) - 1)])


DETECTORS: Registry[Detector] = Registry("detection defense", "poisonlab.defenses")
