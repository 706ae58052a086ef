"""RAP: Robustness-Aware Perturbations, an inference-time detector.

Yang et al. 2021, "RAP: Robustness-Aware Perturbations for Defending against Backdoor Attacks on
NLP Models" (EMNLP 2021, arXiv:2110.07831).

Threat model: the defender holds the deployed victim and some clean data. A backdoored model is
far more robust on triggered inputs than on clean ones: the trigger keeps forcing the target
class. RAP prepends a rare word whose embedding is optimised on clean inputs so that it lowers
the protected class's probability by between `drop_range[0]` and `drop_range[1]`; at inference, an
input whose probability drops by less than the threshold is rejected. The score is minus the
drop; the threshold is calibrated on clean dev data to a target false-rejection rate (the paper
picks it from the clean validation drops the same way).

Differences from the paper and OpenBackdoor's `RAPDefender`:
- the victim's embedding table is never written: the learnt vector replaces the rare word's
  embedding through a forward hook that exists only while RAP runs the victim, so the victim's
  own predictions are unchanged; the vector is trained with Adam (the reference: plain gradient
  steps on the table's row), with probabilities in float64 so that a confident victim's gradient
  does not round to zero;
- `protect_label: null` (default) protects whatever label the victim predicts, so the defender
  need not know the target; with a label, only inputs predicted as it can be flagged (the
  paper's setting) and the others score -1 (the largest possible drop);
- the rare word is "mb" (OpenBackdoor's default; the paper's "cf" is one of BadNet's triggers);
- OpenBackdoor's tracker reports its RAP rejecting almost no poisoned input (FAR near 1.0), fixed
  by the paper's code with another learning rate: the step size is an option here, and the
  threshold comes from clean drops through the shared rule (score > threshold);
- clean and perturbed copies go through the victim batched and length-sorted."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.base import DETECTORS, Detector, DetectorConfig, SuspectModel
from poisonlab.errors import ConfigError
from poisonlab.models.architecture import input_embeddings
from poisonlab.models.cache import ModelCache
from poisonlab.runtime import model_device
from poisonlab.training.trainer import collate, encode_texts, to_device


class RapConfig(DetectorConfig):
    rare_word: str = Field("mb", description="the perturbation word, one token of the victim's "
                                             "tokenizer (OpenBackdoor: mb)")
    drop_range: tuple[float, float] = Field(
        (0.1, 0.3), description="the protected-class probability drop RAP trains for on clean "
                                "inputs (paper: 0.1 to 0.3)")
    protect_label: int | None = Field(
        None, ge=0, description="the label RAP protects (the paper's target label); null: the "
                                "label the victim predicts for each input")
    epochs: int = Field(5, ge=1, description="passes over the clean examples")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-2, gt=0, description="Adam's step size on the word vector")


@contextlib.contextmanager
def substituted(embedding: torch.nn.Embedding, token_id: int,
                vector: torch.Tensor) -> Iterator[None]:
    """While inside, `token_id` reads `vector` instead of its row of the embedding table."""
    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        here = (inputs[0] == token_id).unsqueeze(-1)
        return torch.where(here, vector.to(output.dtype), output)
    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@DETECTORS.register("rap", RapConfig)
class Rap(Detector):
    """RAP (Yang et al. 2021): flag inputs a learnt rare-word perturbation barely moves."""

    config: RapConfig
    known_limits = {
        ("detector", model): (
            "the tiny test models' outputs are saturated: replacing the whole input moves the "
            "logits by about 1e-3 and the gradient reaching the perturbation word is about "
            f"1e-6, so no learnt word lowers a clean prediction (measured ASR {asr})")
        for model, asr in (("tiny-bert", "0.97 -> 0.82"), ("tiny-llama", "0.91 -> 0.85"))}

    def _fit(self, suspect: SuspectModel, clean_train: list[Example], *,
             cache: ModelCache | None = None) -> None:
        c = self.config
        self.token_id_ = self._rare_token(suspect.tokenizer)
        embedding = input_embeddings(suspect.victim)
        self.vector_ = embedding.weight[self.token_id_].detach().clone().float()
        probs = softmax(suspect.predict_logits([e.text for e in clean_train]))
        # learn from inputs the victim gets right, on the label each one should keep
        labels = np.asarray([e.label for e in clean_train])
        protected = labels if c.protect_label is None else np.full(len(labels), c.protect_label)
        use = np.flatnonzero((probs.argmax(-1) == labels) & (labels == protected))
        if not len(use):
            raise ConfigError("rap: no clean training example is predicted as the label it "
                              "protects; check protect_label")
        self._train_vector(suspect, [self.perturb(clean_train[i].text) for i in use],
                           probs[use, protected[use]], protected[use])

    def _rare_token(self, tokenizer) -> int:
        ids = tokenizer(self.config.rare_word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ConfigError(f"rap: field 'rare_word': {self.config.rare_word!r} is {len(ids)} "
                              "tokens for the victim's tokenizer; choose a one-token word")
        return ids[0]

    def perturb(self, text: str) -> str:
        return f"{self.config.rare_word} {text}"

    def _train_vector(self, suspect: SuspectModel, texts: list[str], original: np.ndarray,
                      labels: np.ndarray) -> None:
        """Adam on the word vector alone, with the paper's hinge loss on the drop: pushed up
        when it is below drop_range[0], down when above drop_range[1]."""
        c = self.config
        device = model_device(suspect.victim)
        vector = torch.nn.Parameter(self.vector_.to(device))
        optimizer = torch.optim.Adam([vector], lr=c.learning_rate)
        ids = encode_texts(suspect.tokenizer, texts, suspect.max_length)
        pad = suspect.tokenizer.pad_token_id or 0
        low, high = c.drop_range
        order, rng = list(range(len(texts))), random.Random(c.seed)
        suspect.victim.eval()
        embedding = input_embeddings(suspect.victim)
        for _ in range(c.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), c.batch_size):
                index = order[start:start + c.batch_size]
                batch = to_device(collate([ids[i] for i in index], pad), device)
                with substituted(embedding, self.token_id_, vector):
                    logits = suspect.victim(**batch).logits.double()
                target = torch.as_tensor(labels[index], device=device)
                after = logits.softmax(-1).gather(1, target[:, None])[:, 0]
                drop = torch.as_tensor(original[index], device=device) - after
                loss = ((low - drop).clamp(min=0) + (drop - high).clamp(min=0)).mean()
                optimizer.zero_grad()
                vector.grad = torch.autograd.grad(loss, [vector])[0]
                optimizer.step()
        self.vector_ = vector.detach()

    def _probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of the texts, and of their perturbed copies."""
        suspect = self.suspect_
        before = softmax(suspect.predict_logits(texts))
        with substituted(input_embeddings(suspect.victim), self.token_id_, self.vector_):
            after = softmax(suspect.predict_logits([self.perturb(t) for t in texts]))
        return before, after

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Minus the protected class's probability drop (-1, the largest drop, where the victim
        predicts another class than the protected one: nothing to protect)."""
        if not len(texts):
            return np.zeros(0)
        before, after = self._probabilities(texts)
        predicted = before.argmax(-1)
        protected = (predicted if self.config.protect_label is None
                     else np.full(len(texts), self.config.protect_label))
        rows = np.arange(len(texts))
        drop = before[rows, protected] - after[rows, protected]
        return np.where(predicted == protected, -drop, -1.0)
