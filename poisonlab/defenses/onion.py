"""ONION: outlier-word removal by language-model perplexity.

Qi et al. 2021, "ONION: A Simple and Effective Defense Against Textual Backdoor Attacks"
(EMNLP 2021, arXiv:2011.10369).

Threat model: inference-time defense with no access to training; the defender has a language
model. The suspicion of word i is p0 - p_i, the perplexity of the text minus its perplexity
without word i: an inserted rare-word trigger raises perplexity, so removing it lowers it a lot.
Words whose suspicion exceeds `word_threshold` are removed before the victim sees the text
(purification). As a detector, an input's score is its largest word suspicion, and inputs above
the threshold are rejected. The default threshold (.inf) rejects nothing: the paper's
purification only; `threshold: null` calibrates it on clean dev data.

Differences from the paper: the default LM is SmolLM2-135M (the paper used GPT-2), sequences start
with the LM's BOS token so the first word is scored too, and all leave-one-out variants of many
texts run in a few batched forward passes that reuse the key/value cache of each text's shared
prefix (detect_perplexity.py); results equal the per-variant computation. The LM runs on the
victim's device."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data import Example
from poisonlab.defenses.base import DETECTORS, Detector, DetectorConfig, SuspectModel
from poisonlab.defenses.detect_perplexity import LeaveOneOutPerplexity
from poisonlab.models import load_causal_lm
from poisonlab.models.cache import ModelCache
from poisonlab.runtime import model_device


class OnionScorerConfig(StrictConfig):
    """The word scorer's settings, shared by every ONION (texts and instructions)."""

    language_model: str = Field("smollm2-135m", description="causal LM that measures perplexity")
    word_threshold: float = Field(
        0.0, description="remove words whose suspicion (perplexity drop) exceeds this")
    max_length: int = Field(128, ge=8, description="tokens kept per text")
    batch_tokens: int = Field(4096, ge=64, description="padded tokens per forward pass")


class OnionConfig(DetectorConfig, OnionScorerConfig):
    threshold: float | None = Field(
        float("inf"), description="reject inputs whose largest word suspicion exceeds this; "
                                  "inf (default): purify only, as in the paper; null: calibrate "
                                  "on clean dev data to target_frr")


@DETECTORS.register("onion", OnionConfig)
class Onion(Detector):
    """ONION (Qi et al. 2021): remove words whose deletion lowers LM perplexity the most."""

    config: OnionConfig
    conformance = {"threshold": None, "max_length": 32}  # calibrated, not purify-only

    def _fit(self, suspect: SuspectModel, clean_train: list[Example], *,
             cache: ModelCache | None = None) -> None:
        """Load the LM onto the victim's device (where there is a victim)."""
        c = self.config
        device = model_device(suspect.victim) if suspect is not None else None
        self.scorer_ = onion_scorer(c.language_model, max_length=c.max_length,
                                    batch_tokens=c.batch_tokens, device=device, cache=cache,
                                    progress=self.progress_)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """The largest word suspicion of each text (0 for an empty text)."""
        return np.asarray([s.max() if len(s) else 0.0 for s in self.scorer_.suspicion(texts)])

    def purify(self, texts: Sequence[str]) -> list[str]:
        return purify(texts, self.scorer_.suspicion(texts), self.config.word_threshold)


def onion_scorer(language_model: str, *, max_length: int, batch_tokens: int,
                 device: torch.device | None, cache: ModelCache | None = None,
                 progress: bool = False) -> LeaveOneOutPerplexity:
    """ONION's word scorer on `device`. Through the caller's cache, every ONION with the same LM
    settings on the same device (classification detector or instruction filter) shares one
    scorer: the LM and its memo of word scores, which depend only on the text."""

    def make() -> LeaveOneOutPerplexity:
        lm = load_causal_lm(language_model)
        if device is not None:
            lm.model.to(device)
        return LeaveOneOutPerplexity(lm, max_length=max_length, batch_tokens=batch_tokens,
                                     progress=progress)

    return make() if cache is None else cache.get_or_make(
        ("onion-scorer", language_model, max_length, batch_tokens, str(device)), make)


def purify(texts: Sequence[str], suspicion: Sequence[np.ndarray], word_threshold: float
           ) -> list[str]:
    """Each text without the words whose suspicion exceeds `word_threshold`."""
    return [" ".join(w for w, s in zip(text.split(), scores) if s <= word_threshold)
            for text, scores in zip(texts, suspicion)]
