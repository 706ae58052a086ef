"""Load a sequence classifier or a causal LM by builtin name, local folder or Hub id.

Safety: weights load only from safetensors unless `allow_pickle=True`, and then only through
torch's safe (weights_only) unpickler; a folder whose config maps to its own Python code
(`auto_map`) is refused unless `trust_remote_code=True`. `check_model_source` runs every check
that needs no weights, so pipelines can refuse a model before creating a run folder; loading runs
the same checks. Causal LMs get a pad token (their EOS) so batches can be padded.

Loading options (the `model:` section of a run config): `dtype` (default float32, whatever the
checkpoint was saved in, so anything that trains keeps fp32 weights; `auto` keeps the
checkpoint's dtype, for inference-only jobs), `device_map` (transformers' placement, for
inference-only jobs), `attn_implementation`, and `quantization` (4bit/8bit through bitsandbytes,
an optional extra that needs a CUDA GPU). `check_trainable` refuses options a training job cannot
use; the loader cannot know whether its model will train, so pipelines call it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import torch
from pydantic import BeforeValidator

from poisonlab.errors import ConfigError, PoisonlabError, UnsafeLoadError
from poisonlab.models.architecture import HEAD_NAMES, model_kind
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

# The loading options; None means float32 for `dtype` and transformers' default for the others.
DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
AttnImplementation = Literal["eager", "sdpa", "flash_attention_2"]
QuantizationName = Literal["4bit", "8bit"]
DeviceMap = Union[str, int, dict[str, Union[int, str]]]
# transformers' placement strategies; any other string names one device ("cpu", "cuda:1").
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
QUANTIZATION_EXTRA = "pip install poisonlab[quantization]"


def invalid_device_map(device_map: Any) -> str | None:
    """Why `device_map` is not a valid device map (None when it is): a placement strategy, a
    device name or GPU index, or a mapping of module names ("" for all) to devices."""
    strategies = ", ".join(DEVICE_MAP_STRATEGIES)
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        return None
    if isinstance(device_map, dict):
        for module, device in device_map.items():
            if not isinstance(module, str):
                return f"module name {module!r} is not a string"
            if device != "disk":
                problem = _invalid_device(device)
                if problem:
                    return f"module '{module}': {problem}"
        return None
    problem = _invalid_device(device_map)
    return problem and f"{problem}; or one of the strategies {strategies}"


def _checked_device_map(value: Any) -> Any:
    problem = None if value is None else invalid_device_map(value)
    if problem:
        raise ValueError(problem)
    return value


# A config field holding a device map: validated when the config is (naming the field).
DeviceMapOption = Annotated[Union[DeviceMap, None], BeforeValidator(_checked_device_map)]


def _invalid_device(device: Any) -> str | None:
    if isinstance(device, bool) or not isinstance(device, (str, int)):
        return f"{device!r} is not a device name or GPU index"
    if isinstance(device, int):
        return None if device >= 0 else f"GPU index {device} is negative"
    try:
        torch.device(device)
    except RuntimeError:
        return f"'{device}' is not a device (e.g. cpu, cuda, cuda:1)"
    return None


def _devices(device_map: DeviceMap) -> list[torch.device]:
    """The devices a valid device map names (a strategy names none)."""
    values = device_map.values() if isinstance(device_map, dict) else [device_map]
    return [torch.device("cuda", value) if isinstance(value, int) else torch.device(value)
            for value in values if value not in DEVICE_MAP_STRATEGIES and value != "disk"]


def check_load_options(*, dtype: DtypeName | None = None, device_map: DeviceMap | None = None,
                       attn_implementation: AttnImplementation | None = None,
                       quantization: QuantizationName | None = None) -> None:
    """Raise the error these loading options would raise, without loading anything: a value
    outside its choices (naming the option), a device_map naming a device that is not here,
    quantization without bitsandbytes or without a CUDA device."""
    for option, value, choices in (("dtype", dtype, DtypeName),
                                   ("attn_implementation", attn_implementation,
                                    AttnImplementation),
                                   ("quantization", quantization, QuantizationName)):
        if value is not None and value not in get_args(choices):
            raise ConfigError(f"{option}: {value!r} is not one of "
                              f"{', '.join(get_args(choices))} (or null)")
    if device_map is not None:
        problem = invalid_device_map(device_map)
        if problem:
            raise ConfigError(f"device_map: {problem}")
        for device in _devices(device_map):
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ConfigError(f"device_map: names {device} but no CUDA device is available "
                                  "here; use device_map: null")
            if device.type == "mps" and not torch.backends.mps.is_available():
                raise ConfigError("device_map: names mps but MPS is not available here; use "
                                  "device_map: null")
    if quantization is not None:
        _check_bitsandbytes(quantization)
        if not torch.cuda.is_available():
            raise PoisonlabError(f"quantization: bitsandbytes {quantization} weights need a CUDA "
                                 "GPU and none is available here; use quantization: null")


def _check_bitsandbytes(quantization: str) -> None:
    from packaging.version import Version
    from transformers.utils.import_utils import BITSANDBYTES_MIN_VERSION
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PoisonlabError(f"quantization: {quantization} loading needs bitsandbytes, which is "
                             f"not installed: {QUANTIZATION_EXTRA}")
    installed = importlib.metadata.version("bitsandbytes")
    if Version(installed) < Version(BITSANDBYTES_MIN_VERSION):
        raise PoisonlabError(f"quantization: bitsandbytes {installed} is older than the "
                             f"{BITSANDBYTES_MIN_VERSION} transformers needs: pip install -U "
                             "poisonlab[quantization]")


def check_trainable(model_config: Any, strategy_name: str) -> None:
    """Refuse loading options a training job cannot use, before anything loads.

    `model_config` is anything with the loading options as attributes (the run config's `model:`
    section); `strategy_name` the tuning strategy's registered name. Refused: quantized weights
    with `full` fine-tuning (they cannot take gradients; 4bit with lora is QLoRA, fine);
    `dtype: auto` (it keeps a bf16 checkpoint in bf16, training with no fp32 master weights);
    a `device_map` (a training job's device is the runtime's)."""
    quantization = getattr(model_config, "quantization", None)
    if quantization is not None and strategy_name == "full":
        raise ConfigError(f"model.quantization: {quantization} weights cannot be fully "
                          "fine-tuned (tuning: full); use a PEFT strategy (e.g. tuning: lora, "
                          "which with 4bit is QLoRA) or quantization: null")
    if getattr(model_config, "dtype", None) == "auto":
        raise ConfigError("model.dtype: auto keeps the checkpoint's dtype and is for "
                          "inference-only jobs; a training job needs float32 (the default, "
                          "null) or an explicit bfloat16/float16")
    if getattr(model_config, "device_map", None) is not None:
        raise ConfigError("model.device_map is for inference-only jobs; a training job runs on "
                          "runtime.device: use device_map: null")


def prepare_quantized_for_training(model: torch.nn.Module) -> torch.nn.Module:
    """QLoRA's preparation of quantized weights before a PEFT strategy wraps them (peft's
    `prepare_model_for_kbit_training`): every weight frozen, the unquantized ones (norms,
    embeddings, the head) in fp32 so the adapters train against stable activations. Gradient
    checkpointing stays the runtime's (non-reentrant: frozen inputs need no gradient)."""
    from peft import prepare_model_for_kbit_training
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def check_model_source(name: str, *, allow_pickle: bool = False,
                       trust_remote_code: bool = False, dtype: DtypeName | None = "float32",
                       device_map: DeviceMap | None = None,
                       attn_implementation: AttnImplementation | None = None,
                       quantization: QuantizationName | None = None) -> None:
    """Raise the error loading `name` would raise, as far as it is known without loading weights.

    Checks: the loading options (`check_load_options`); a builtin name is known (a tiny random
    one cannot be quantized); a local path is a folder with a config.json and weights;
    pickle-only weights need `allow_pickle`; custom code (`auto_map`) needs `trust_remote_code`;
    anything else must look like a Hub id (org/model). Builtin models are shipped with poisonlab
    and trusted; a Hub id is checked by transformers when it loads."""
    check_load_options(dtype=dtype, device_map=device_map,
                       attn_implementation=attn_implementation, quantization=quantization)
    if name in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[name]
        if builtin.folder is None and builtin.tiny_config is None:
            raise PoisonlabError(f"builtin model '{name}' has no pretrained folder")
        if quantization is not None and builtin.tiny_config is not None:
            raise PoisonlabError(f"quantization: builtin model '{name}' is built at random from "
                                 "a config, with no pretrained weights to quantize; use "
                                 "quantization: null")
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


