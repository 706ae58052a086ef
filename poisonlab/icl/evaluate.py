"""One in-context attack evaluated as a controlled comparison: the same inputs scored in the clean and
the poisoned context, with and without the trigger, raw and calibrated.

Four scored sets: clean context x clean inputs (CA), clean context x triggered non-target inputs
(baseline ASR), poisoned context x clean inputs (CA under attack), poisoned context x triggered
non-target inputs (attacked ASR). Flip rate and margin shift pair them per input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from poisonlab import metrics as M
from poisonlab.data.example import Example
from poisonlab.errors import ConfigError
from poisonlab.icl.calibration import calibrate, content_free_bias, normalize
from poisonlab.icl.demonstrations import Demonstration, render_context, render_queries
from poisonlab.icl.scoring import LabelScorer
from poisonlab.icl.template import PromptTemplate

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
    metrics: dict[str, dict[str, float]]
    counts: dict[str, int]
    poisoned_indices: list[int]
    sets: list[ScoredSet] = field(default_factory=list)

    def prediction_rows(self) -> list[dict]:
        return [{"context": s.context, "inputs": s.inputs, "index": int(i), "label": int(y),
                 **{f"pred_{v}": int(s.predictions(v)[k]) for v in VARIANTS},
                 **{f"logprobs_{v}": [round(float(x), 5) for x in s.logprobs[v][k]]
                    for v in VARIANTS}}
                for s in self.sets for k, (i, y) in enumerate(zip(s.indices, s.labels))]


class ICLEvaluator:
    """Scores contexts and computes the attack metrics; holds no per-attack state."""

    def __init__(self, scorer: LabelScorer, template: PromptTemplate, separator: str = "\n",
                 content_free_inputs: tuple[str, ...] = ("N/A", "[MASK]", "")):
        self.scorer = scorer
        self.template = template
        self.separator = separator
        self.content_free_inputs = content_free_inputs

    def score(self, demonstrations: list[Demonstration], queries: list[Demonstration],
              names: tuple[str, str], indices: np.ndarray) -> ScoredSet:
        context = render_context(demonstrations, self.scorer.verbalizer, self.separator)
        raw = self.scorer.score(context, render_queries(queries))
        bias = content_free_bias(self.scorer.score(
            context, [self.template.query(t) for t in self.content_free_inputs]))
        return ScoredSet(names[0], names[1], np.array([q.label for q in queries]), indices,
                         {"raw": normalize(raw), "calibrated": calibrate(raw, bias)})

    def evaluate(self, demonstrations: list[Demonstration], test: list[Example],
                 attack: PromptAttack) -> ICLEvaluation:
        target = attack.config.target_label
        attack.check_labels(self.scorer.verbalizer.num_labels)
        poisoned_demos = attack.poison_demonstrations(demonstrations)
        clean_queries = [Demonstration(e.text, e.label, self.template) for e in test]
        non_target = np.array([i for i, e in enumerate(test) if e.label != target], dtype=int)
        triggered = attack.trigger_queries([clean_queries[i] for i in non_target])
        self._check_label_prefix(triggered)
        everything = np.arange(len(test))
        clean_clean = self.score(demonstrations, clean_queries, ("clean", "clean"), everything)
        clean_trig = self.score(demonstrations, triggered, ("clean", "triggered"), non_target)
        pois_clean = self.score(poisoned_demos, clean_queries, ("poisoned", "clean"), everything)
        pois_trig = self.score(poisoned_demos, triggered, ("poisoned", "triggered"), non_target)
        gold, gold_nt = clean_clean.labels, clean_trig.labels
        results: dict[str, dict[str, float]] = {}
        for v in VARIANTS:
            base_asr = M.attack_success_rate(clean_trig.predictions(v), gold_nt, target)
            attacked_asr = M.attack_success_rate(pois_trig.predictions(v), gold_nt, target)
            results[v] = {
                "ca_clean": M.clean_accuracy(clean_clean.predictions(v), gold),
                "ca_attacked": M.clean_accuracy(pois_clean.predictions(v), gold),
                "asr_baseline": base_asr,
                "asr_attacked": attacked_asr,
                "asr_lift": M.asr_lift(attacked_asr, base_asr),
                "flip_rate_baseline": M.flip_rate(clean_clean.predictions(v)[non_target],
                                                  clean_trig.predictions(v), gold_nt, target),
                "flip_rate_attacked": M.flip_rate(pois_clean.predictions(v)[non_target],
                                                  pois_trig.predictions(v), gold_nt, target),
                "margin_shift": M.margin_shift(
                    pois_clean.logprobs[v][non_target], pois_trig.logprobs[v],
                    clean_clean.logprobs[v][non_target], clean_trig.logprobs[v], gold_nt, target),
            }
        poisoned = [i for i, d in enumerate(poisoned_demos) if d.poisoned]
        counts = {"test": len(test), "non_target": len(non_target),
                  "demonstrations": len(demonstrations), "poisoned_demonstrations": len(poisoned)}
        return ICLEvaluation(results, counts, poisoned,
                             [clean_clean, clean_trig, pois_clean, pois_trig])

    def _check_label_prefix(self, queries: list[Demonstration]) -> None:
        # one scorer scores every query's label words with the same leading space
        for template in {q.template for q in queries}:
            if template.label_prefix != self.template.label_prefix:
                raise ConfigError(f"template '{template.wording}' puts a different space before "
                                  f"{{label}} than '{self.template.wording}'")
