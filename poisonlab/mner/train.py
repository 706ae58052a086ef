"""Train, evaluate and predict with MNER-QG: build the model from a config, the training loop
(with a resumable checkpoint), batched prediction and decoding, entity and grounding scores, and
loading a trained run folder. Writing run folders is poisonlab.experiment.mner's job.

Training and prediction run where their `Runtime` says (built by the caller from the config's
`runtime:` section): the model moves to its device, each batch is built on the host and moved
there, the forward pass and the loss run under its autocast, and gradients accumulate over
`gradient_accumulation_steps` batches per optimizer step. Probabilities come back to the host for
decoding and scoring. Same config and seed -> same metrics (CPU)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from poisonlab.config import load_config
from poisonlab.errors import ConfigError
from poisonlab.io import atomic_write, write_jsonl
from poisonlab.mner.anchors import AnchorGrid
from poisonlab.mner.checkpoint import (Progress, config_key, load_checkpoint, load_strict,
                                      save_checkpoint)
from poisonlab.mner.config import MnerConfig
from poisonlab.mner.dataset import (MnerSplit, load_boxes, load_split, optional_path, read_conll,
                                    resolve_folder, split_file)
from poisonlab.mner.decoding import decode
from poisonlab.mner.devices import HOST
from poisonlab.mner.encoding import QueryEncoder, SpanTargets, TextBatch
from poisonlab.mner.grounding import GroundingTargets, build_targets, predict_boxes
from poisonlab.mner.images import normalise
from poisonlab.mner.losses import mner_loss
from poisonlab.mner.model import MnerQG
from poisonlab.mner.queries import build_queries
from poisonlab.mner.scorer import entity_scores, grounding_accuracy
from poisonlab.mner.spans import Span, spans_to_tags
from poisonlab.mner.visual import load_pretrained
from poisonlab.models.loading import load_encoder
from poisonlab.runtime import Runtime
from poisonlab.training.schedule import linear_warmup_decay

METRICS_VERSION = "mner-entity-f1/conlleval-orphan-v1; acc@0.5/iou>0.5-any-gold-v1"


@dataclass
class Batch:
    text: TextBatch
    images: torch.Tensor | None
    spans: SpanTargets
    grounding: GroundingTargets | None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.text.to(device), None if self.images is None else self.images.to(device),
                     self.spans.to(device),
                     None if self.grounding is None else self.grounding.to(device))


@dataclass
class Pipeline:
    """Everything built from a config: model, query encoder, anchors, types."""

    config: MnerConfig
    model: MnerQG
    encoder: QueryEncoder
    grid: AnchorGrid
    types: list[str]


def build_pipeline(config: MnerConfig, *, pretrained: bool = True, allow_pickle: bool = False,
                   trust_remote_code: bool = False) -> Pipeline:
    """The model, query encoder and anchors of a config; `pretrained` loads `model.cnn_weights`
    (off when a run's own weights are about to be loaded)."""
    if not config.data.types:
        raise ConfigError("data.types is empty: no entity types found")
    dropout = config.model.encoder_dropout
    overrides = {} if dropout is None else {"hidden_dropout_prob": dropout,
                                            "attention_probs_dropout_prob": dropout}
    loaded = load_encoder(config.model.encoder, seed=config.seed, allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code, **overrides)
    queries = build_queries(config.data.types, config.model.queries)
    torch.manual_seed(config.seed)
    model = MnerQG(loaded.model, config.model, len(queries))
    if pretrained and config.model.image and config.model.cnn_weights:
        load_pretrained(model.cnn, config.model.cnn_weights)
    encoder = QueryEncoder(loaded.tokenizer, queries, config.model.max_length)
    return Pipeline(config, model, encoder, AnchorGrid(config.model.image_size), list(queries))


def make_batch(pipe: Pipeline, split: MnerSplit, indices: list[int]) -> Batch:
    """The batch of tweets `indices`, on the host."""
    tweets = [split.tweets[i] for i in indices]
    cfg = pipe.config
    text = pipe.encoder.encode(tweets)
    spans = pipe.encoder.targets(tweets, cfg.model.max_span_words)
    if not cfg.model.image:
        return Batch(text, None, spans, None)
    size = cfg.model.image_size
    row_boxes: dict[int, tuple[torch.Tensor, float]] = {}
    absent: list[int] = []
    for b, i in enumerate(indices):
        if split.sizes[i] is None:
            continue  # placeholder image: its boxes cannot be trusted
        width, height = split.sizes[i]
        scale = torch.tensor([size / width, size / height, size / width, size / height],
                             device=HOST)
        for k, kind in enumerate(pipe.types):
            row = b * len(pipe.types) + k
            record = split.boxes[i].get(kind)
            if record is not None and record.boxes:
                weight = 1.0 if record.source == "manual" else cfg.loss.weak_box_weight
                row_boxes[row] = (torch.tensor(record.boxes, device=HOST) * scale, weight)
            elif cfg.loss.no_box_means_absent:
                absent.append(row)
    return Batch(text, normalise(split.images[indices]), spans,
                 build_targets(pipe.grid, row_boxes, absent))


def load_data(config: MnerConfig, splits: tuple[str, ...]) -> dict[str, MnerSplit]:
    folder = resolve_folder(config.data.dir)
    images = optional_path(folder, config.data.images)
    if config.model.image and images is None:
        raise ConfigError("model.image is true but data.images names no image folder; "
                          "set model.image: false for text-only data")
    boxes = load_boxes(folder, config.data.boxes) if config.model.image else {}
    out = {}
    for split in splits:
        indices = None
        if split == "train" and config.data.train_limit is not None:
            n = len(read_conll(split_file(folder, split)))
            generator = torch.Generator(device=HOST).manual_seed(config.seed)
            order = torch.randperm(n, generator=generator, device=HOST)
            indices = sorted(order[:config.data.train_limit].tolist())
        out[split] = load_split(split_file(folder, split), images if config.model.image else None,
                                boxes, config.model.image_size, indices)
    return out


def _optimizer(pipe: Pipeline, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    cfg = pipe.config.train
    encoder_params = list(pipe.model.encoder.parameters())
    encoder_ids = {id(p) for p in encoder_params}
    head_params = [p for p in pipe.model.parameters() if id(p) not in encoder_ids]
    optimizer = torch.optim.AdamW([{"params": encoder_params, "lr": cfg.lr},
                                   {"params": head_params, "lr": cfg.head_lr}],
                                  weight_decay=cfg.weight_decay)
    # MNER always warms up for at least one step (the classifier trainer allows none).
    warmup = max(1, int(cfg.warmup * total_steps))
    return optimizer, linear_warmup_decay(optimizer, warmup, total_steps)


def fit(pipe: Pipeline, train: MnerSplit, out_dir: Path | None = None,
        runtime: Runtime | None = None) -> Progress:
    """Train on `runtime`'s device (built from `config.runtime` when not given); with `out_dir`,
    write train_log.jsonl there and keep a resumable checkpoint every `train.checkpoint_every`
    optimizer steps (a rerun of the same config resumes from it). Returns the final progress; its
    `earlier_seconds` is the time spent before a resume.

    An epoch is `ceil(tweets / batch_size)` batches whatever the accumulation; an optimizer step
    takes `gradient_accumulation_steps` of them (the last one of training may take fewer), each
    batch's loss divided by the number the step takes."""
    cfg = pipe.config
    runtime = runtime or Runtime(cfg.runtime)
    device = runtime.device
    model = runtime.place(pipe.model)
    if runtime.config.gradient_checkpointing:
        _checkpoint_activations(model.encoder, cfg.model.encoder)
    batch_size = cfg.train.batch_size
    accumulation = runtime.config.gradient_accumulation_steps
    batches_per_epoch = math.ceil(len(train) / batch_size)
    total_batches = max(1, math.ceil(cfg.train.epochs * batches_per_epoch))
    total_steps = math.ceil(total_batches / accumulation)
    optimizer, scheduler = _optimizer(pipe, total_steps)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none
    scaler = torch.amp.GradScaler(device.type) if runtime.config.mixed_precision == "fp16" else None
    generator = torch.Generator(device=HOST).manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    key = config_key(cfg)
    progress = None
    if out_dir is not None:
        progress = load_checkpoint(out_dir, key, model, optimizer, scheduler, generator, scaler)
    progress = progress or Progress()
    begin = time.time()
    model.train()
    for step in tqdm(range(progress.step, total_steps), desc="mner train", mininterval=10,
                     ascii=True, initial=progress.step, total=total_steps):
        batches = range(step * accumulation, min((step + 1) * accumulation, total_batches))
        optimizer.zero_grad()
        step_losses = []
        for number in batches:
            if number % batches_per_epoch == 0:
                progress.order = torch.randperm(len(train), generator=generator,
                                                device=HOST).tolist()
            offset = (number % batches_per_epoch) * batch_size
            batch = make_batch(pipe, train, progress.order[offset:offset + batch_size]).to(device)
            with runtime.autocast():
                output = model(batch.text, batch.images)
                losses = mner_loss(output, batch.spans, batch.text.word_mask, batch.grounding,
                                   cfg.loss)
            loss = losses["total"] / len(batches)
            (loss if scaler is None else scaler.scale(loss)).backward()
            step_losses.append({name: value.detach() for name, value in losses.items()})
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        if step % 20 == 0 or step == total_steps - 1:
            progress.log.append({"step": step, **{
                name: round(torch.stack([part[name] for part in step_losses]).mean().item(), 5)
                for name in step_losses[0]}})
        every = cfg.train.checkpoint_every
        if out_dir is not None and every and (step + 1) % every == 0 and step + 1 < total_steps:
            progress.step = step + 1
            save_checkpoint(out_dir, key, model, optimizer, scheduler, generator, progress,
                            progress.earlier_seconds + time.time() - begin, scaler)
    model.eval()
    if out_dir is not None:
        write_jsonl(out_dir / "train_log.jsonl", progress.log)
    return progress


def _checkpoint_activations(encoder: torch.nn.Module, name: str) -> None:
    """Recompute the text encoder's activations in the backward pass (transformers' activation
    checkpointing, non-reentrant: it replays the random state, so dropout and results are
    unchanged)."""
    if not getattr(encoder, "supports_gradient_checkpointing", False):
        raise ConfigError(f"runtime.gradient_checkpointing: the encoder '{name}' does not support "
                          "it; set it to false")
    encoder.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False})


