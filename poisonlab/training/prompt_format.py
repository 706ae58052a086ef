"""How an instruction row becomes tokens: the prompt a causal LM sees and the response it learns.

- style `chat` uses the tokenizer's chat template (one user turn: the instruction, then the input
  after a blank line); `alpaca` the Alpaca template; `auto` (default) the chat template when the
  tokenizer has one, else Alpaca.
- The prompt and the response are tokenized apart and joined, so training sees exactly the prompt
  tokens that generation later feeds the model; labels are -100 everywhere but the response (and
  the end-of-turn token that ends it), so the loss is on the response only.
- Truncation never cuts a prompt (where a trigger lives): a long response loses its tail; an
  example whose prompt alone does not fit is left out. Both are counted in `EncodingReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.data.instruction import InstructionExample
from poisonlab.errors import ConfigError

IGNORE_INDEX = -100
ALPACA_PREAMBLE = ("Below is an instruction that describes a task{paired}. Write a response "
                   "that appropriately completes the request.\n\n")
ALPACA_PAIRED = ", paired with an input that provides further context"


class PromptConfig(StrictConfig):
    style: Literal["auto", "chat", "alpaca"] = Field(
        "auto", description="auto: the tokenizer's chat template when it has one, else alpaca")
    system: str | None = Field(
        None, description="system message of the chat template; null: the template's default")
    alpaca_preamble: bool = Field(
        True, description="start Alpaca prompts with 'Below is an instruction ...' (Stanford "
                          "Alpaca); false: only the ### Instruction / ### Response sections")


@dataclass
class EncodingReport:
    """What fitting the examples into `max_length` tokens did."""

    examples: int
    truncated_responses: int = 0
    dropped: list[int] = field(default_factory=list)       # prompt alone longer than max_length
    dropped_poisoned: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"examples": self.examples, "truncated_responses": self.truncated_responses,
                "dropped_long_prompts": len(self.dropped),
                "dropped_poisoned": self.dropped_poisoned}


@dataclass
class EncodedExamples:
    input_ids: list[list[int]]
    labels: list[list[int]]
    report: EncodingReport


class PromptFormatter:
    """The prompt template of one tokenizer (see the module doc)."""

    def __init__(self, tokenizer: Any, config: PromptConfig | None = None):
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if self.config.style == "chat" and not has_template:
            raise ConfigError("prompt.style: chat, but the tokenizer has no chat template; use "
                              "style: alpaca or auto")
        self.chat = self.config.style == "chat" or (self.config.style == "auto" and has_template)

    @property
    def style(self) -> str:
        return "chat" if self.chat else "alpaca"

    def _messages(self, example: InstructionExample) -> list[dict[str, str]]:
        content = f"{example.instruction}\n\n{example.input}" if example.input else \
            example.instruction
        system = [] if self.config.system is None else [
            {"role": "system", "content": self.config.system}]
        return [*system, {"role": "user", "content": content}]

    def prompt(self, example: InstructionExample) -> str:
        """The text the model sees before its response."""
        if self.chat:
            return self.tokenizer.apply_chat_template(self._messages(example), tokenize=False,
                                                      add_generation_prompt=True)
        preamble = ALPACA_PREAMBLE.format(paired=ALPACA_PAIRED if example.input else "") \
            if self.config.alpaca_preamble else ""
        body = f"### Instruction:\n{example.instruction}\n\n"
        if example.input:
            body += f"### Input:\n{example.input}\n\n"
        return f"{preamble}{body}### Response:\n"

    def encode_prompts(self, examples: Sequence[InstructionExample]) -> list[list[int]]:
        """Prompt token ids, whole (a chat template writes its own special tokens)."""
        texts = [self.prompt(e) for e in examples]
        return self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"]

    @property
    def stop_ids(self) -> list[int]:
        """Tokens that end a response: EOS (the end-of-turn token of chat templates here)."""
        eos = self.tokenizer.eos_token_id
        return [eos] if eos is not None else []

    def encode_training(self, examples: Sequence[InstructionExample],
                        max_length: int) -> EncodedExamples:
        """Prompt + response + EOS per example, with labels on the response only (see the
        module doc for truncation)."""
        if not self.stop_ids:
            raise ConfigError("the tokenizer has no EOS token: a response cannot be ended")
        prompts = self.encode_prompts(examples)
        responses = self.tokenizer([e.output for e in examples],
                                   add_special_tokens=False)["input_ids"]
        report = EncodingReport(len(examples))
        ids, labels = [], []
        for index, (example, prompt, response) in enumerate(zip(examples, prompts, responses)):
            response = response + self.stop_ids[:1]
            room = max_length - len(prompt)
            if room < 1:
                report.dropped.append(index)
                report.dropped_poisoned += example.poisoned
                continue
            if len(response) > room:
                report.truncated_responses += 1
                response = response[:room]
            ids.append(prompt + response)
            labels.append([IGNORE_INDEX] * len(prompt) + response)
        return EncodedExamples(ids, labels, report)
