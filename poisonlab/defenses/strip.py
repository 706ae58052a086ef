"""STRIP for text: perturb an input with clean text and flag predictions that do not move.

Gao et al. 2021, "Design and Evaluation of a Multi-Domain Trojan Detection Method on Deep Neural
Networks" (IEEE TDSC; STRIP-ViTA, the text version of STRIP, Gao et al. 2019).

Threat model: the defender holds the deployed victim and some clean inputs. Each input is
superimposed with random clean examples: `concat` (default) appends a whole clean example,
`replace` swaps a share of its words for words of a clean example (as in STRIP-ViTA). A clean
input then gets conflicting evidence and uncertain predictions, while a trigger keeps forcing the
target class: low mean prediction entropy over the copies means suspicious. (On an overconfident
victim `replace` leaves every copy confident, clean or not; `concat` separates them better.) The
score is minus that entropy; the threshold is calibrated on clean inputs to a target
false-rejection rate, as the paper does (it uses 1%). Evaluated on encoder classifiers only: on a
causal classifier, which reads the last token, superimposed text moves what it reads.

Differences from the paper: the clean words come from the defender's training set (the paper
draws from held-out clean inputs), and all copies of all inputs go through the victim in one
batched, length-sorted pass."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.base import DETECTORS, Detector, DetectorConfig, SuspectModel
from poisonlab.models.cache import ModelCache
from poisonlab.training import predict_logits


class StripConfig(DetectorConfig):
    copies: int = Field(20, ge=1, description="perturbed copies per input")
    superimpose: Literal["replace", "concat"] = Field(
        "concat", description="concat: append a clean example; "
                              "replace: swap words for a clean example's words")
    swap_ratio: float = Field(0.5, gt=0, le=1, description="share of words replaced (replace)")


def superimpose(text: str, clean: str, mode: str, swap_ratio: float,
                rng: np.random.Generator) -> str:
    if mode == "concat":
        return f"{text} {clean}"
    words, donors = text.split(), clean.split() or [""]
    swap = rng.random(len(words)) < swap_ratio
    return " ".join(str(donors[rng.integers(len(donors))]) if s else w
                    for w, s in zip(words, swap))


def entropy(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -(np.exp(logp) * logp).sum(-1)


@DETECTORS.register("strip", StripConfig)
class Strip(Detector):
    """STRIP (Gao et al. 2021): low prediction entropy under superimposed clean text."""

    config: StripConfig
    # Superimposed text moves a causal (last-token) classifier's read-out position, which the
    # STRIP-ViTA design does not anticipate: on tiny-llama triggered inputs looked less
    # suspicious than clean ones (AUROC 0.13 with concat, 0.47 with replace).
    applies_to = ("encoder",)

    def _fit(self, suspect: SuspectModel, clean_train: list[Example], *,
             cache: ModelCache | None = None) -> None:
        self.clean_texts_ = [e.text for e in clean_train]

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Minus the mean prediction entropy over the perturbed copies."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        donors = rng.integers(len(self.clean_texts_), size=(len(texts), c.copies))
        copies = [superimpose(text, self.clean_texts_[d], c.superimpose, c.swap_ratio, rng)
                  for text, row in zip(texts, donors) for d in row]
        if not copies:
            return np.zeros(0)
        # the copies-fold pass over every input is STRIP's slow step: it gets the bar
        suspect = self.suspect_
        logits = predict_logits(suspect.victim, suspect.tokenizer, copies,
                                batch_size=suspect.batch_size, max_length=suspect.max_length,
                                runtime=suspect.runtime, progress=self.progress_,
                                description="strip")
        return -entropy(logits).reshape(len(texts), c.copies).mean(1)