@dataclass
class HeadProbabilities:
    """One evaluation batch's head outputs as float32 probabilities, on the host: what decoding
    needs, so spans can be decoded at several thresholds from one forward pass (`thresholds.py`)."""

    indices: list[int]
    start: torch.Tensor
    end: torch.Tensor
    match: torch.Tensor
    exists: torch.Tensor
    word_mask: torch.Tensor
    boxes: torch.Tensor | None  # [R, 4] best box per row, input pixels

    def spans(self, types: list[str], threshold: float, existence_threshold: float | None
              ) -> list[list[Span]]:
        return decode(self.start, self.end, self.match, self.exists, self.word_mask, types,
                      threshold, existence_threshold)


@torch.no_grad()
def head_probabilities(pipe: Pipeline, split: MnerSplit, runtime: Runtime | None = None
                       ) -> Iterator[HeadProbabilities]:
    """The model's probabilities for `split`, one evaluation batch at a time, computed on
    `runtime`'s device (built from `config.runtime` when not given) and returned on the host."""
    runtime = runtime or Runtime(pipe.config.runtime)
    device = runtime.device
    model = runtime.place(pipe.model)
    model.eval()
    size = pipe.config.train.eval_batch_size
    for first in range(0, len(split), size):
        indices = list(range(first, min(first + size, len(split))))
        batch = make_batch(pipe, split, indices).to(device)
        with runtime.autocast():
            out = model(batch.text, batch.images)
        boxes = predict_boxes(pipe.grid, out.grounding) if out.grounding is not None else None
        start, end, match, exists = (logits.float().sigmoid().to(HOST) for logits in
                                     (out.start, out.end, out.match, out.exists))
        yield HeadProbabilities(indices, start, end, match, exists,
                                batch.text.word_mask.to(HOST),
                                None if boxes is None else boxes.to(HOST))


