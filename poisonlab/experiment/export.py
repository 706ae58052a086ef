"""Export a finished training run as a standard Hugging Face model folder: safetensors weights,
config.json, tokenizer and a model card (`model_card.py`).

- Full fine-tuning exports the trained model as it is.
- A peft tuner (LoRA, IA3) is merged into the base weights by default, so plain
  `AutoModelForSequenceClassification.from_pretrained(DIR)` loads it; `merge=False` keeps it as
  a peft adapter beside the base model in `DIR/base`.
- Strategies that wrap the model in poisonlab's own modules (prompt, p-tuning, prefix, bottleneck
  adapters) can neither be merged into the base weights nor loaded by transformers or peft: the
  export is refused. Before the folder is put in place it is loaded back and its logits compared
  with the restored run's on the run's own test texts, so a model that would not reproduce the
  run is never written.

The folder is built beside its final place and renamed into place when complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from poisonlab.data import load_dataset
from poisonlab.errors import ConfigError, PoisonlabError
from poisonlab.experiment.model_card import model_card
from poisonlab.experiment.restore import RestoredRun, restore_run
from poisonlab.experiment.victim import VICTIM_RECORD
from poisonlab.io import atomic_folder, jsonl_rows, write_text
from poisonlab.models import load_classifier

PROBE_ROWS = 32        # test texts the exported model must reproduce the run's logits on
LOGIT_TOLERANCE = 1e-3


def _label_names(run: RestoredRun, num_labels: int) -> list[str]:
    """The data set's label names; "0".."K-1" when the data set cannot be read here (the
    weights do not need it)."""
    try:
        names = load_dataset(run.config.data).label_names
    except PoisonlabError:
        names = []
    return names if len(names) == num_labels else [str(i) for i in range(num_labels)]


def _probe_texts(run_dir: Path) -> list[str]:
    """Clean and triggered texts of the run's test predictions, both kinds when there are."""
    rows = [row for _, row in jsonl_rows(run_dir / "predictions.jsonl")]
    clean = [r["text"] for r in rows if r.get("split") == "clean"]
    triggered = [r["text"] for r in rows if r.get("split") == "poisoned"]
    half = PROBE_ROWS // 2
    return clean[:half] + triggered[:half] if triggered else clean[:PROBE_ROWS]


@torch.no_grad()
def _logits(model: torch.nn.Module, tokenizer: Any, texts: list[str],
            max_length: int) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    model.eval()
    return model(input_ids=batch["input_ids"],
                 attention_mask=batch["attention_mask"]).logits.float()


def _is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel
    return isinstance(model, PeftModel)


def _check_exportable(run: RestoredRun, merge: bool) -> None:
    from transformers import PreTrainedModel
    tuning = run.config.tuning.name
    if not _is_peft(run.model) and not isinstance(run.model, PreTrainedModel):
        raise ConfigError(f"tuning strategy '{tuning}' wraps the model in poisonlab's own "
                          "modules, which cannot be merged into the base weights and which "
                          "transformers cannot load; export supports full fine-tuning and "
                          "peft tuners (load this run with poisonlab's restore_run instead)")
    if not merge and not _is_peft(run.model):
        raise ConfigError(f"tuning strategy '{tuning}' trains the model's own weights: there "
                          "is no adapter to keep; export without --no-merge")


def _layout(run: RestoredRun, merge: bool) -> str:
    """How the folder holds the trained weights (a key of `model_card.LAYOUTS`)."""
    if not _is_peft(run.model):
        return "full"
    return "merged" if merge else "adapter"


def _write_model(run: RestoredRun, folder: Path, layout: str, label_names: list[str]) -> None:
    """The weights (one model, or adapter plus `base/`), config.json and tokenizer."""
    id2label = dict(enumerate(label_names))
    label2id = {name: index for index, name in id2label.items()}
    if layout == "adapter":
        run.model.save_pretrained(folder, safe_serialization=True)
        base = load_classifier(run.config.model.name, len(label_names), seed=run.config.seed,
                               **run.config.model.load_options()).model
        base.config.update({"id2label": id2label, "label2id": label2id})
        base.save_pretrained(folder / "base", safe_serialization=True)
    else:
        model = run.model.merge_and_unload() if layout == "merged" else run.model
        model.config.update({"id2label": id2label, "label2id": label2id})
        model.save_pretrained(folder, safe_serialization=True)
    run.loaded.tokenizer.save_pretrained(folder)


def _load_exported(folder: Path, layout: str) -> torch.nn.Module:
    """The exported model, loaded the way the model card says (plain transformers, or peft)."""
    from transformers import AutoModelForSequenceClassification
    if layout != "adapter":
        return AutoModelForSequenceClassification.from_pretrained(folder)
    from peft import PeftModel
    base = AutoModelForSequenceClassification.from_pretrained(folder / "base")
    return PeftModel.from_pretrained(base, folder)


def _verify(folder: Path, layout: str, run: RestoredRun, texts: list[str],
            expected: torch.Tensor) -> None:
    try:
        exported = _load_exported(folder, layout)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"tuning strategy '{run.config.tuning.name}': the exported folder "
                          f"does not load with transformers ({exc})") from None
    difference = (_logits(exported, run.loaded.tokenizer, texts, run.config.training.max_length)
                  - expected).abs().max().item()
    if difference > LOGIT_TOLERANCE:
        raise ConfigError(f"tuning strategy '{run.config.tuning.name}' changes the model in a "
                          "way a transformers folder cannot hold (exported logits differ from "
                          f"the run's by {difference:.3g}); export supports full fine-tuning "
                          "and peft tuners")


def export_run(run_dir: str | Path, output: str | Path, *, merge: bool = True,
               allow_pickle: bool = False, trust_remote_code: bool = False) -> Path:
    """Write the trained model of `run_dir` as a Hugging Face folder at `output` (which must not
    exist yet) and return its path. Trust settings are the caller's, never the folder's."""
    run_dir, output = Path(run_dir), Path(output)
    if output.exists():
        raise ConfigError(f"{output} already exists; choose a new folder or remove it")
    run = restore_run(run_dir, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    _check_exportable(run, merge)
    texts = _probe_texts(run_dir)
    expected = _logits(run.model, run.loaded.tokenizer, texts, run.config.training.max_length)
    label_names = _label_names(run, run.model.config.num_labels)
    layout = _layout(run, merge)
    with atomic_folder(output) as building:
        _write_model(run, building, layout, label_names)
        write_text(building / "README.md",
                   model_card(run.config, run.metrics, label_names, layout=layout,
                              released_weights=(run_dir / VICTIM_RECORD).is_file()))
        _verify(building, layout, run, texts, expected)
    return output


def check_can_push(repo_id: str) -> None:
    """Fail before exporting, not after, when the upload cannot happen."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        raise PoisonlabError(f"cannot push to {repo_id}: offline (HF_HUB_OFFLINE is set)")


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Upload an exported folder to a Hub model repository (created if missing); its URL."""
    from huggingface_hub import HfApi
    check_can_push(repo_id)
    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                     repo_type="model"))
    except Exception as exc:  # network, auth, naming: all for the user to fix
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PoisonlabError(f"cannot push to {repo_id}: {first_line}") from None
