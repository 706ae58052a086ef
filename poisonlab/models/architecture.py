"""Everything poisonlab knows about model architectures, in one place.

- kind: `is_causal(config)` / `model_kind(config)`: decoder-only causal LM or not (an encoder, or an
  encoder-decoder), from transformers' own auto mappings plus a small override table;
- inside a transformer block: `BlockLayout` names the modules each component needs
  (`ffn_block_output`, `ffn_activation_consumer`, `attention_output`), per architecture family;
- lookups in a loaded model: `transformer_layers`, `layer_submodule`, `attention_modules`,
  `task_head` / `has_task_head` / `freeze_all_but_head` / `freeze_base`, `input_embeddings`.

Not here: loading (models/loading.py) and anything that trains or changes weights."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from poisonlab.errors import PoisonlabError

# The task-head attribute of HF sequence classifiers (BERT-like: classifier, Llama-like: score);
# the same names peft's SEQ_CLS task keeps trainable as modules_to_save.
HEAD_NAMES = ("classifier", "score")

# model_type -> kind, where transformers' mappings would decide wrongly. Both types have a causal
# LM class (XLNetLMHeadModel, BertGenerationDecoder) but their classifiers and encoders are not
# decoder-only: XLNet attends both ways (two-stream), BertGeneration is BERT unless is_decoder.
KIND_OVERRIDES = {"xlnet": "encoder", "bert-generation": "encoder"}


# ---------------------------------------------------------------------------------------- kind

@functools.cache
def _auto_model_types() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Model types from transformers' mappings: (causal LM, masked or seq2seq LM, every known)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto import modeling_auto as auto
    return (frozenset(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
            frozenset(auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES) |
            frozenset(auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES),
            frozenset(CONFIG_MAPPING_NAMES))


def text_model_type(config: Any) -> str:
    """The model_type of the text part (a multimodal config's text config, else the config)."""
    get_text_config = getattr(config, "get_text_config", None)
    text = get_text_config() if callable(get_text_config) else config
    return getattr(text, "model_type", None) or getattr(config, "model_type", "")


def is_causal(config: Any) -> bool:
    """Whether a model with this config is a decoder-only causal LM (pools its last real token).

    In order: `is_decoder` set -> causal (a BERT built as a decoder); `is_encoder_decoder` -> not;
    `KIND_OVERRIDES`; a type transformers knows is causal when it has a causal-LM class and
    neither a masked-LM nor a seq2seq-LM class (bert, roberta, bart also have a causal-LM head
    variant, for use as a decoder); a type transformers does not know (remote code) is causal
    when its `architectures` name a `*ForCausalLM` class."""
    if getattr(config, "is_decoder", False):
        return True
    if getattr(config, "is_encoder_decoder", False):
        return False
    model_type = text_model_type(config)
    if model_type in KIND_OVERRIDES:
        return KIND_OVERRIDES[model_type] == "causal"
    causal_lm, masked_or_seq2seq, known = _auto_model_types()
    if model_type in known:
        return model_type in causal_lm and model_type not in masked_or_seq2seq
    return any(str(name).endswith("ForCausalLM")
               for name in getattr(config, "architectures", None) or ())


def model_kind(config: Any) -> str:
    """The `kind` of a LoadedModel: "causal" or "encoder" (see `is_causal`)."""
    return "causal" if is_causal(config) else "encoder"


# ------------------------------------------------------------------ inside a transformer block

@dataclass(frozen=True)
class BlockLayout:
    """Module paths inside one transformer block of an architecture family ("" = none).

    `ffn_block_output`: the feed-forward sublayer whose output (before the residual add) an
    adapter transforms. `ffn_activation_consumer`: the linear layer whose INPUT is the FFN's
    intermediate activation (fine-pruning reads that input and zeroes its columns); MoE blocks have
    none (their experts are fused 3-D weights). `attention_output`: the attention output projection.
    They differ on purpose: Llama's adapter wraps `mlp` (saved adapters are named after it) while
    its intermediate activation enters `mlp.down_proj`."""

    ffn_block_output: str
    ffn_activation_consumer: str
    attention_output: str


BERT_LAYOUT = BlockLayout("output.dense", "output.dense", "attention.output.dense")
LLAMA_LAYOUT = BlockLayout("mlp", "mlp.down_proj", "self_attn.o_proj")
MOE_LAYOUT = BlockLayout("mlp", "", "self_attn.o_proj")

BLOCK_LAYOUTS: dict[str, BlockLayout] = {
    **dict.fromkeys(["bert", "roberta", "xlm-roberta", "camembert", "electra", "data2vec-text",
                     "ernie", "deberta", "deberta-v2"], BERT_LAYOUT),
    **dict.fromkeys(["llama", "mistral", "ministral", "qwen2", "qwen3", "gemma", "gemma2",
                     "gemma3_text", "olmo", "olmo2", "olmo3", "granite", "smollm3", "stablelm",
                     "cohere", "helium", "exaone4", "phi3"], LLAMA_LAYOUT),
    **dict.fromkeys(["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "phimoe", "gpt_oss"],
                    MOE_LAYOUT),
    "granitemoe": BlockLayout("block_sparse_moe", "", "self_attn.o_proj"),
    "distilbert": BlockLayout("ffn.lin2", "ffn.lin2", "attention.out_lin"),
    "opt": BlockLayout("fc2", "fc2", "self_attn.out_proj"),
    "phi": BlockLayout("mlp", "mlp.fc2", "self_attn.dense"),
    "starcoder2": BlockLayout("mlp", "mlp.c_proj", "self_attn.o_proj"),
    "gpt_neox": BlockLayout("mlp", "mlp.dense_4h_to_h", "attention.dense"),
    "gptj": BlockLayout("mlp", "mlp.fc_out", "attn.out_proj"),
    # GPT-2's projections are Conv1D (weight stored in x out): no column-prunable Linear.
    "gpt2": BlockLayout("mlp", "", "attn.c_proj"),
}
UNKNOWN_LAYOUT = BlockLayout("", "", "")


def block_layout(config_or_type: Any) -> BlockLayout:
    """The layout of a config's (or model_type's) blocks; all "" for an unknown architecture,
    which `layer_submodule` turns into an error naming the config field to set."""
    model_type = (config_or_type if isinstance(config_or_type, str)
                  else text_model_type(config_or_type))
    return BLOCK_LAYOUTS.get(model_type, UNKNOWN_LAYOUT)


def ffn_block_output(config_or_type: Any) -> str:
    """Path of the FFN sublayer whose output an adapter transforms ("" if unknown)."""
    return block_layout(config_or_type).ffn_block_output


def ffn_activation_consumer(config_or_type: Any) -> str:
    """Path of the linear layer whose input is the FFN's intermediate activation ("" if none)."""
    return block_layout(config_or_type).ffn_activation_consumer


def attention_output(config_or_type: Any) -> str:
    """Path of the attention output projection ("" if unknown)."""
    return block_layout(config_or_type).attention_output


# ---------------------------------------------------------------------- lookups in a model

def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks (BERT: encoder.layer, Llama: model.layers)."""
    count = model.config.get_text_config().num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise PoisonlabError(f"cannot find the {count} transformer layers of {type(model).__name__}")


def layer_submodule(layer: torch.nn.Module, path: str, field: str) -> torch.nn.Module:
    """A module inside one transformer block, with an error that names the config field to set.

    An empty path means the architecture has no default."""
    try:
        if path:
            return layer.get_submodule(path)
    except AttributeError:
        pass
    children = ", ".join(n for n, _ in layer.named_modules() if n) or "(none)"
    raise PoisonlabError(f"no module '{path}' in {type(layer).__name__}; set '{field}' to one "
                         f"of: {children}")


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention modules that call transformers' attention interface, in layer order."""
    found = [m for m in model.modules()
             if hasattr(m, "layer_idx") and hasattr(m, "is_causal") and hasattr(m, "scaling")]
    if len(found) != model.config.get_text_config().num_hidden_layers:
        raise PoisonlabError(f"found {len(found)} attention modules in {type(model).__name__}, "
                             "expected one per layer that uses transformers' attention interface")
    return sorted(found, key=lambda m: m.layer_idx)


def task_head(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """(attribute name, module) of a sequence classifier's task head."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return name, head
    raise PoisonlabError(f"{type(model).__name__} has no task head named one of {HEAD_NAMES}; "
                         "expected a sequence classifier")


def freeze_all_but_head(model: torch.nn.Module) -> None:
    """Freeze the base model; the task head always trains."""
    model.requires_grad_(False)
    head_found = False
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            head.requires_grad_(True)
            head_found = True
    if not head_found:
        raise PoisonlabError(f"{type(model).__name__} has no task head named one of {HEAD_NAMES}; "
                             "PEFT strategies expect a sequence classifier")


def has_task_head(model: torch.nn.Module) -> bool:
    """Whether the model is a sequence classifier (has a task head), not a language model."""
    return any(isinstance(getattr(model, name, None), torch.nn.Module) for name in HEAD_NAMES)


def freeze_base(model: torch.nn.Module) -> None:
    """Freeze the base model; a classifier's task head trains, a language model's vocabulary
    head stays frozen (instruction tuning with a PEFT strategy trains only what it adds)."""
    if has_task_head(model):
        freeze_all_but_head(model)
    else:
        model.requires_grad_(False)


def input_embeddings(model: torch.nn.Module) -> torch.nn.Embedding:
    """The token-embedding table the model reads its input_ids through."""
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        embeddings = None
    if not isinstance(embeddings, torch.nn.Embedding):
        raise PoisonlabError(f"{type(model).__name__} has no input token-embedding table "
                             "(get_input_embeddings)")
    return embeddings
