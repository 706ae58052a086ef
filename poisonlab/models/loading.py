"""Load a sequence classifier or a causal LM by builtin name, local folder or Hub id.

Safety: weights load only from safetensors unless `allow_pickle=True`, and then only through
torch's safe (weights_only) unpickler; a folder whose config maps to its own Python code
(`auto_map`) is refused unless `trust_remote_code=True`. `check_model_source` runs every check
that needs no weights, so pipelines can refuse a model before creating a run folder; loading runs
the same checks. Causal LMs get a pad token (their EOS) so batches can be padded."""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poisonlab.errors import PoisonlabError, UnsafeLoadError
from poisonlab.models.architecture import model_kind
from poisonlab.models.builtin import BUILTIN_MODELS


@dataclass
class LoadedModel:
    """A model with its tokenizer; `kind` is "encoder" or "causal"."""

    model: torch.nn.Module
    tokenizer: Any
    kind: str
    name: str


# The files in which transformers looks for `auto_map` (custom classes in the model folder).
CODE_MAP_FILES = ("config.json", "tokenizer_config.json")
PICKLE_PATTERNS = ("*.bin", "*.pt")


def check_model_source(name: str, *, allow_pickle: bool = False,
                       trust_remote_code: bool = False) -> None:
    """Raise the error loading `name` would raise, as far as it is known without loading weights.

    Checks: a builtin name is known; a local path is a folder with a config.json and weights;
    pickle-only weights need `allow_pickle`; custom code (`auto_map`) needs `trust_remote_code`;
    anything else must look like a Hub id (org/model). Builtin models are shipped with poisonlab
    and trusted; a Hub id is checked by transformers when it loads."""
    if name in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name]
        if builtin.folder is None and builtin.tiny_config is None:
            raise PoisonlabError(f"builtin model '{name}' has no pretrained folder")
        return
    folder = Path(name)
    if not folder.exists():
        if _looks_like_hub_id(name):
            return
        valid = ", ".join(BUILTIN_MODELS)
        raise PoisonlabError(f"model '{name}' is neither a builtin name ({valid}), "
                             "an existing folder, nor a Hub id like org/model")
    if not folder.is_dir():
        raise PoisonlabError(f"model path {folder} is not a folder")
    _refuse_custom_code(folder, trust_remote_code)
    _check_local_weights(folder, allow_pickle)
    if not (folder / "config.json").is_file():
        raise PoisonlabError(f"{folder} has no config.json; save the model with save_pretrained")


def _resolve_folder(name: str) -> tuple[str, str | None]:
    """Return (path or hub id, builtin kind or None)."""
    if name in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name]
        if builtin.folder is None:
            raise PoisonlabError(f"builtin model '{name}' has no pretrained folder")
        return str(builtin.folder()), builtin.kind
    return name, None


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonlabError(f"{path}: not valid JSON ({exc})") from None


def _refuse_custom_code(folder: Path, trust_remote_code: bool) -> None:
    """Refuse a local folder whose configs name classes in its own Python files.

    transformers would import those files (arbitrary code) under trust_remote_code, and without
    it raises a multi-line ValueError or prompts; either way the decision belongs here."""
    if trust_remote_code:
        return
    for file_name in CODE_MAP_FILES:
        path = folder / file_name
        if path.is_file():
            config = _read_json(path)
            if isinstance(config, dict) and config.get("auto_map"):
                raise _custom_code_error(folder, file_name)


def _custom_code_error(source: str | Path, file_name: str = "config.json") -> UnsafeLoadError:
    return UnsafeLoadError(
        f"{source}: the model ships its own code (auto_map in {file_name}), which would run on "
        "load; pass --trust-remote-code only if you trust its author")


def _is_remote_code_refusal(exc: ValueError) -> bool:
    """transformers' refusal of custom code without trust_remote_code (Hub ids reach it)."""
    return "trust_remote_code" in str(exc)


def _check_local_weights(folder: Path, allow_pickle: bool) -> None:
    if any(folder.glob("*.safetensors")):
        return
    if any(any(folder.glob(pattern)) for pattern in PICKLE_PATTERNS):
        if not allow_pickle:
            raise UnsafeLoadError(
                f"{folder} holds only pickle weights (.bin/.pt), which can run code on load; "
                "convert them to safetensors or pass allow_pickle=True (--allow-pickle)")
        return
    raise PoisonlabError(f"{folder} holds no model weights (*.safetensors)")


def _refused_pickle_error(source: str, exc: pickle.UnpicklingError) -> UnsafeLoadError:
    """One line for torch's weights_only refusal, naming the pickle file when there is one.

    torch's message is a multi-line essay; its reason follows "WeightsUnpickler error:"."""
    folder = Path(source)
    pickles = [p for pattern in PICKLE_PATTERNS for p in sorted(folder.glob(pattern))]
    where = pickles[0] if folder.is_dir() and len(pickles) == 1 else source
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    _, marker, after = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (after if marker else message).splitlines() if line.strip()]
    reason = lines[0].split(". ")[0].rstrip(".") if lines else "no reason given"
    return UnsafeLoadError(f"{where}: torch's safe loader refused this pickle ({reason}); "
                           "it may try to run code")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_tokenizer(name: str, *, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a builtin model, local folder or Hub id, with a pad token."""
    from transformers import AutoTokenizer
    if name in BUILTIN_MODELS and BUILTIN_MODELS[name].tokenizer_from:
        name = BUILTIN_MODELS[name].tokenizer_from
    if name not in BUILTIN_MODELS:
        folder = Path(name)
        if folder.is_dir():
            _refuse_custom_code(folder, trust_remote_code)
        elif folder.exists() or not _looks_like_hub_id(name):
            check_model_source(name)  # raises the "not a folder" / "neither ..." error
    path, _ = _resolve_folder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if _is_remote_code_refusal(exc):
            raise _custom_code_error(name, "tokenizer_config.json") from None
        raise PoisonlabError(f"cannot load the tokenizer of model '{name}': {_one_line(exc)}") \
            from None
    except OSError as exc:
        raise PoisonlabError(f"cannot load the tokenizer of model '{name}': {_one_line(exc)}") \
            from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _load(name: str, auto_class: Any, *, allow_pickle: bool, trust_remote_code: bool,
          seed: int, **kwargs: Any) -> LoadedModel:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    check_model_source(name, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
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
    try:
        torch.manual_seed(seed)  # the fresh task head is random: seed it
        model = auto_class.from_pretrained(path, use_safetensors=not allow_pickle or None,
                                           trust_remote_code=trust_remote_code, **kwargs)
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a global
        raise _refused_pickle_error(path, exc) from None
    except ValueError as exc:
        if _is_remote_code_refusal(exc):
            raise _custom_code_error(name) from None
        raise
    except OSError as exc:
        raise PoisonlabError(f"cannot load model '{name}': {_one_line(exc)}") from None
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model.eval(), tokenizer, kind or model_kind(model.config), name)


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