def _load(name: str, auto_class: Any, *, dtype: DtypeName | None,
          device_map: DeviceMap | None, attn_implementation: AttnImplementation | None,
          quantization: QuantizationName | None, allow_pickle: bool, trust_remote_code: bool,
          seed: int, skip_quantizing: list[str] | None = None,
          **config_overrides: Any) -> LoadedModel:
    """Load `name` with `auto_class`; `config_overrides` are set on the model config and
    `skip_quantizing` names modules kept unquantized besides transformers' defaults."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    check_model_source(name, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                       dtype=dtype, device_map=device_map,
                       attn_implementation=attn_implementation, quantization=quantization)
    tokenizer = load_tokenizer(name, trust_remote_code=trust_remote_code)
    builtin = BUILTIN_MODELS.get(name)
    if builtin is not None and builtin.tiny_config is not None:
        config = builtin.tiny_config(len(tokenizer))
        for key, value in config_overrides.items():
            setattr(config, key, value)
        config.pad_token_id = tokenizer.pad_token_id
        torch.manual_seed(seed)
        model = _attention_errors(name, attn_implementation, lambda: auto_class.from_config(
            config, **_given(attn_implementation=attn_implementation)))
        # Built in fp32 and cast, so a seed gives the same initial weights in every dtype.
        if dtype not in (None, "auto"):
            model = model.to(getattr(torch, dtype))
        if device_map is not None:
            model = _dispatch(model, device_map)
        return LoadedModel(model.eval(), tokenizer, builtin.kind, name)
    path, kind = _resolve_folder(name)
    options = _given(device_map=device_map, attn_implementation=attn_implementation)
    if quantization is not None:
        options["quantization_config"] = _bitsandbytes_config(quantization, dtype,
                                                               skip_quantizing)
    try:
        torch.manual_seed(seed)  # the fresh task head is random: seed it
        # transformers' own default is the checkpoint's dtype ("auto"): float32 is asked for.
        model = _attention_errors(name, attn_implementation, lambda: auto_class.from_pretrained(
            path, use_safetensors=not allow_pickle or None, trust_remote_code=trust_remote_code,
            dtype="auto" if dtype == "auto" else getattr(torch, dtype or "float32"),
            **options, **config_overrides))
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


def _given(**options: Any) -> dict[str, Any]:
    """The options that are set (None leaves transformers' default)."""
    return {key: value for key, value in options.items() if value is not None}


def _attention_errors(name: str, attn_implementation: str | None, build: Any) -> Any:
    """`build()`, with transformers' refusal of an attention implementation (flash-attn not
    installed, or not supported by the architecture) as one line."""
    try:
        return build()
    except (ImportError, ValueError) as exc:
        message = str(exc).lower()
        if attn_implementation is None or ("attn" not in message and "attention" not in message):
            raise
        raise PoisonlabError(f"attn_implementation: {attn_implementation} cannot be used for "
                             f"model '{name}': {_one_line(exc)}") from None


def _bitsandbytes_config(quantization: QuantizationName, dtype: DtypeName | None,
                         skip_modules: list[str] | None) -> Any:
    """QLoRA's recipe for 4bit (NF4, double quantisation), LLM.int8() for 8bit; the compute
    dtype is `dtype` (float32 when null or auto)."""
    from transformers import BitsAndBytesConfig
    compute_dtype = getattr(torch, "float32" if dtype in (None, "auto") else dtype)
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype,
                                  llm_int8_skip_modules=skip_modules)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)


