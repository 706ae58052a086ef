"""Where and how models run: the device, mixed precision, gradient accumulation and
checkpointing, and the processes of a multi-process (`accelerate launch`) job.

One `Runtime` per job owns an `accelerate.Accelerator`, created on first use. Components never
choose a device: they follow their model's (`model_device`). Pipelines build the runtime from
the `runtime:` section of a run config and hand it to the training loop and prediction; only the
main process writes files. The defaults keep the CPU behaviour of a plain `poisonlab run`: one
process, fp32, no accumulation.

`environment.json` records what actually ran (`Runtime.describe`), not what was asked for."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal

import torch
from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.errors import ConfigError


class RuntimeConfig(StrictConfig):
    """The `runtime:` section of every run config."""

    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto: the accelerator's choice (CUDA when present, else CPU)")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="autocast precision; weights and optimizer state stay fp32")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="micro-batches per optimizer step (effective batch = batch_size x "
                             "this x processes)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass (less memory, slower)")
    tf32: bool = Field(False, description="allow TF32 matmuls on Ampere+ GPUs")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on (inputs go there)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


class Runtime:
    """The accelerator of one job, created lazily from a RuntimeConfig."""

    def __init__(self, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self._accelerator: Any = None

    @property
    def accelerator(self) -> Any:
        if self._accelerator is None:
            self._accelerator = self._make_accelerator()
        return self._accelerator

    def _make_accelerator(self) -> Any:
        from accelerate import Accelerator
        cfg = self.config
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("runtime.device is 'cuda' but no CUDA device is available here; "
                              "use device: auto or cpu")
        if cfg.device == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("runtime.device is 'mps' but MPS is not available here; use "
                              "device: auto or cpu")
        if cfg.mixed_precision == "fp16" and cfg.device == "cpu":
            raise ConfigError("runtime.mixed_precision fp16 needs a GPU; on a CPU use bf16 or no")
        if cfg.tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision,
                           gradient_accumulation_steps=cfg.gradient_accumulation_steps)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self.accelerator.process_index

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def wait_for_everyone(self) -> None:
        self.accelerator.wait_for_everyone()

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        with self.accelerator.autocast():
            yield

    def describe(self) -> dict[str, Any]:
        """What actually runs: for environment.json."""
        device = self.device
        name = (torch.cuda.get_device_name(device) if device.type == "cuda" else device.type)
        return {"device": str(device), "device_name": name,
                "mixed_precision": self.accelerator.mixed_precision,
                "processes": self.num_processes,
                "gradient_accumulation_steps": self.config.gradient_accumulation_steps,
                "gradient_checkpointing": self.config.gradient_checkpointing,
                "tf32": bool(self.config.tf32 and device.type == "cuda")}