def predict(pipe: Pipeline, split: MnerSplit, runtime: Runtime | None = None
            ) -> list[dict[str, Any]]:
    """Per tweet: predicted spans and, with the image branch, one box per type (original pixels).
    The model runs on `runtime`'s device (built from `config.runtime` when not given)."""
    cfg = pipe.config
    results = []
    size = cfg.model.image_size
    for probs in head_probabilities(pipe, split, runtime):
        indices, boxes = probs.indices, probs.boxes
        spans = probs.spans(pipe.types, cfg.decode.threshold, cfg.decode.existence_threshold)
        for b, i in enumerate(indices):
            row: dict[str, Any] = {"spans": spans[b]}
            if boxes is not None:
                width, height = split.sizes[i] or (size, size)
                scale = torch.tensor([width / size, height / size, width / size, height / size],
                                     device=boxes.device)
                k = len(pipe.types)
                row["boxes"] = {kind: (boxes[b * k + t] * scale).tolist()
                                for t, kind in enumerate(pipe.types)}
            results.append(row)
    return results


def gold_spans(pipe: Pipeline, split: MnerSplit) -> list[list[Span]]:
    """The gold entities scored against: those of the run's types."""
    return [[s for s in t.spans if s.type in pipe.types] for t in split.tweets]


def evaluate(pipe: Pipeline, split: MnerSplit, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    metrics: dict[str, Any] = {"entities": entity_scores(gold_spans(pipe, split),
                                                         [p["spans"] for p in predictions])}
    if pipe.config.model.image:
        pred_boxes, gold_boxes = [], []
        for i, p in enumerate(predictions):
            for kind, record in split.boxes[i].items():
                if kind in p["boxes"] and record.boxes and split.sizes[i] is not None:
                    pred_boxes.append(torch.tensor(p["boxes"][kind], device=HOST))
                    gold_boxes.append(torch.tensor(record.boxes, device=HOST))
        metrics["grounding"] = grounding_accuracy(pred_boxes, gold_boxes)
    return metrics


def prediction_rows(split: MnerSplit, predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"img_id": t.img_id, "tokens": t.tokens, "gold": t.tags,
             "pred": spans_to_tags(p["spans"], len(t.tokens)),
             "spans": [list(s) for s in p["spans"]], **({"boxes": p["boxes"]} if "boxes" in p else {})}
            for t, p in zip(split.tweets, predictions)]


def save_model(pipe: Pipeline, path: Path) -> None:
    from safetensors.torch import save_file
    state = {k: v.to(HOST).contiguous() for k, v in pipe.model.state_dict().items()}
    atomic_write(path, lambda p: save_file(state, str(p), metadata={"format": "pt"}))


def load_run(run_dir: str | Path, *, device: str | None = None, allow_pickle: bool = False,
             trust_remote_code: bool = False) -> Pipeline:
    """A trained run folder's model; trust settings are the caller's, never the folder's.
    `device` replaces the run's `runtime.device` for what the model does next (e.g. evaluate
    on a CPU a run trained on a GPU)."""
    from safetensors.torch import load_file
    run_dir = Path(run_dir)
    for name in ("config.yaml", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir} is not an MNER run folder (no {name})")
    config = load_config(MnerConfig, run_dir / "config.yaml")
    if device is not None:
        config.runtime = config.runtime.model_copy(update={"device": device})
    pipe = build_pipeline(config, pretrained=False, allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code)
    load_strict(pipe.model, load_file(str(run_dir / "model.safetensors")),
                f"{run_dir / 'model.safetensors'} does not fit the model its config.yaml describes "
                "(written by another poisonlab version?)")
    pipe.model.eval()
    return pipe
