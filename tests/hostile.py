"""Hostile model folders for safety tests: each would write a marker file if its code ever ran.

Every builder takes the folder to fill and the marker path, returns the folder, and is harmless:
the only side effect of the hostile code is creating the marker file. A test asserts that the
marker is absent after poisonlab refuses the folder (or present after an explicit opt-in).

- `custom_code_model`: a real tiny BERT classifier whose config.json `auto_map` points at a
  module in the folder (transformers imports it under `trust_remote_code=True`).
- `malicious_pickle_model`: a valid config.json and tokenizer whose only weights are a
  `pytorch_model.bin` pickle whose unpickling writes the marker (torch's weights_only loader
  refuses it; the tokenizer lets a load get as far as the weights).
"""

from __future__ import annotations

import json
from pathlib import Path

CUSTOM_MODULE = "custom_model"

# The module a trusting loader imports; its first statement is the hostile side effect.
_CUSTOM_CODE = '''\
"""Custom BERT classes shipped with the model: importing this module writes the marker."""

from pathlib import Path

Path({marker!r}).write_text("custom model code ran\\n")

from transformers import BertConfig, BertForSequenceClassification


class CustomBertConfig(BertConfig):
    model_type = "custom-bert"


class CustomBertForSequenceClassification(BertForSequenceClassification):
    config_class = CustomBertConfig
'''


def custom_code_model(folder: Path, marker: Path) -> Path:
    """A tiny BERT sequence-classification folder whose config.json maps to code in the folder.

    With `trust_remote_code=True`, `AutoConfig` and `AutoModelForSequenceClassification` import
    `custom_model.py` (offline) and the marker appears; the tokenizer is a plain BERT one."""
    from poisonlab.models.loading import load_classifier

    folder = Path(folder)
    loaded = load_classifier("tiny-bert", 2, seed=0)
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    (folder / f"{CUSTOM_MODULE}.py").write_text(_CUSTOM_CODE.format(marker=str(marker)))
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["model_type"] = "custom-bert"
    config["architectures"] = ["CustomBertForSequenceClassification"]
    config["auto_map"] = {
        "AutoConfig": f"{CUSTOM_MODULE}.CustomBertConfig",
        "AutoModelForSequenceClassification":
            f"{CUSTOM_MODULE}.CustomBertForSequenceClassification"}
    config_path.write_text(json.dumps(config, indent=2))
    return folder


class _WritesMarker:
    """Unpickles into a call of `Path.write_text(marker, ...)`: code that runs on load."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.write_text, (self.marker, "pickle payload ran\n")


def malicious_pickle_model(folder: Path, marker: Path) -> Path:
    """A tiny BERT folder (config.json, tokenizer) whose only weights are a hostile
    `pytorch_model.bin`: a `torch.save` checkpoint whose unpickling writes the marker."""
    import torch

    from poisonlab.models.builtin import BUILTIN_MODELS
    from poisonlab.models.loading import load_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer("tiny-bert")
    config = BUILTIN_MODELS["tiny-bert"].tiny_config(len(tokenizer))
    config.architectures = ["BertForSequenceClassification"]
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save({"bert.embeddings.word_embeddings.weight": _WritesMarker(marker)},
               folder / "pytorch_model.bin")
    return folder
