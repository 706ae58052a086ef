"""The training loop and batched prediction.

A small hand-written loop rather than the Hugging Face Trainer: it is as fast as a minimal PyTorch
loop (see bench/training_throughput.py), deterministic under a seed, and takes a pluggable loss
(`loss_fn(model, batch) -> loss`) so distillation and unlearning reuse it, and a pluggable batch
builder (`train_batches`) so instruction tuning of causal LMs (training/causal_lm.py) runs the same
loop. Texts are tokenized once; batches are padded dynamically; prediction sorts by length so
padding is minimal.

Where and how it runs is the caller's `Runtime` (poisonlab.runtime); without one it runs as it
always has, on the model's device in fp32. With one:
- batches go to the model's device and the loss runs under the runtime's autocast;
- `gradient_accumulation_steps` micro-batches make one optimizer step (the schedule counts
  optimizer steps), each micro-batch's loss weighted by its share of the step's examples, so
  2 x 8 is one batch of 16;
- several processes are data parallel: all shuffle with the same seed, each global batch of
  `batch_size x processes` examples is cut into contiguous shards (`batch_size` each), DDP
  averages the gradients, so N processes with batch b train as one with batch N x b;
- prediction scores one contiguous shard of the length-sorted texts per process and gathers the
  logits to every process."""

from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from poisonlab.config import StrictConfig
from poisonlab.data.example import Example
from poisonlab.errors import ConfigError
from poisonlab.runtime import Runtime, model_device
from poisonlab.training.schedule import linear_warmup_decay
from poisonlab.training.tracking import TrackerName, Tracking

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
EpochHook = Callable[[int, float], dict[str, float] | None]
BatchFn = Callable[[list[int]], dict[str, torch.Tensor]]


class TrainingConfig(StrictConfig):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    max_length: int = Field(128, ge=8, description="tokens kept per text (longer ones truncated)")
    grad_clip: float | None = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, ge=1)
    group_by_length: bool = Field(
        False, description="batches of similar length (less padding, faster): shuffle, sort by "
                           "length within chunks of up to 50 batches, shuffle the batches "
                           "(as transformers' group_by_length)")
    seed: int = 0


class RunTrainingConfig(TrainingConfig):
    """The training of a run itself (train and victim jobs), which may also report to
    experiment trackers; the trainings inside components (attacks, defenses) do not."""

    report_to: list[TrackerName] = Field(
        default_factory=list,
        description="experiment trackers that also get the loss and learning rate per step "
                    "and the final metrics: tensorboard (into <run folder>/tensorboard), wandb, "
                    "mlflow; needs pip install 'poisonlab[tracking]'; the run folder stays the "
                    "record")


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated, unpadded (one fast-tokenizer call for the whole list)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length,
                     add_special_tokens=True)["input_ids"]


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def cross_entropy_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(logits, batch["labels"])


def train_classifier(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example],
                     config: TrainingConfig, *, loss_fn: LossFn = cross_entropy_loss,
                     on_epoch_end: EpochHook | None = None, progress: bool = True,
                     description: str = "train", runtime: Runtime | None = None,
                     tracking: Tracking | None = None) -> list[dict[str, float]]:
    """Train the parameters of `model` that require grad on labelled texts; returns per-epoch
    logs (see `train_batches`)."""
    if not examples:
        raise ValueError("no training examples")
    ids = encode_texts(tokenizer, [e.text for e in examples], config.max_length)
    labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    pad = _pad_id(tokenizer)

    def make_batch(index: list[int]) -> dict[str, torch.Tensor]:
        batch = collate([ids[i] for i in index], pad)
        batch["labels"] = labels[index]
        return batch

    return train_batches(model, [len(x) for x in ids], make_batch, config, loss_fn=loss_fn,
                         on_epoch_end=on_epoch_end, progress=progress, description=description,
                         runtime=runtime, tracking=tracking)


