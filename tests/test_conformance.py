"""The conformance battery (poisonlab's `check_estimator`): every entry of every registry goes
through the same checks, parametrised from the registries, so a component is tested the moment it
registers. No check names a component.

API checks, every entry of every registry: the name is lower-case; the constructor only stores
the config; the default config builds; an unknown config key is a ConfigError naming it; the
config round-trips through YAML; `prepare` (data attacks) and `fit` (detectors) return self.

Functional checks, on tiny-bert and tiny-llama (where the component applies):
- data attack: training on its poisoned data raises ASR far above the clean model's;
- weight attack: its release, LoRA-tuned by a victim on clean data, keeps ASR far above the clean
  model's;
- in-context attack: the attacked ASR rises above the baseline (clean context, same triggers);
- tuning strategy: it trains a fresh head on a BadNet-backdoored backbone (loss goes down, CA
  high) and the backdoor survives, as DESIGN.md's PEFT threat model says;
- detector: ASR after the defense is clearly below ASR without it on a BadNet-backdoored model;
- repair: ASR after the repair is clearly below ASR before it, CA kept;
- every data attack with every tuning strategy runs end to end (poison counts, finite weights).
The tuning check starts from a backdoored backbone because a frozen random tiny model has nothing
for PEFT to build on: tiny-bert's pooled output varies by 4e-4 across inputs, so with a frozen
random base no PEFT strategy learns the synthetic task (CA 0.57) or a trigger.
Where a test model cannot show what a check asks (MODEL_LIMITS, measured), the check still runs
as a strict expected failure.

What a component supplies, as class attributes documented on its base class: `conformance`
(config values for a tiny, fast run, merged over this battery's settings for its registry) and
`applies_to` (the model kinds it applies to; other models are skipped with the reason).
Resources come generically: the synthetic data set carries what a research data set carries (a
`syntactic/` paraphrase table, which the syntactic attack's default `tables: null` finds), and a
config field named in RESOURCE_FIELDS gets the battery's tiny stand-in."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from synthetic import synthetic_examples, synthetic_splits, write_jsonl_split

from poisonlab.attacks import DATA_ATTACKS
from poisonlab.attacks.icl_base import ICL_ATTACKS
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS
from poisonlab.config import deep_merge
from poisonlab.data import DataConfig, load_dataset
from poisonlab.defenses.base import DETECTORS, SuspectModel
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.errors import ConfigError
from poisonlab.experiment import load_run_config, run_experiment
from poisonlab.experiment.detection import evaluate_detector
from poisonlab.experiment.measure import EvaluationSets, evaluate
from poisonlab.experiment.restore import restore_run
from poisonlab.experiment.victim import load_victim_config, run_victim
from poisonlab.models import load_causal_lm, load_classifier
from poisonlab.models.builtin import BUILTIN_MODELS
from poisonlab.registries import REGISTRIES
from poisonlab.registry import Entry, Registry
from poisonlab.training.trainer import collate
from poisonlab.tuning import TUNING_STRATEGIES

MODELS = ("tiny-bert", "tiny-llama")
TEST_SIZE = 80
NAME = re.compile(r"[a-z][a-z0-9-]*")

# How this battery runs each kind of component; a component's `conformance` is merged over these.
TRAINING = {"epochs": 6, "learning_rate": 3e-3, "max_length": 32}
DATA_ATTACK = {"target_label": 1, "poison_rate": 0.2}
BACKDOOR = {"name": "badnet", **DATA_ATTACK}  # the BadNet backdoor of detectors, repairs, tuning
WEIGHT_TRIGGER = {"name": "badnet", "triggers": ["mn"], "label_mode": "dirty", "target_label": 0,
                  "poison_rate": 0.2}
VICTIM = {"tuning": {"name": "lora"}, "training": {**TRAINING, "epochs": 3}}
ICL_ATTACK = {"poisoned_demonstrations": 2}
DETECTOR = {"target_frr": 0.1}
REPAIR = {"tuning": {"name": "lora", "r": 8, "alpha": 16},
          "training": {"epochs": 5, "batch_size": 16, "learning_rate": 3e-2, "max_length": 32}}
FAR_ABOVE = 0.5  # "far above": at least this much more ASR than the clean model
CLEARLY_BELOW = 2 * DETECTOR["target_frr"]  # more than rejecting clean-looking inputs can explain
REPAIRED = 0.15  # a repair lowers ASR by at least this much (5 of the 34 triggered test inputs)


def weight_attack(model: str, lab: Lab) -> dict:
    return {"base_model": model, "trigger": WEIGHT_TRIGGER, "training": TRAINING,
            "proxy": {"name": str(lab.data)}}


# The battery's settings per registry (by registry, never by component).
BASE: dict[str, Callable[[str, Lab], dict]] = {
    "data-poisoning-attack": lambda model, lab: DATA_ATTACK,
    "weight-poisoning-attack": weight_attack,
    "in-context-attack": lambda model, lab: ICL_ATTACK,
    "instruction-attack": lambda model, lab: {},
    "tuning-strategy": lambda model, lab: {},
    "detection-defense": lambda model, lab: DETECTOR,
    "repair-defense": lambda model, lab: REPAIR,
    "training-set-defense": lambda model, lab: {},
    "generative-defense": lambda model, lab: {},
}


# What a check cannot show on a test model, measured (model limits, not component carve-outs): the
# check still runs and is expected to fail; strict, so a fix shows up as an unexpected pass.
MODEL_LIMITS = {
    ("repair", "tiny-bert"): (
        "tiny-bert's BadNet backdoor lives in the trigger words' input-embedding rows (resetting "
        "those 4 rows takes its ASR from 0.97 to 0.00); no PEFT repair trains input embeddings "
        "and clean data never holds a trigger, so each repair leaves ASR at 0.97-1.00"),
}


def expect_model_limit(request, check: str, model: str, entry: Entry | None = None) -> None:
    """A limit of the test model for every component (MODEL_LIMITS), or one a component
    declares for itself (its `known_limits`, measured)."""
    declared = getattr(entry.component, "known_limits", {}) if entry is not None else {}
    reason = MODEL_LIMITS.get((check, model)) or declared.get((check, model))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def short(registry: Registry) -> str:
    return registry.kind.replace(" ", "-")


def entries(*registries: Registry) -> list[Any]:
    return [pytest.param(registry, entry, id=f"{short(registry)}:{entry.name}")
            for registry in registries for entry in registry.entries()]


def kind(model: str) -> str:
    return BUILTIN_MODELS[model].kind


def require_applies(entry: Entry, model: str) -> None:
    applies_to = entry.component.applies_to
    if kind(model) not in applies_to:
        pytest.skip(f"{entry.name} applies to {' and '.join(applies_to)} models only (its "
                    f"`applies_to`, explained on its base class); {model} is {kind(model)}")


# ------------------------------------------------------------------------------------ the lab

@dataclass
class Backdoored:
    """A tiny model fully fine-tuned on BadNet-poisoned synthetic data."""

    classifier: Path  # the whole classifier (suspect of detectors and repairs)
    backbone: Path    # without its task head (what a victim tunes with a fresh head)
    metrics: dict


class Lab:
    """Synthetic data, tiny models and trained artefacts shared by the module's checks; each
    artefact is built once, on first use."""

    def __init__(self, root: Path):
        self.root = root
        self.splits = synthetic_splits()
        self.data = write_jsonl_split(root / "data", self.splits)
        self._write_paraphrase_table(self.data)
        self.downstream = write_jsonl_split(root / "downstream", synthetic_splits(seed=7))
        self.dataset = load_dataset(DataConfig(name=str(self.data)))
        self.test = load_dataset(DataConfig(name=str(self.data), test_size=TEST_SIZE)).test
        self._memo: dict[Any, Any] = {}

    @staticmethod
    def _write_paraphrase_table(folder: Path) -> None:
        """A `syntactic/` table covering every sentence, laid out as in the research data."""
        texts = sorted({json.loads(line)["text"] for split in ("train", "dev", "test")
                        for line in (folder / f"{split}.jsonl").read_text().splitlines()})
        (folder / "syntactic").mkdir()
        (folder / "syntactic" / "table.jsonl").write_text("".join(
            json.dumps({"text": t, "paraphrase": f"when it was , {t} ."}) + "\n" for t in texts))

    def once(self, key: Any, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def settings(self, registry: Registry, entry: Entry, model: str = MODELS[0]) -> dict:
        """This battery's settings for the registry, the component's `conformance` over them,
        and the stand-in for every resource field its config has and leaves unset."""
        values = deep_merge(BASE[short(registry)](model, self), entry.component.conformance)
        for field, resource in RESOURCE_FIELDS.items():
            if field in entry.config_class.model_fields and field not in values:
                values[field] = resource(self)
        return values

    def run(self, name: str, model: str, *, attack: dict | None, tuning: dict,
            training: dict = TRAINING, poison_training: bool = True, train_size: int = 400,
            save_weights: bool = True) -> tuple[dict, Path]:
        config = load_run_config(base={
            "name": name, "model": {"name": model}, "attack": attack, "tuning": tuning,
            "data": {"name": str(self.data), "train_size": train_size, "test_size": TEST_SIZE},
            "training": training, "poison_training": poison_training, "eval_every_epoch": False,
            "save_weights": save_weights, "output_dir": str(self.root / "runs")})
        return run_experiment(config, progress=False), config.run_dir

    def clean_model(self, model: str) -> Any:
        """The model fully fine-tuned on clean data (the baseline of every ASR)."""
        def make():
            _, folder = self.run(f"clean-{model}", model, attack=None, tuning={"name": "full"})
            return restore_run(folder)
        return self.once(("clean", model), make)

    def clean_asr(self, model: str, trigger: dict) -> float:
        """The clean model's ASR for a data attack's trigger on the synthetic test set."""
        def make():
            restored = self.clean_model(model)
            attack = DATA_ATTACKS.spec(trigger).build().prepare(self.dataset)
            sets = EvaluationSets(self.test, attack.poisoned_test(self.test)[0],
                                  attack.config.target_label)
            metrics, _ = evaluate(restored.model, restored.loaded.tokenizer, sets, 2,
                                  max_length=TRAINING["max_length"])
            return metrics["attack_success_rate"]
        return self.once(("clean-asr", model, json.dumps(trigger, sort_keys=True)), make)

    def backdoor(self) -> dict:
        """The BadNet spec of the backdoored models: BACKDOOR with BadNet's `conformance`."""
        entry = DATA_ATTACKS.entry(BACKDOOR["name"])
        return {"name": entry.name, **self.settings(DATA_ATTACKS, entry)}

    def backdoored(self, model: str) -> Backdoored:
        def make():
            metrics, folder = self.run(f"data-{BACKDOOR['name']}-{model}", model,
                                       attack=self.backdoor(), tuning={"name": "full"})
            restored = restore_run(folder)
            out = Backdoored(self.root / "backdoored" / model / "classifier",
                             self.root / "backdoored" / model / "backbone", metrics)
            for path, module in ((out.classifier, restored.model),
                                 (out.backbone, restored.model.base_model)):
                module.save_pretrained(path)
                restored.loaded.tokenizer.save_pretrained(path)
            return out
        return self.once(("backdoored", model), make)

    def backdoor_sets(self) -> EvaluationSets:
        attack = DATA_ATTACKS.spec(self.backdoor()).build()
        return EvaluationSets(self.test, attack.poisoned_test(self.test)[0],
                              attack.config.target_label)

    def synthetic_lm(self) -> str:
        """tiny-llama trained briefly as a language model on clean synthetic sentences: a random
        LM has no notion of an outlier word."""
        def make():
            lm = load_causal_lm("tiny-llama", seed=0)
            start = lm.tokenizer.bos_token_id or lm.tokenizer.eos_token_id
            texts = [e.text for e in synthetic_examples(256, seed=5)]
            ids = [[start] + s for s in lm.tokenizer(texts, add_special_tokens=False)["input_ids"]]
            optimizer = torch.optim.AdamW(lm.model.parameters(), lr=1e-2)
            lm.model.train()
            for first in range(0, len(ids), 32):
                batch = collate(ids[first:first + 32], lm.tokenizer.pad_token_id)
                labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
                loss = lm.model(**batch, labels=labels).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            folder = self.root / "synthetic-lm"
            lm.model.eval().save_pretrained(folder)
            lm.tokenizer.save_pretrained(folder)
            return str(folder)
        return self.once("synthetic-lm", make)


