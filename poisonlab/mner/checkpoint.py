"""Resumable MNER training. Every `train.checkpoint_every` steps the model, the optimizer's
moments, the scheduler, the current epoch's tweet order, the loss log and the random generators
(the shuffling one, torch's global one, which drives dropout, and when the model is on a CUDA
device every CUDA device's; with fp16, the gradient scaler's state) are written atomically to one
file, `checkpoint.safetensors` (the non-tensor state is JSON in its metadata, so tensors and
state can never come from two different steps). A killed run started again with the same config
resumes at the last checkpoint and ends with the same weights as an uninterrupted run (on a CPU;
a GPU adds its own nondeterminism). A checkpoint without CUDA generators resumes anywhere, as does
one with them on a machine without CUDA. Checkpoints hold safetensors and JSON only, never
pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from poisonlab.errors import ConfigError
from poisonlab.io import atomic_write
from poisonlab.runtime import RuntimeConfig, model_device

CHECKPOINT = "checkpoint.safetensors"
CUDA_RNG = "rng.cuda."
# Where a job runs and whether it recomputes activations do not change what it learns.
RUNTIME_OUTSIDE_KEY = ("device", "gradient_checkpointing")


@dataclass
class Progress:
    """Where training stands: the next step to run, this epoch's order, the loss log and the
    seconds spent training before the last resume (so a resumed run reports its whole cost)."""

    step: int = 0
    order: list[int] = field(default_factory=list)
    log: list[dict[str, float]] = field(default_factory=list)
    earlier_seconds: float = 0.0


def config_key(config: BaseModel) -> str:
    """The config fields that change the trained weights: a checkpoint resumes only under the same
    key. Checkpoint spacing, evaluation batch size, decoding, the runtime's device and gradient
    checkpointing do not change them; a runtime section that trains as the default one does is
    left out, so checkpoints written before there was one still resume."""
    fields = config.model_dump(mode="json")
    for name in ("checkpoint_every", "eval_batch_size"):
        fields["train"].pop(name, None)
    fields.pop("decode", None)
    if "runtime" in fields:
        default = RuntimeConfig().model_dump(mode="json")
        for name in RUNTIME_OUTSIDE_KEY:
            fields["runtime"].pop(name, None)
            default.pop(name)
        if fields["runtime"] == default:
            del fields["runtime"]
    return json.dumps(fields, sort_keys=True)


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], problem: str) -> None:
    """`module.load_state_dict(state)`; a tensor missing, unexpected or misshaped is a ConfigError
    "`problem` (torch's list of mismatches)" instead of a traceback."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # torch's message: a header line, then one line per mismatch
        mismatches = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
        raise ConfigError(f"{problem} ({mismatches})") from None


def save_checkpoint(folder: Path, key: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
                    progress: Progress, seconds: float,
                    scaler: torch.amp.GradScaler | None = None) -> None:
    """`seconds`: training time up to now, earlier attempts included. Tensors are written from
    the host whatever device they train on."""
    from safetensors.torch import save_file
    optimizer_state = optimizer.state_dict()
    tensors = {f"model.{name}": _host(value) for name, value in model.state_dict().items()}
    for index, slots in optimizer_state["state"].items():
        for slot, value in slots.items():
            tensors[f"optimizer.{index}.{slot}"] = _host(value)
    tensors["rng.shuffle"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if model_device(model).type == "cuda":
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{CUDA_RNG}{index}"] = cuda_state
    state = {"config": key, "step": progress.step, "order": progress.order,
             "log": progress.log, "seconds": seconds,
             "param_groups": optimizer_state["param_groups"], "scheduler": scheduler.state_dict()}
    if scaler is not None:
        state["grad_scaler"] = scaler.state_dict()
    atomic_write(folder / CHECKPOINT,
                 lambda p: save_file(tensors, str(p), metadata={"state": json.dumps(state)}))


def load_checkpoint(folder: Path, key: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    generator: torch.Generator,
                    scaler: torch.amp.GradScaler | None = None) -> Progress | None:
    """Restore everything from `folder`'s checkpoint into a model already on its device (the
    optimizer's moments follow its parameters there); None when there is none."""
    from safetensors import safe_open
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    with safe_open(str(path), "pt", device="cpu") as handle:
        state = json.loads((handle.metadata() or {}).get("state", "{}"))
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    if state.get("config") != key:
        raise ConfigError(f"{path}: field 'config': the checkpoint was written by a different "
                          "config; pass --force to start over")
    model.load_state_dict({name[len("model."):]: value for name, value in tensors.items()
                           if name.startswith("model.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, slot = name.split(".", 2)
            slots.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(tensors["rng.shuffle"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[name] for name in sorted(
        (name for name in tensors if name.startswith(CUDA_RNG)),
        key=lambda name: int(name[len(CUDA_RNG):]))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
    if scaler is not None and "grad_scaler" in state:
        scaler.load_state_dict(state["grad_scaler"])
    return Progress(state["step"], state["order"], state["log"], state.get("seconds", 0.0))


def _host(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu").contiguous()


def remove_checkpoint(folder: Path) -> None:
    (folder / CHECKPOINT).unlink(missing_ok=True)
