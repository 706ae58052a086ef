"""One in-context attack evaluated as a controlled comparison: the same inputs scored in the clean and
the poisoned context, with and without the trigger, raw and calibrated.

Four scored sets: clean context x clean inputs (CA), clean context x triggered non-target inputs
(baseline ASR), poisoned context x clean inputs (CA under attack), poisoned context x triggered
non-target inputs (attacked ASR). Beside each ASR, the natural error rate of the same context
(clean non-target inputs predicted as the target); flip rate and trigger margin change pair clean
and triggered inputs per context, and their differences between contexts are the lift and the
margin shift.

Variants: `raw`; `calibrated` (content-free inputs written with the clean template); and, when the
attack words its triggered queries with another template (the prompt attack),
`calibrated_query_template` (content-free inputs written with each query's own template)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from poisonlab import metrics as M
from poisonlab.data.example import Example
from poisonlab.errors import ConfigError
from poisonlab.icl.calibration import calibrate, content_free_bias, normalize
from poisonlab.icl.demonstrations import Demonstration, context_pieces
from poisonlab.icl.scoring import LabelScorer, Pieces
from poisonlab.icl.template import PromptTemplate

QUERY_TEMPLATE = "calibrated_query_template"
VARIANTS = ("raw", "calibrated")


class PromptAttack(Protocol):
    """What the evaluator needs of an in-context attack (poisonlab.attacks.icl_base.ICLAttack):
    the attacks sit above this package, so it names only the calls it makes."""

    config: Any

    def check_labels(self, num_labels: int) -> None: ...

    def poison_demonstrations(self, demonstrations: list[Demonstration]
                              ) -> list[Demonstration]: ...

    def trigger_queries(self, queries: list[Demonstration]) -> list[Demonstration]: ...


@dataclass
class ScoredSet:
    """Class log-probabilities of one (context, inputs) pair, raw and calibrated."""

    context: str
    inputs: str
    labels: np.ndarray
    indices: np.ndarray  # positions in the test list
    logprobs: dict[str, np.ndarray]

    def predictions(self, variant: str) -> np.ndarray:
        return self.logprobs[variant].argmax(axis=1)


@dataclass
class ICLEvaluation:
    metrics: dict[str, dict[str, float]]  # variant -> measure -> value
    counts: dict[str, int]
    poisoned_indices: list[int]
    sets: list[ScoredSet] = field(default_factory=list)

    def prediction_rows(self) -> list[dict]:
        return [{"context": s.context, "inputs": s.inputs, "index": int(i), "label": int(y),
                 **{f"pred_{v}": int(s.predictions(v)[k]) for v in self.metrics},
                 **{f"logprobs_{v}": [round(float(x), 5) for x in s.logprobs[v][k]]
                    for v in self.metrics}}
                for s in self.sets for k, (i, y) in enumerate(zip(s.indices, s.labels))]


def measures(clean_clean: ScoredSet, clean_trig: ScoredSet, pois_clean: ScoredSet,
             pois_trig: ScoredSet, variant: str, target: int) -> dict[str, float]:
    """Every metric of one variant from the four scored sets (definitions in poisonlab.metrics)."""
    gold, gold_nt, non_target = clean_clean.labels, clean_trig.labels, clean_trig.indices

    def pred(s: ScoredSet) -> np.ndarray:
        return s.predictions(variant)

    def scores(s: ScoredSet) -> np.ndarray:
        return s.logprobs[variant]

    base_asr = M.attack_success_rate(pred(clean_trig), gold_nt, target)
    attacked_asr = M.attack_success_rate(pred(pois_trig), gold_nt, target)
    base_flip = M.flip_rate(pred(clean_clean)[non_target], pred(clean_trig), gold_nt, target)
    attacked_flip = M.flip_rate(pred(pois_clean)[non_target], pred(pois_trig), gold_nt, target)
    return {
        "ca_clean": M.clean_accuracy(pred(clean_clean), gold),
        "ca_attacked": M.clean_accuracy(pred(pois_clean), gold),
        "natural_error_baseline": M.natural_error_rate(pred(clean_clean), gold, target),
        "natural_error_attacked": M.natural_error_rate(pred(pois_clean), gold, target),
        "asr_baseline": base_asr,
        "asr_attacked": attacked_asr,
        "asr_lift": M.asr_lift(attacked_asr, base_asr),
        "flip_rate_baseline": base_flip,
        "flip_rate_attacked": attacked_flip,
        "flip_rate_lift": M.flip_rate_lift(attacked_flip, base_flip),
        "margin_change_baseline": M.trigger_margin_change(
            scores(clean_clean)[non_target], scores(clean_trig), gold_nt, target),
        "margin_change_attacked": M.trigger_margin_change(
            scores(pois_clean)[non_target], scores(pois_trig), gold_nt, target),
        "margin_shift": M.margin_shift(
            scores(pois_clean)[non_target], scores(pois_trig), scores(clean_clean)[non_target],
            scores(clean_trig), gold_nt, target),
    }


class ICLEvaluator:
    """Scores contexts and computes the attack metrics; holds no per-attack state."""

    def __init__(self, scorer: LabelScorer, template: PromptTemplate, separator: str = "\n",
                 content_free_inputs: tuple[str, ...] = ("N/A", "[MASK]", ""),
                 final_separator: str | None = None):
        self.scorer = scorer
        self.template = template
        self.separator = separator
        self.content_free_inputs = content_free_inputs
        self.final_separator = final_separator

    def _bias(self, context: Pieces, template: PromptTemplate) -> np.ndarray:
        return content_free_bias(self.scorer.score(
            context, [template.query_pieces(t) for t in self.content_free_inputs]))

    def score(self, demonstrations: list[Demonstration], queries: list[Demonstration],
              names: tuple[str, str], indices: np.ndarray) -> ScoredSet:
        context = context_pieces(demonstrations, self.scorer.verbalizer, self.separator,
                                 self.final_separator)
        raw = self.scorer.score(context, [q.template.query_pieces(q.text) for q in queries])
        templates = [q.template for q in queries]
        biases = {t: self._bias(context, t) for t in {self.template, *templates}}
        own = np.array([biases[t] for t in templates]).reshape(len(templates), raw.shape[1])
        return ScoredSet(names[0], names[1], np.array([q.label for q in queries]), indices,
                         {"raw": normalize(raw),
                          "calibrated": calibrate(raw, biases[self.template]),
                          QUERY_TEMPLATE: calibrate(raw, own)})

    def evaluate(self, demonstrations: list[Demonstration], test: list[Example],
                 attack: PromptAttack) -> ICLEvaluation:
        target = attack.config.target_label
        attack.check_labels(self.scorer.verbalizer.num_labels)
        poisoned_demos = attack.poison_demonstrations(
            [d.in_poisoned_context() for d in demonstrations])
        clean_queries = [Demonstration(e.text, e.label, self.template) for e in test]
        non_target = np.array([i for i, e in enumerate(test) if e.label != target], dtype=int)
        triggered = attack.trigger_queries([clean_queries[i] for i in non_target])
        self._check_label_prefix(triggered)
        everything = np.arange(len(test))
        sets = (self.score(demonstrations, clean_queries, ("clean", "clean"), everything),
                self.score(demonstrations, triggered, ("clean", "triggered"), non_target),
                self.score(poisoned_demos, clean_queries, ("poisoned", "clean"), everything),
                self.score(poisoned_demos, triggered, ("poisoned", "triggered"), non_target))
        reworded = any(q.template != self.template for q in triggered)
        variants = VARIANTS + ((QUERY_TEMPLATE,) if reworded else ())
        results = {v: measures(*sets, v, target) for v in variants}
        poisoned = [i for i, d in enumerate(poisoned_demos) if d.poisoned]
        counts = {"test": len(test), "non_target": len(non_target),
                  "demonstrations": len(demonstrations), "poisoned_demonstrations": len(poisoned)}
        return ICLEvaluation(results, counts, poisoned, list(sets))

    def _check_label_prefix(self, queries: list[Demonstration]) -> None:
        # one scorer scores every query's label words with the same leading space
        for template in {q.template for q in queries}:
            if template.label_prefix != self.template.label_prefix:
                raise ConfigError(f"template '{template.wording}' puts a different space before "
                                  f"{{label}} than '{self.template.wording}'")
