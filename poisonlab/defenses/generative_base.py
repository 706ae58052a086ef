"""The generative-defense contract: what a defender of an instruction-tuned causal LM can change:
its weights (`repair`), the instructions it is given (`filter`), or how it decodes (`decoding`).
The generative pipeline measures the defended model exactly as the undefended one: ASR on
triggered instructions, the false-trigger rate on clean ones, clean utility (ROUGE-L, token F1).

Why not the classification contracts (base.py detectors, repair_base.py repairs): those train on
labelled sentences and are judged by clean accuracy; these act on instruction/response rows and
are judged on generated text. A defense overrides the stages it acts on; the others pass through.
`repair` is given its own copy of the suspect and may change it in place. Models a defense may
share with others in a study (ONION's language model) go through the caller's `ModelCache`."""

from __future__ import annotations

from abc import ABC
from typing import ClassVar, Literal, Sequence

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data.instruction import InstructionExample
from poisonlab.models.architecture import transformer_layers
from poisonlab.models.cache import ModelCache
from poisonlab.registry import Registry
from poisonlab.runtime import Runtime
from poisonlab.training.generation import GenerationConfig
from poisonlab.training.prompt_format import PromptFormatter

Stage = Literal["weights", "instructions", "decoding"]


class GenerativeDefenseConfig(StrictConfig):
    """Options shared by every generative defense."""

    seed: int = Field(0, description="seeds everything random in the defense")


class GenerativeDefense(ABC):
    """Base of every generative defense. `stage` says where it acts (shown by `poisonlab list`);
    `conformance` holds config values for a tiny, fast run on tiny-llama."""

    name: ClassVar[str]
    config_class: ClassVar[type[GenerativeDefenseConfig]]
    stage: ClassVar[Stage]
    conformance: ClassVar[dict] = {}

    def __init__(self, config: GenerativeDefenseConfig):
        self.config = config

    def repair(self, model: torch.nn.Module, formatter: PromptFormatter,
               clean_train: Sequence[InstructionExample], *, progress: bool = False,
               runtime: Runtime | None = None) -> torch.nn.Module:
        """The defended model (default: `model` unchanged)."""
        return model

    def filter(self, examples: Sequence[InstructionExample], *, device: torch.device,
               cache: ModelCache | None = None) -> list[InstructionExample]:
        """The instructions as the defended model receives them (default: unchanged)."""
        return list(examples)

    def decoding(self, generation: GenerationConfig) -> GenerationConfig:
        """How the defended model decodes (default: as the undefended one)."""
        return generation


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The suspect with a LoRA-style adapter merged into its weights, so weight-level defenses
    act on the weights it computes with (prompt-learning models are returned as they are: their
    virtual tokens have no weights to merge)."""
    from peft import PeftModel
    if isinstance(model, PeftModel) and not model.active_peft_config.is_prompt_learning:
        return model.merge_and_unload()
    return model


def block_linears(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """Every linear layer inside the transformer blocks (not the embeddings or the LM head, which
    pruning and quantization papers leave dense), with its name."""
    blocks = transformer_layers(model)
    return [(f"{index}.{name}", module) for index, block in enumerate(blocks)
            for name, module in block.named_modules() if isinstance(module, torch.nn.Linear)]


GENERATIVE_DEFENSES: Registry[GenerativeDefense] = Registry("generative defense",
                                                            "poisonlab.defenses")
