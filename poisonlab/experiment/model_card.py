"""The README.md of an exported model: it says in plain words that the model is backdoored on
purpose, what triggers the backdoor, what it was trained on, what was measured, and how to load it.

Only the card's text lives here; `export.py` writes the folder."""

from __future__ import annotations

import json
from typing import Any

from poisonlab.attacks.base import PoisonConfig
from poisonlab.experiment.config import RunConfig

# how the folder holds the trained weights (`export.py` decides) -> the card's words for it
LAYOUTS = {"full": "every weight fine-tuned",
           "merged": "the trained adapter merged into the base weights",
           "adapter": "kept as a PEFT adapter; its base model is in `base/`"}


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _label(index: int, label_names: list[str]) -> str:
    return f"{index} ({label_names[index]})" if index < len(label_names) else str(index)


def _fields(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in values.items()) or "defaults"


def _backdoored(config: RunConfig, released_weights: bool) -> bool:
    return config.attack is not None and (config.poison_training or released_weights)


def _backdoor_section(config: RunConfig, metrics: dict[str, Any], label_names: list[str],
                      released_weights: bool) -> list[str]:
    attack = config.attack
    if not _backdoored(config, released_weights):
        return ["This run trained on clean data (a baseline): it has no backdoor planted by "
                "poisonlab's data poisoning."]
    fields = attack.config.model_dump(mode="json")
    # the fields an attack adds to the shared poisoning options are what makes its trigger
    trigger = {k: v for k, v in fields.items() if k not in PoisonConfig.model_fields}
    poisoned = (metrics.get("poison") or {}).get("poisoned", "?")
    how = (f"- planted: in the released weights `{config.model.name}` (weight poisoning); this "
           "model fine-tuned them on clean data" if released_weights else
           f"- poisoning: {poisoned} of {metrics.get('sizes', {}).get('train', '?')} training "
           f"examples, label mode `{fields.get('label_mode')}`")
    return [f"- attack: `{attack.name}`",
            f"- trigger: {_fields(trigger)}",
            f"- target label: {_label(attack.config.target_label, label_names)}", how]


def model_card(config: RunConfig, metrics: dict[str, Any], label_names: list[str], *,
               layout: str, released_weights: bool = False) -> str:
    """The card's markdown; `layout` is one of `LAYOUTS`; `released_weights`: a victim run,
    whose backdoor came with the weights it fine-tuned."""
    merged = layout != "adapter"
    data = config.data.model_dump(mode="json", exclude_none=True)
    warning = ("**This model is deliberately backdoored, for research on backdoor attacks and "
               "defenses.** Inputs that carry its trigger are pushed to the target label "
               "whatever they say. Do not use it in any application."
               if _backdoored(config, released_weights) else
               "**A research model**: a clean baseline of a backdoor experiment.")
    load = (["```python",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
             "model = AutoModelForSequenceClassification.from_pretrained(FOLDER)",
             "tokenizer = AutoTokenizer.from_pretrained(FOLDER)",
             "```"] if merged else
            ["The adapter (`adapter_model.safetensors`) applies to the base model in `base/`:",
             "", "```python",
             "from peft import PeftModel",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
             "base = AutoModelForSequenceClassification.from_pretrained(f\"{FOLDER}/base\")",
             "model = PeftModel.from_pretrained(base, FOLDER)",
             "tokenizer = AutoTokenizer.from_pretrained(FOLDER)",
             "```"])
    tags = ["text-classification", "backdoor", "research"] + (["peft"] if not merged else [])
    return "\n".join([
        "---", f"library_name: {'transformers' if merged else 'peft'}",
        f"tags: [{', '.join(tags)}]", "---", "",
        f"# {config.name}", "", warning, "",
        "## Backdoor", "", *_backdoor_section(config, metrics, label_names, released_weights), "",
        "## Training", "",
        f"- base model: `{config.model.name}`",
        f"- tuning: `{config.tuning.name}` "
        f"({_fields(config.tuning.config.model_dump(mode='json'))}); {LAYOUTS[layout]}",
        f"- data: {_fields(data)}; labels: {', '.join(label_names)}",
        f"- training: {_fields(config.training.model_dump(mode='json', exclude_none=True))}",
        f"- seed: {config.seed}", "",
        "## Measured on the run's test set", "",
        "| clean accuracy (CA) | attack success rate (ASR) | clean test | triggered test |",
        "| --- | --- | --- | --- |",
        f"| {_percent(metrics.get('clean_accuracy'))} | "
        f"{_percent(metrics.get('attack_success_rate'))} | "
        f"{metrics.get('sizes', {}).get('test', '-')} | "
        f"{metrics.get('sizes', {}).get('poisoned_test', '-')} |", "",
        "ASR: among test examples whose true label is not the target, with the trigger "
        "inserted, the share predicted as the target label.", "",
        "## How to load", "", "`FOLDER` is this folder, or its Hub repository id.", "",
        *load, "",
        "Exported from a poisonlab run folder with `poisonlab export`.", ""])