def _dispatch(model: torch.nn.Module, device_map: DeviceMap) -> torch.nn.Module:
    """Place a model built from a config as from_pretrained would place a checkpoint."""
    from accelerate import dispatch_model, infer_auto_device_map
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        device_map = infer_auto_device_map(
            model, no_split_module_classes=getattr(model, "_no_split_modules", None))
    elif not isinstance(device_map, dict):
        device_map = {"": device_map}
    return dispatch_model(model, device_map=device_map)


def load_classifier(name: str, num_labels: int = 2, *, dtype: DtypeName | None = "float32",
                    device_map: DeviceMap | None = None,
                    attn_implementation: AttnImplementation | None = None,
                    quantization: QuantizationName | None = None, allow_pickle: bool = False,
                    trust_remote_code: bool = False, seed: int = 0) -> LoadedModel:
    """A sequence classifier (encoder or causal LM) with a `num_labels` head.

    A checkpoint whose head has another size gets a fresh head (ignore_mismatched_sizes); a
    quantized classifier keeps its head unquantized, so it can train. `dtype` None is float32."""
    from transformers import AutoModelForSequenceClassification
    tiny = name in BUILTIN_MODELS and BUILTIN_MODELS[name].tiny_config
    return _load(name, AutoModelForSequenceClassification, dtype=dtype, device_map=device_map,
                 attn_implementation=attn_implementation, quantization=quantization,
                 allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, seed=seed,
                 skip_quantizing=list(HEAD_NAMES), num_labels=num_labels,
                 **({} if tiny else {"ignore_mismatched_sizes": True}))


def load_causal_lm(name: str, *, dtype: DtypeName | None = "float32",
                   device_map: DeviceMap | None = None,
                   attn_implementation: AttnImplementation | None = None,
                   quantization: QuantizationName | None = None, allow_pickle: bool = False,
                   trust_remote_code: bool = False, seed: int = 0) -> LoadedModel:
    """A causal language model (for ONION perplexity and in-context learning)."""
    from transformers import AutoModelForCausalLM
    loaded = _load(name, AutoModelForCausalLM, dtype=dtype, device_map=device_map,
                   attn_implementation=attn_implementation, quantization=quantization,
                   allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, seed=seed)
    if loaded.kind != "causal":
        raise PoisonlabError(f"model '{name}' is not a causal language model")
    return loaded


def load_encoder(name: str, *, dtype: DtypeName | None = "float32",
                 device_map: DeviceMap | None = None,
                 attn_implementation: AttnImplementation | None = None,
                 quantization: QuantizationName | None = None, allow_pickle: bool = False,
                 trust_remote_code: bool = False, seed: int = 0,
                 **config_overrides: Any) -> LoadedModel:
    """A bare encoder (no task head) with its tokenizer, for models that bring their own heads.

    `config_overrides` (e.g. hidden_dropout_prob=0.0) are set on the model config."""
    from transformers import AutoModel
    loaded = _load(name, AutoModel, dtype=dtype, device_map=device_map,
                   attn_implementation=attn_implementation, quantization=quantization,
                   allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, seed=seed,
                   **config_overrides)
    if loaded.kind != "encoder":
        raise PoisonlabError(f"model '{name}' is not an encoder")
    return loaded