def train_batches(model: torch.nn.Module, lengths: Sequence[int], make_batch: BatchFn,
                  config: TrainingConfig, *, loss_fn: LossFn,
                  on_epoch_end: EpochHook | None = None, progress: bool = True,
                  description: str = "train", runtime: Runtime | None = None,
                  tracking: Tracking | None = None) -> list[dict[str, float]]:
    """The loop itself, for any kind of example: `lengths` (token counts, for group_by_length)
    says how many examples there are, `make_batch(indices)` builds a batch of them on the CPU
    (the loop adds `index` and moves it to the model's device). Trains the parameters of `model`
    that require grad; returns per-epoch logs (the loss is the mean over the epoch's optimizer
    steps of each step's mean loss, over all processes). `runtime`: precision, accumulation,
    checkpointing and processes (see the module doc). `progress`: a bar over optimizer steps
    that stays on screen and ends with the epochs, final loss and examples per second.
    `tracking`: trackers that get each step's loss and learning rate (the main process's) and
    each epoch's log."""
    if not lengths:
        raise ValueError("no training examples")
    count = len(lengths)
    plan = _Plan(runtime)
    torch.manual_seed(config.seed + plan.rank)  # dropout differs per process; the order does not
    order_rng = random.Random(config.seed)
    grouped = list(lengths) if config.group_by_length else None
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    global_batch = config.batch_size * plan.processes
    steps_per_epoch = math.ceil(math.ceil(count / global_batch) / plan.accumulation)
    total = steps_per_epoch * config.epochs
    device = model_device(model)
    history = []
    bar = tqdm(total=total, desc=description, unit="step",
               disable=not progress or not plan.is_main, leave=True)
    step = 0
    hook_seconds = 0.0  # time in on_epoch_end (evaluation), left out of examples per second
    started = time.perf_counter()
    with plan.training(model, loss_fn, optimizer) as (compute, step_optimizer):
        scheduler = linear_warmup_decay(optimizer, int(config.warmup_ratio * total), total)
        for epoch in range(1, config.epochs + 1):
            model.train()
            batches = epoch_batches(count, global_batch, order_rng, grouped)
            running = 0.0
            for first in range(0, len(batches), plan.accumulation):
                group = batches[first:first + plan.accumulation]
                step_examples = sum(len(b) for b in group)
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for micro, global_index in enumerate(group):
                    index, weight = plan.shard(global_index, step_examples)
                    batch = make_batch(index)
                    batch["index"] = torch.tensor(index)
                    batch = to_device(batch, device)
                    with plan.no_sync(last=micro == len(group) - 1):
                        with plan.autocast():
                            loss = compute(batch)
                        plan.backward(loss if weight == 1.0 else loss * weight)
                    # this process's part of the step's mean loss (summed over processes below)
                    step_loss += loss.item() * (weight / plan.processes)
                if config.grad_clip:
                    plan.clip(params, config.grad_clip)
                rate = scheduler.get_last_lr()[0]  # the learning rate this step uses
                step_optimizer.step()
                scheduler.step()
                running += step_loss
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{step_loss * plan.processes:.3f}")
                if tracking is not None:
                    done = (first + len(group)) / len(batches)
                    tracking.log({"train/loss": step_loss * plan.processes,
                                  "train/learning_rate": rate,
                                  "train/epoch": epoch - 1 + done}, step)
            log = {"epoch": epoch, "loss": plan.sum(running) / steps_per_epoch}
            model.eval()
            if on_epoch_end is not None:
                hook_started = time.perf_counter()
                log.update(on_epoch_end(epoch, log["loss"]) or {})
                hook_seconds += time.perf_counter() - hook_started
            history.append(log)
            if tracking is not None:
                tracking.log({f"epoch/{key}": value for key, value in log.items()}, step)
    seconds = max(time.perf_counter() - started - hook_seconds, 1e-9)
    bar.set_postfix_str(f"{config.epochs} epochs, final loss {history[-1]['loss']:.4f}, "
                        f"{count * config.epochs / seconds:.1f} examples/s", refresh=False)
    bar.close()
    model.eval()
    return history