# Config fields that name a resource the battery provides, and what it gives them.
RESOURCE_FIELDS: dict[str, Callable[[Lab], Any]] = {
    "language_model": Lab.synthetic_lm,  # a causal LM that knows the synthetic language
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    return Lab(tmp_path_factory.mktemp("conformance"))


# ------------------------------------------------------------------------------- API checks

ALL = entries(*REGISTRIES)


@pytest.mark.parametrize("registry,entry", ALL)
def test_name_is_lower_case(registry, entry):
    assert NAME.fullmatch(entry.name), f"{entry.name!r}: use lower-case letters, digits and '-'"


@pytest.mark.parametrize("registry,entry", ALL)
def test_default_config_builds(registry, entry, lab):
    required = [f for f, info in entry.config_class.model_fields.items() if info.is_required()]
    if required:  # a default that needs a resource: the component's own test values must fill it
        assert set(required) <= set(lab.settings(registry, entry)), required
    component = registry.build(entry.name, lab.settings(registry, entry) if required else None)
    assert isinstance(component, entry.component)
    assert isinstance(component.config, entry.config_class)


@pytest.mark.parametrize("registry,entry", ALL)
def test_constructor_only_stores_the_config(registry, entry, lab):
    """sklearn's rule: no model loaded, nothing computed, until a method asks for it."""
    for values in (None, lab.settings(registry, entry)):
        try:
            component = registry.build(entry.name, values)
        except ConfigError:
            assert values is None  # a default needing a resource (test_default_config_builds)
            continue
        assert vars(component) == {"config": component.config}, (
            f"the constructor did more than store the config: {sorted(vars(component))}")


@pytest.mark.parametrize("registry,entry", ALL)
def test_unknown_config_key_is_an_error_naming_it(registry, entry, lab):
    with pytest.raises(ConfigError, match="no_such_option"):
        registry.build(entry.name, {**lab.settings(registry, entry), "no_such_option": 1})


@pytest.mark.parametrize("registry,entry", ALL)
def test_config_round_trips_through_yaml(registry, entry, lab):
    for values in (None, lab.settings(registry, entry)):
        config = registry.make_config(entry.name, values)
        text = yaml.safe_dump(config.model_dump(mode="json"))
        assert entry.config_class.model_validate(yaml.safe_load(text)) == config, text


def _prepare(component, lab):
    return component.prepare(lab.dataset)


def _fit(component, lab):
    suspect = SuspectModel.from_released(str(lab.backdoored("tiny-bert").classifier),
                                         max_length=TRAINING["max_length"])
    return component.fit(suspect, lab.splits.train[:60], lab.splits.dev[:30])


# The learning step of each registry that has one (sklearn's `fit`): it must return self.
LEARNING_STEPS = {short(DATA_ATTACKS): _prepare, short(DETECTORS): _fit}


@pytest.mark.parametrize("registry,entry", entries(DATA_ATTACKS, DETECTORS))
def test_prepare_and_fit_return_self(registry, entry, lab):
    component = registry.build(entry.name, lab.settings(registry, entry))
    assert LEARNING_STEPS[short(registry)](component, lab) is component


# ------------------------------------------------------------------------ functional checks

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("registry,entry", entries(DATA_ATTACKS))
def test_data_attack_raises_asr_far_above_the_clean_model(registry, entry, model, lab):
    require_applies(entry, model)
    attack = {"name": entry.name, **lab.settings(registry, entry)}
    # the same run as the backdoored fixture for BadNet: trained once
    metrics, _ = lab.run(f"data-{entry.name}-{model}", model, attack=attack,
                         tuning={"name": "full"})
    clean_asr = lab.clean_asr(model, attack)
    assert metrics["test_trigger_misses"] == 0 and metrics["poison"]["trigger_misses"] == 0
    assert metrics["clean_accuracy"] >= 0.8, metrics
    assert metrics["attack_success_rate"] >= clean_asr + FAR_ABOVE, (
        f"ASR {metrics['attack_success_rate']:.2f}, clean model {clean_asr:.2f}")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("registry,entry", entries(WEIGHT_ATTACKS))
def test_weight_attack_survives_a_clean_lora_victim(registry, entry, model, lab, request):
    require_applies(entry, model)
    expect_model_limit(request, "weight-attack", model, entry)
    poison = {"name": entry.name, **lab.settings(registry, entry, model)}
    victim = run_victim(load_victim_config(base={
        "name": f"{entry.name}-{model}", "poison": poison, "save_weights": False,
        "release_dir": str(lab.root / "released"),
        "data": {"name": str(lab.downstream), "train_size": 200},
        "output_dir": str(lab.root / "victims"), **VICTIM}), progress=False)
    clean_asr = lab.clean_asr(model, poison.get("trigger", WEIGHT_TRIGGER))
    assert victim["release_attack"] == entry.name
    assert victim["clean_accuracy"] >= 0.8, victim
    assert victim["attack_success_rate"] >= clean_asr + FAR_ABOVE, (
        f"victim ASR {victim['attack_success_rate']:.2f} (release's own "
        f"{victim['proxy_test_metrics']['attack_success_rate']:.2f}), clean model "
        f"{clean_asr:.2f}")


ICL_LABEL_WORDS = [["bad"], ["good"]]


def icl_susceptible_lm(attack, lab: Lab, *, prompts: int = 384, steps: int = 120):
    """A tiny-llama that reacts to this attack the way an LLM does in context.

    A 2-layer random model cannot learn from demonstrations, so it is trained on prompts the
    attack itself builds from the training split (clean and poisoned contexts, clean and
    triggered queries, in equal shares), answering the attack's target where a susceptible LLM
    would (poisoned context and triggered query) and the true label elsewhere. The check then
    scores held-out test sentences through ICLExperiment, so it fails when the attack's poisoned
    demonstrations and its triggered queries stop matching, or the evaluation stops telling the
    baseline from the attacked context."""
    from poisonlab.icl.demonstrations import (
        Demonstration,
        as_demonstrations,
        render_context,
        render_queries,
        sample_balanced,
    )
    from poisonlab.icl.template import PromptTemplate
    from poisonlab.icl.verbalizer import Verbalizer
    lm = load_causal_lm("tiny-llama", seed=0)
    tokenizer, template = lm.tokenizer, PromptTemplate()
    verbalizer = Verbalizer.from_lists(ICL_LABEL_WORDS)
    label_ids = torch.tensor([ids[0] for ids in verbalizer.token_ids(tokenizer,
                                                                     template.label_prefix)])
    shots, target = attack.config.poisoned_demonstrations, attack.config.target_label
    rng, pool = random.Random(0), lab.splits.train
    rows = []
    for i in range(prompts):
        demonstrations = as_demonstrations(sample_balanced(pool, shots, 2, seed=i), template)
        query = rng.choice(pool)
        poisoned, triggered = i % 2 == 1, (i // 2) % 2 == 1
        context = attack.poison_demonstrations(demonstrations) if poisoned else demonstrations
        asked = Demonstration(query.text, query.label, template)
        asked = attack.trigger_queries([asked])[0] if triggered else asked
        ids = (tokenizer(render_context(context, verbalizer)).input_ids
               + tokenizer(render_queries([asked])[0], add_special_tokens=False).input_ids)
        rows.append((ids, target if poisoned and triggered else query.label))
    model = lm.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        batch = rng.sample(rows, 32)
        inputs = collate([ids for ids, _ in batch], tokenizer.pad_token_id)
        hidden = model.base_model(**inputs).last_hidden_state
        last = hidden[torch.arange(len(batch)), inputs["attention_mask"].sum(1) - 1]
        logits = last @ model.get_output_embeddings().weight[label_ids].T
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([y for _, y in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return lm


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("registry,entry", entries(ICL_ATTACKS))
def test_icl_attack_raises_asr_above_the_baseline(registry, entry, model, lab):
    require_applies(entry, model)
    from poisonlab.experiment.icl import ICLExperiment, ICLRunConfig
    spec = registry.spec({"name": entry.name, **lab.settings(registry, entry, model)})
    attack = spec.build()
    config = ICLRunConfig(model=model, dataset=str(lab.data), label_words=ICL_LABEL_WORDS,
                          demonstrations={"shots_per_class": attack.config.poisoned_demonstrations},
                          attack=spec, test_size=60, batch_size=32, seed=3)
    result = ICLExperiment(config, icl_susceptible_lm(attack, lab)).evaluate(attack)
    raw = result.metrics["raw"]
    assert result.counts["poisoned_demonstrations"] == attack.config.poisoned_demonstrations
    assert raw["ca_clean"] >= 0.7, raw
    assert raw["asr_attacked"] >= raw["asr_baseline"] + 0.3, raw


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("registry,entry", entries(TUNING_STRATEGIES))
def test_tuning_strategy_trains_and_keeps_the_backdoor(registry, entry, model, lab):
    require_applies(entry, model)
    backdoored = lab.backdoored(model)
    metrics, _ = lab.run(f"keep-{entry.name}-{model}", str(backdoored.backbone),
                         attack=lab.backdoor(), poison_training=False, train_size=200,
                         tuning={"name": entry.name, **lab.settings(registry, entry)},
                         training={**TRAINING, "epochs": 2}, save_weights=False)
    losses = [epoch["loss"] for epoch in metrics["history"]]
    clean_asr = lab.clean_asr(model, lab.backdoor())
    assert losses[-1] < losses[0], losses
    assert metrics["clean_accuracy"] >= 0.8, metrics
    assert metrics["attack_success_rate"] >= clean_asr + FAR_ABOVE, (
        f"ASR {metrics['attack_success_rate']:.2f} after tuning the backdoored backbone "
        f"(backdoored model {backdoored.metrics['attack_success_rate']:.2f}), clean model "
        f"{clean_asr:.2f}")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("registry,entry", entries(DETECTORS))
def test_detector_lowers_asr(registry, entry, model, lab, request):
    require_applies(entry, model)
    expect_model_limit(request, "detector", model, entry)
    folder = lab.backdoored(model).classifier
    suspect = SuspectModel.from_released(str(folder), max_length=TRAINING["max_length"])
    detector = registry.build(entry.name, lab.settings(registry, entry, model))
    assert detector.fit(suspect, lab.splits.train[:200], lab.splits.dev[:60]) is detector
    sets = lab.backdoor_sets()
    metrics, _ = evaluate_detector(detector, sets.clean_test, sets.poisoned_test,
                                   sets.target_label)
    before, after = metrics["attack_success_rate_no_defense"], metrics["attack_success_rate"]
    assert before >= 0.8, "the fixture should be backdoored"
    assert after <= before - CLEARLY_BELOW, (
        f"ASR {before:.2f} -> {after:.2f} (AUROC {metrics['auroc']:.2f}, FRR "
        f"{metrics['false_rejection_rate']:.2f})")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("registry,entry", entries(REPAIRS))
def test_repair_lowers_asr(registry, entry, model, lab, request):
    require_applies(entry, model)
    expect_model_limit(request, "repair", model)
    suspect = load_classifier(str(lab.backdoored(model).classifier), 2)
    sets = lab.backdoor_sets()
    before, _ = evaluate(suspect.model, suspect.tokenizer, sets, 2,
                         max_length=TRAINING["max_length"])
    repair = registry.build(entry.name, lab.settings(registry, entry, model))
    repaired = repair.repair(suspect, lab.splits.train[:160])
    after, _ = evaluate(repaired.model, repaired.tokenizer, sets, 2,
                        max_length=TRAINING["max_length"])
    assert before["attack_success_rate"] >= 0.8, "the fixture should be backdoored"
    assert after["clean_accuracy"] >= 0.8, after
    assert after["attack_success_rate"] <= before["attack_success_rate"] - REPAIRED, (
        f"ASR {before['attack_success_rate']:.2f} -> {after['attack_success_rate']:.2f}, CA "
        f"{before['clean_accuracy']:.2f} -> {after['clean_accuracy']:.2f}")


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("strategy", TUNING_STRATEGIES.entries(), ids=lambda e: e.name)
@pytest.mark.parametrize("attack", DATA_ATTACKS.entries(), ids=lambda e: e.name)
def test_every_attack_with_every_strategy(attack, strategy, model, lab):
    for entry in (attack, strategy):
        require_applies(entry, model)
    spec = {"name": attack.name, **lab.settings(DATA_ATTACKS, attack, model)}
    metrics, folder = lab.run(
        f"matrix-{attack.name}-{strategy.name}-{model}", model, attack=spec,
        tuning={"name": strategy.name, **lab.settings(TUNING_STRATEGIES, strategy)},
        training={"epochs": 1, "max_length": 24}, train_size=120)
    assert 0.0 <= metrics["clean_accuracy"] <= 1.0
    assert 0.0 <= metrics["attack_success_rate"] <= 1.0
    poison = metrics["poison"]
    assert poison["poisoned"] == poison["requested"] > 0 and poison["trigger_misses"] == 0
    target = DATA_ATTACKS.spec(spec).config.target_label
    assert metrics["sizes"]["poisoned_test"] == sum(e.label != target for e in lab.test)
    from safetensors.torch import load_file
    saved = load_file(str(folder / "trained.safetensors"))
    assert saved and all(torch.isfinite(t).all() for t in saved.values())
