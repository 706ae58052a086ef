"""Builtin model names: the embedded real models and tiny random ones for tests.

| name           | what                                              | kind    |
| -------------- | ------------------------------------------------- | ------- |
| minilm         | all-MiniLM-L6-v2 (6-layer BERT, 22.7M)            | encoder |
| smollm2-135m   | SmolLM2-135M-Instruct (Llama), GGUF -> safetensors | causal  |
| tiny-bert      | random 2-layer BERT, hidden 32, MiniLM vocabulary  | encoder |
| tiny-llama     | random 2-layer Llama, hidden 32, SmolLM2 vocabulary | causal  |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from poisonlab.models.assets import minilm_dir, smollm2_gguf
from poisonlab.models.gguf_cache import converted_gguf


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    kind: str  # "encoder" | "causal"
    description: str
    folder: Callable[[], Path] | None = None          # pretrained weights
    tiny_config: Callable[[int], object] | None = None  # random init: vocab_size -> config
    tokenizer_from: str | None = None                  # builtin whose tokenizer a tiny model borrows


def _tiny_bert_config(vocab_size: int):
    from transformers import BertConfig
    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)


def _tiny_llama_config(vocab_size: int):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                       max_position_embeddings=1024, tie_word_embeddings=True)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m for m in [
        BuiltinModel("minilm", "encoder", "all-MiniLM-L6-v2, 6-layer BERT encoder (22.7M)",
                     folder=minilm_dir),
        BuiltinModel("smollm2-135m", "causal", "SmolLM2-135M-Instruct, Llama causal LM (135M)",
                     folder=lambda: converted_gguf(smollm2_gguf(), "smollm2-135m")),
        BuiltinModel("tiny-bert", "encoder", "random 2-layer BERT (hidden 32) for tests",
                     tiny_config=_tiny_bert_config, tokenizer_from="minilm"),
        BuiltinModel("tiny-llama", "causal", "random 2-layer Llama (hidden 32) for tests",
                     tiny_config=_tiny_llama_config, tokenizer_from="smollm2-135m"),
    ]
}