def epoch_batches(count: int, size: int, rng: random.Random,
                  lengths: Sequence[int] | None = None) -> list[list[int]]:
    """One epoch's batches of example indices: a shuffled order cut into batches of `size`;
    with `lengths`, batches of similar length in shuffled order (transformers' group_by_length:
    the shuffled order is sorted by length, longest first, within chunks of
    min(count // (4 x size), 50) batches)."""
    order = list(range(count))
    rng.shuffle(order)
    if lengths is None:
        return [order[start:start + size] for start in range(0, count, size)]
    chunk = max(min(count // (size * 4), 50), 1) * size
    batches = []
    for start in range(0, count, chunk):
        part = sorted(order[start:start + chunk], key=lambda i: -lengths[i])
        batches += [part[i:i + size] for i in range(0, len(part), size)]
    rng.shuffle(batches)
    return batches


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


class _LossModule(torch.nn.Module):
    """The model and its loss as one module, so DDP sees every forward the loss makes and the
    loss function still gets the unwrapped model (`loss_fn(model, batch)`)."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


class _Plan:
    """How one training run uses its runtime (none: one process, fp32, plain PyTorch calls)."""

    def __init__(self, runtime: Runtime | None):
        self.runtime = runtime
        self.processes = runtime.num_processes if runtime else 1
        self.rank = runtime.process_index if runtime else 0
        self.is_main = runtime.is_main_process if runtime else True
        self.accumulation = runtime.config.gradient_accumulation_steps if runtime else 1
        self.scaler = runtime.accelerator.scaler if runtime else None
        self.wrapped: Any = None
        if runtime is not None:
            runtime.check_data_parallel()

    @contextlib.contextmanager
    def training(self, model: torch.nn.Module, loss_fn: LossFn,
                 optimizer: torch.optim.Optimizer) -> Any:
        """(loss of a batch, the optimizer to step) for the run; undoes what it set up after."""
        undo_checkpointing = None
        if self.runtime is not None and self.runtime.config.gradient_checkpointing:
            undo_checkpointing = enable_gradient_checkpointing(model)
        accelerator = self.runtime.accelerator if self.runtime is not None else None
        try:
            if self.processes > 1:
                self.wrapped, prepared = accelerator.prepare(_LossModule(model, loss_fn),
                                                             optimizer)
                self.wrapped.train()
                yield self.wrapped, prepared
            elif self.scaler is not None:  # fp16: the prepared optimizer steps the scaler
                yield (lambda batch: loss_fn(model, batch)), accelerator.prepare(optimizer)
            else:
                yield (lambda batch: loss_fn(model, batch)), optimizer
        finally:
            if accelerator is not None and (self.wrapped is not None or self.scaler is not None):
                accelerator.free_memory()  # forget the prepared objects (the job may train again)
            self.wrapped = None
            if undo_checkpointing is not None:
                undo_checkpointing()

    def shard(self, global_index: list[int], step_examples: int) -> tuple[list[int], float]:
        """This process's contiguous shard of a global batch, and the weight of its mean loss
        that makes DDP's average over processes the mean over the step's examples."""
        if self.processes == 1:
            return global_index, len(global_index) / step_examples
        count = len(global_index)
        shard = global_index[self.rank * count // self.processes:
                             (self.rank + 1) * count // self.processes]
        if not shard:  # fewer examples than processes: run one with weight 0 (DDP needs a pass)
            return global_index[-1:], 0.0
        return shard, len(shard) * self.processes / step_examples

    def no_sync(self, last: bool) -> Any:
        """Accumulating micro-batches skip DDP's gradient all-reduce until the step's last."""
        if self.wrapped is None or last:
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def autocast(self) -> Any:
        return self.runtime.autocast() if self.runtime is not None else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def clip(self, params: list[torch.nn.Parameter], max_norm: float) -> None:
        if self.scaler is not None:  # unscales the gradients first
            self.runtime.accelerator.clip_grad_norm_(params, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(params, max_norm)

    def sum(self, value: float) -> float:
        return self.runtime.sum(value) if self.processes > 1 else value


def enable_gradient_checkpointing(model: torch.nn.Module) -> Callable[[], None]:
    """Turn on transformers' activation (gradient) checkpointing, non-reentrant (so frozen
    embeddings under a PEFT adapter need no input gradients), on the model or on the outermost
    transformers models inside a wrapper; returns the function that turns it off again."""
    targets = [model] if _checkpointing_methods(model) else []
    if not targets:
        inner = [m for m in model.modules() if _checkpointing_methods(m)]
        targets = [m for m in inner if not any(m is not o and _contains(o, m) for o in inner)]
    unsupported = [m for m in targets if not getattr(m, "supports_gradient_checkpointing", True)]
    if not targets or unsupported:
        name = type((unsupported or [model])[0]).__name__
        raise ConfigError(f"runtime.gradient_checkpointing: {name} does not support gradient "
                          "checkpointing; set it to false")
    for target in targets:
        enable, _ = _checkpointing_methods(target)
        try:
            enable({"use_reentrant": False})
        except ValueError as exc:
            raise ConfigError(f"runtime.gradient_checkpointing: {type(target).__name__}: "
                              f"{exc}; set it to false") from None

    def undo() -> None:
        for target in targets:
            _checkpointing_methods(target)[1]()
    return undo


def _checkpointing_methods(module: torch.nn.Module) -> tuple[Callable, Callable] | None:
    """(enable(kwargs), disable()) of a transformers model: `activation_checkpointing_*` where
    transformers has it, else the older `gradient_checkpointing_*`."""
    if hasattr(module, "activation_checkpointing_enable"):
        return (lambda kwargs: module.activation_checkpointing_enable(
            activation_checkpointing_kwargs=kwargs), module.activation_checkpointing_disable)
    if hasattr(module, "gradient_checkpointing_enable"):
        return (lambda kwargs: module.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=kwargs), module.gradient_checkpointing_disable)
    return None


def _contains(outer: torch.nn.Module, inner: torch.nn.Module) -> bool:
    return any(m is inner for m in outer.modules())


@torch.no_grad()
def predict_logits(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *,
                   batch_size: int = 64, max_length: int = 128,
                   runtime: Runtime | None = None, progress: bool = False,
                   description: str = "predict") -> np.ndarray:
    """Logits for every text, batched in length order (little padding), returned in input order.
    With several processes each scores a contiguous shard of the length-sorted texts and every
    process gets all the logits. `progress`: a bar over the texts (the main process's shard),
    gone when done."""
    if len(texts) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    model.eval()
    ids = encode_texts(tokenizer, texts, max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = _pad_id(tokenizer)
    device = model_device(model)
    autocast = runtime.autocast if runtime is not None else contextlib.nullcontext
    if runtime is not None and runtime.distributed:
        return _predict_sharded(model, ids, order, pad, batch_size, runtime,
                                progress and runtime.is_main_process, description)
    out: list[np.ndarray | None] = [None] * len(ids)
    with _prediction_bar(len(order), description, progress) as bar:
        for index in length_batches(order, [len(x) for x in ids], batch_size):
            with autocast():
                logits = model(**to_device(collate([ids[i] for i in index], pad), device)).logits
            logits = logits.float().cpu().numpy()
            for row, i in enumerate(index):
                out[i] = logits[row]
            bar.update(len(index))
    return np.stack(out)  # type: ignore[arg-type]


def _prediction_bar(total: int, description: str, progress: bool) -> Any:
    return tqdm(total=total, desc=description, unit="text", disable=not progress, leave=False)


# the share of padding a prediction batch may hold, over its real tokens: sorted texts of a small
# set spread over many lengths, and full batches of 64 carried 29% padding on 256 SST-2 sentences
MAX_PADDING = 0.1


def length_batches(order: Sequence[int], lengths: Sequence[int],
                   batch_size: int) -> list[list[int]]:
    """`order` (ascending length) cut into batches of at most `batch_size` texts whose padding
    stays within MAX_PADDING of their real tokens (a batch pads to its last, longest text)."""
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in order:
        width = lengths[i]
        if batch and (len(batch) == batch_size
                      or (len(batch) + 1) * width > (1 + MAX_PADDING) * (real + width)):
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += width
    if batch:
        batches.append(batch)
    return batches


def _predict_sharded(model: torch.nn.Module, ids: list[list[int]], order: list[int], pad: int,
                     batch_size: int, runtime: Runtime, progress: bool,
                     description: str) -> np.ndarray:
    """Every process scores `shard` texts (the last ones pad their shard by repeating a text, so
    the gather has equal sizes); the padding is dropped after the gather."""
    shard = math.ceil(len(order) / runtime.num_processes)
    mine = order[runtime.process_index * shard:(runtime.process_index + 1) * shard]
    mine += [order[-1]] * (shard - len(mine))
    device = model_device(model)
    rows = []
    with _prediction_bar(len(mine), description, progress) as bar:
        for index in length_batches(mine, [len(x) for x in ids], batch_size):
            with runtime.autocast():
                logits = model(**to_device(collate([ids[i] for i in index], pad), device)).logits
            rows.append(logits.float())
            bar.update(len(index))
    gathered = runtime.gather(torch.cat(rows)).cpu().numpy()[:len(order)]
    out = np.empty_like(gathered)
    out[order] = gathered  # gathered row k is the k-th text in length order
    return out


def predict_labels(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str],
                   **kwargs: Any) -> np.ndarray:
    return predict_logits(model, tokenizer, texts, **kwargs).argmax(axis=-1)
