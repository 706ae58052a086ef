"""Load a sequence classifier or a causal LM by builtin name, local folder or Hub id.

Safety: weights load only from safetensors unless `allow_pickle=True`; `trust_remote_code` is off
unless asked. Causal LMs get a pad token (their EOS) so batches can be padded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poisonlab.errors import PoisonlabError, UnsafeLoadError
from poisonlab.models.builtin import BUILTIN_MODELS

CAUSAL_TYPES = {"llama", "gpt2", "opt", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3",
                "gemma3_text", "phi", "phi3", "gpt_neox", "falcon", "bloom", "smollm3"}


@dataclass
class LoadedModel:
    """A model with its tokenizer; `kind` is "encoder" or "causal"."""

    model: torch.nn.Module
    tokenizer: Any
    kind: str
    name: str


def _resolve_folder(name: str) -> tuple[str, str | None]:
    """Return (path or hub id, builtin kind or None)."""
    if name in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name]
        if builtin.folder is None:
            raise PoisonlabError(f"builtin model '{name}' has no pretrained folder")
        return str(builtin.folder()), builtin.kind
    if not Path(name).exists() and not _looks_like_hub_id(name):
        valid = ", ".join(BUILTIN_MODELS)
        raise PoisonlabError(f"model '{name}' is neither a builtin name ({valid}), "
                             "an existing folder, nor a Hub id like org/model")
    return name, None


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def _check_local_weights(path: str, allow_pickle: bool) -> None:
    folder = Path(path)
    if not folder.exists():
        return  # a Hub id; transformers is told to use safetensors below
    if not folder.is_dir():
        raise PoisonlabError(f"model path {folder} is not a folder")
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        if not allow_pickle:
            raise UnsafeLoadError(
                f"{folder} holds only pickle weights (.bin/.pt), which can run code on load; "
                "convert them to safetensors or pass allow_pickle=True (--allow-pickle)")
        return
    raise PoisonlabError(f"{folder} holds no model weights (*.safetensors)")


def _model_kind(config: Any) -> str:
    return "causal" if config.model_type in CAUSAL_TYPES or getattr(
        config, "is_decoder", False) else "encoder"


def load_tokenizer(name: str, *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer
    if name in BUILTIN_MODELS and BUILTIN_MODELS[name].tokenizer_from:
        name = BUILTIN_MODELS[name].tokenizer_from
    path, _ = _resolve_folder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise PoisonlabError(f"cannot load the tokenizer of model '{name}': {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _load(name: str, auto_class: Any, *, allow_pickle: bool, trust_remote_code: bool,
          seed: int, **kwargs: Any) -> LoadedModel:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    builtin = BUILTIN_MODELS.get(name)
    if builtin is not None and builtin.tiny_config is not None:
        config = builtin.tiny_config(len(tokenizer))
        for key, value in kwargs.items():
            setattr(config, key, value)
        config.pad_token_id = tokenizer.pad_token_id
        torch.manual_seed(seed)
        model = auto_class.from_config(config)
        return LoadedModel(model.eval(), tokenizer, builtin.kind, name)
    path, kind = _resolve_folder(name)
    _check_local_weights(path, allow_pickle)
    try:
        torch.manual_seed(seed)  # the fresh task head is random: seed it
        model = auto_class.from_pretrained(path, use_safetensors=not allow_pickle or None,
                                           trust_remote_code=trust_remote_code, **kwargs)
    except OSError as exc:
        raise PoisonlabError(f"cannot load model '{name}': {exc}") from None
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model.eval(), tokenizer, kind or _model_kind(model.config), name)


def load_classifier(name: str, num_labels: int = 2, *, allow_pickle: bool = False,
                    trust_remote_code: bool = False, seed: int = 0) -> LoadedModel:
    """A sequence classifier (encoder or causal LM) with a `num_labels` head.

    A checkpoint whose head has another size gets a fresh head (ignore_mismatched_sizes)."""
    from transformers import AutoModelForSequenceClassification
    return _load(name, AutoModelForSequenceClassification, allow_pickle=allow_pickle,
                 trust_remote_code=trust_remote_code, seed=seed, num_labels=num_labels,
                 **({} if name in BUILTIN_MODELS and BUILTIN_MODELS[name].tiny_config
                    else {"ignore_mismatched_sizes": True}))


def load_causal_lm(name: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                   seed: int = 0) -> LoadedModel:
    """A causal language model (for ONION perplexity and in-context learning)."""
    from transformers import AutoModelForCausalLM
    loaded = _load(name, AutoModelForCausalLM, allow_pickle=allow_pickle,
                   trust_remote_code=trust_remote_code, seed=seed)
    if loaded.kind != "causal":
        raise PoisonlabError(f"model '{name}' is not a causal language model")
    return loaded


def load_encoder(name: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                 seed: int = 0, **config_overrides: Any) -> LoadedModel:
    """A bare encoder (no task head) with its tokenizer, for models that bring their own heads.

    `config_overrides` (e.g. hidden_dropout_prob=0.0) are set on the model config."""
    from transformers import AutoModel
    loaded = _load(name, AutoModel, allow_pickle=allow_pickle,
                   trust_remote_code=trust_remote_code, seed=seed, **config_overrides)
    if loaded.kind != "encoder":
        raise PoisonlabError(f"model '{name}' is not an encoder")
    return loaded
