"""Where and how models run: the device, mixed precision, gradient accumulation and
checkpointing, and the processes of a multi-process (`accelerate launch`) job.

One `Runtime` per job owns an `accelerate.Accelerator`, created on first use. Components never
choose a device: they follow their model's (`model_device`). Pipelines build the runtime from
the `runtime:` section of a run config and hand it to the training loop and prediction; only the
main process writes files. The defaults keep the CPU behaviour of a plain `poisonlab run`: one
process, fp32, no accumulation.

`environment.json` records what actually ran (`Runtime.describe`), not what was asked for.

Several processes are data parallel (DDP): every process holds the whole model, sees its own
shard of each batch, and DDP averages the gradients. DeepSpeed and FSDP launches are refused by
the classifier trainer (`check_data_parallel`)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Literal, TypeVar

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


T = TypeVar("T")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on (inputs go there)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def main_process() -> bool:
    """Whether this process is rank 0 of its launch (always true without a launcher): the one
    that writes what no single job owns, such as a study's table and plot. Read from the
    launcher's environment (torchrun and accelerate launch set RANK), so asking starts
    nothing."""
    return int(os.environ.get("RANK", "0")) == 0


class Runtime:
    """The accelerator of one job, created lazily from a RuntimeConfig."""

    def __init__(self, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self._accelerator: Any = None

    @property
    def accelerator(self) -> Any:
        if self._accelerator is None or not self._state_is_mine():
            self._accelerator = self._make_accelerator()
        return self._accelerator

    def _state_is_mine(self) -> bool:
        """accelerate's process-wide state still has this runtime's precision and device kind
        (a later runtime with other settings in the same process rebuilt it: see
        `_forget_other_settings`)."""
        from accelerate.state import AcceleratorState
        shared = AcceleratorState._shared_state
        device = shared.get("device")
        return bool(shared) and shared.get("_mixed_precision") == self.config.mixed_precision \
            and (device is None or (device.type == "cpu") == self._cpu())

    def _cpu(self) -> bool:
        """Whether this runtime runs on the CPU (auto: when there is no CUDA or MPS device)."""
        device = self.config.device
        return device == "cpu" or (device == "auto" and not torch.cuda.is_available()
                                   and not torch.backends.mps.is_available())

    def _make_accelerator(self) -> Any:
        from accelerate import Accelerator
        cfg = self.config
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("runtime.device is 'cuda' but no CUDA device is available here; "
                              "use device: auto or cpu")
        if cfg.device == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("runtime.device is 'mps' but MPS is not available here; use "
                              "device: auto or cpu")
        cpu = self._cpu()
        if cfg.mixed_precision == "fp16" and cpu:
            raise ConfigError("runtime.mixed_precision fp16 needs a GPU; on a CPU use bf16 or no")
        if cfg.tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        _forget_other_settings(cfg.mixed_precision, cpu)
        # auto on a machine without CUDA is cpu=True, so that several launched processes join
        # one gloo group instead of each running alone
        return Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision,
                           gradient_accumulation_steps=cfg.gradient_accumulation_steps)

    def check(self) -> "Runtime":
        """Build the accelerator now: a device that is not here is a ConfigError before a job
        writes anything."""
        _ = self.accelerator
        return self

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

    @property
    def distributed(self) -> bool:
        """Several processes (the model is data parallel; only the main one writes)."""
        return self.num_processes > 1

    def wait_for_everyone(self) -> None:
        self.accelerator.wait_for_everyone()

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.config.mixed_precision == "no":  # nothing to enter: the default costs nothing
            yield
            return
        with self.accelerator.autocast():
            yield

    def place(self, model: T) -> T:
        """Move a model to this runtime's device, unless its loader already placed it (a
        `device_map` dispatch or quantized weights stay where they are)."""
        if getattr(model, "hf_device_map", None) or getattr(model, "is_quantized", False) \
                or getattr(model, "is_loaded_in_4bit", False) \
                or getattr(model, "is_loaded_in_8bit", False):
            return model
        device = self.device
        if model_device(model) != device:  # type: ignore[arg-type]
            model.to(device)  # type: ignore[attr-defined]
        return model

    def broadcast(self, value: T) -> T:
        """The main process's `value` (any picklable object), on every process."""
        if not self.distributed:
            return value
        from accelerate.utils import broadcast_object_list
        return broadcast_object_list([value if self.is_main_process else None])[0]

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's tensor (equal shapes), concatenated along dim 0 in process order."""
        if not self.distributed:
            return tensor
        return self.accelerator.gather(tensor.to(self.device).contiguous())

    def sum(self, value: float) -> float:
        """The sum of `value` over processes."""
        if not self.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        return float(self.accelerator.reduce(total, reduction="sum").item())

    def check_data_parallel(self) -> None:
        """The classifier trainer runs one process or DDP; a sharding launcher (DeepSpeed, FSDP,
        Megatron) would need sharded saving and loading that poisonlab does not do."""
        kind = self.accelerator.distributed_type
        kind = str(getattr(kind, "value", kind))
        if kind.upper() in ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA"):
            raise ConfigError(f"this job was launched with {kind}; poisonlab trains classifiers "
                              "in one process or data parallel (DDP) only: launch without the "
                              "DeepSpeed/FSDP plugin (e.g. accelerate launch --multi_gpu)")

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


def _forget_other_settings(mixed_precision: str, cpu: bool) -> None:
    """accelerate keeps one process-wide state and refuses an Accelerator whose precision (or
    CPU choice) differs from the first one's; a process that runs jobs one after another (a
    study, the tests) gets the settings of each job. The process group of a launched job is
    kept: only a single-process state is rebuilt for another device."""
    from accelerate.state import AcceleratorState, PartialState
    if not AcceleratorState._shared_state:
        return
    state = AcceleratorState()
    device_differs = (state.device.type == "cpu") != cpu
    if getattr(state, "_mixed_precision", mixed_precision) != mixed_precision or device_differs:
        single = PartialState().num_processes == 1
        AcceleratorState._reset_state(reset_partial_state=single and device_differs)
