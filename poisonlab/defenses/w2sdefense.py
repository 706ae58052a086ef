"""W2SDefense: a small clean teacher guides a large poisoned student to unlearn its backdoor.

Citation: Shuai Zhao, Xiaobao Wu, Cong-Duy Nguyen, Yanhao Jia, Meihuizi Jia, Yichao Feng,
Luu Anh Tuan. "Unlearning Backdoor Attacks for LLMs with Weak-to-Strong Knowledge
Distillation." Findings of ACL 2025 (arXiv:2410.14425).

Threat model: the defender downloads a (possibly weight-poisoned) model, holds a small clean
labelled set of the task, does not know the trigger, and can afford to train only a PEFT adapter of
the large model plus a small model in full. Steps:
1. teacher: a small encoder (default `minilm`) fully fine-tuned on the clean data, its pooled
   feature passed through a projection to the student's hidden size, then a classifier;
2. student: the suspect, with a LoRA (or any PEFT) adapter trained on the same clean data with
   a*CE(z_s, y) + b*T^2*KL(softmax(z_t/T) || softmax(z_s/T)) + c*FA; the teacher is frozen. The
   two tokenizers differ, so every batch carries the teacher's tokenization of the same texts.

Alignment modes (`alignment`):
- per_example (default): teacher feature i vs the student's pooled final hidden state of example i
  (`student_pooling`: the last real token, as the causal classifier reads it, or the masked mean),
  padding masked.
- reference: as the reference code: one teacher vector per batch (the last example's) against
  every student token of every example, padding included.

Differences from the reference code:
- per-example alignment is the default (the reference behaviour is `alignment: reference`);
- FA is the mean squared difference per dimension (torch's MSELoss), written once in
  training/losses.py;
- the projection is trained with the teacher (it sits between the teacher's pooled feature and its
  classifier, so CE shapes it) and is frozen during unlearning unless `unlearn_projection`;
- (a, b, c) presets per trigger are fields (`preset`), overridable one by one;
- a fresh teacher trains on the student's device; a teacher reused from the cache stays where it
  is, and its features are moved to the student's device and dtype in the loss (its logits to
  the student's device)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from pydantic import Field

from poisonlab.data import Example
from poisonlab.defenses.repair_base import (REPAIRS, RepairConfig, RepairDefense, RepairedModel,
                                            tuning_field)
from poisonlab.registry import component_field
from poisonlab.runtime import Runtime, model_device
from poisonlab.models import LoadedModel
from poisonlab.models.cache import ModelCache
from poisonlab.training import TrainingConfig, encode_texts, train_classifier
from poisonlab.training.losses import pool_hidden, unlearning_loss
from poisonlab.training.trainer import LossFn, collate, to_device
from poisonlab.tuning import TUNING_STRATEGIES, TuningStrategy
from poisonlab.seeding import seeded

# (a, b, c) of the reference code per trigger.
PRESETS: dict[str, tuple[float, float, float]] = {
    "badnet": (5.0, 0.001, 0.001), "insertsent": (3.0, 0.01, 0.001),
    "syntactic": (1.0, 0.035, 0.002)}


class W2SDefenseConfig(RepairConfig):
    tuning: component_field(TUNING_STRATEGIES) = tuning_field(
        {"name": "lora", "r": 512, "alpha": 512},
        "student PEFT; default LoRA r = alpha = 512 on q/v (peft's defaults); without a name the "
        "fields change that default (e.g. --set tuning.r=64)")
    teacher: str = Field("minilm", description="small model fully fine-tuned as the teacher")
    teacher_training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=4, learning_rate=1e-4, max_length=64),
        description="teacher fine-tuning settings")
    teacher_pooling: Literal["mean", "first"] = Field(
        "mean", description="teacher feature: masked mean (MiniLM's sentence embedding) or [CLS]")
    preset: Literal["badnet", "insertsent", "syntactic"] = Field(
        "badnet", description="(a, b, c) of the reference code for this trigger")
    a: float | None = Field(None, ge=0, description="CE weight; null: from preset")
    b: float | None = Field(None, ge=0, description="KD weight; null: from preset")
    c: float | None = Field(None, ge=0, description="feature-alignment weight; null: from preset")
    temperature: float = Field(2.0, gt=0, description="distillation temperature T")
    alignment: Literal["per_example", "reference"] = Field(
        "per_example", description="per_example: feature i vs pooled student i; reference: the "
                                   "batch's last teacher feature vs every student token")
    student_pooling: Literal["last", "mean", "first"] = Field(
        "last", description="student feature for per_example alignment (causal: last; "
                            "encoder: first)")
    unlearn_projection: bool = Field(False, description="train the projection during unlearning")

    def weights(self) -> tuple[float, float, float]:
        preset = PRESETS[self.preset]
        return tuple(p if v is None else v  # type: ignore[return-value]
                     for p, v in zip(preset, (self.a, self.b, self.c)))


@dataclass
class TeacherOutput:
    logits: torch.Tensor
    features: torch.Tensor


class ProjectedTeacher(torch.nn.Module):
    """Encoder -> pooled feature -> projection to the student's hidden size -> classifier."""

    def __init__(self, encoder: torch.nn.Module, student_hidden: int, num_labels: int,
                 pooling: str):
        super().__init__()
        self.encoder = encoder
        self.projection = torch.nn.Linear(encoder.config.hidden_size, student_hidden)
        self.classifier = torch.nn.Linear(student_hidden, num_labels)
        self.pooling = pooling

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool_hidden(hidden, attention_mask, self.pooling)  # type: ignore[arg-type]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **_: Any) -> TeacherOutput:
        features = self.projection(self.pooled(input_ids, attention_mask))
        return TeacherOutput(self.classifier(features), features)


def teacher_key(config: W2SDefenseConfig, student_hidden: int, num_labels: int,
                clean_train: Sequence[Example]) -> tuple[str, str]:
    """What a trained teacher depends on (its model, pooling and training, the student's hidden
    size and labels, the clean data): repairs of a study whose keys are equal share one."""
    return ("w2sdefense-teacher", hashlib.sha256(json.dumps([
        config.teacher, config.teacher_pooling, config.teacher_training.model_dump(),
        student_hidden, num_labels, [(e.text, e.label) for e in clean_train]]).encode()
    ).hexdigest())


def train_teacher(config: W2SDefenseConfig, student_hidden: int, num_labels: int,
                  clean_train: Sequence[Example], *, progress: bool = False,
                  cache: ModelCache | None = None, device: torch.device | None = None,
                  runtime: Runtime | None = None) -> tuple[ProjectedTeacher, Any]:
    """The fine-tuned teacher and its tokenizer. With a cache, a teacher trained for an equal
    `teacher_key` is reused (every repair of a study trains the same teacher on the same clean
    data) and the caller gets its own copy, since unlearning may train the projection. A fresh
    teacher is initialised on the host (the same weights whatever the device) and trained on
    `device` (default: where the encoder loads), through `runtime` when given."""
    from poisonlab.models.loading import load_encoder

    def make() -> tuple[ProjectedTeacher, Any]:
        loaded = load_encoder(config.teacher, seed=config.teacher_training.seed)
        with seeded(config.teacher_training.seed):
            teacher = ProjectedTeacher(loaded.model, student_hidden, num_labels,
                                       config.teacher_pooling)
        if device is not None:
            teacher.to(device)
        teacher.requires_grad_(True)
        train_classifier(teacher, loaded.tokenizer, clean_train, config.teacher_training,
                         progress=progress, description="w2s teacher", runtime=runtime)
        teacher.zero_grad(set_to_none=True)  # unlearning must not see the teacher's gradients
        return teacher, loaded.tokenizer

    if cache is None:
        teacher, tokenizer = make()
        return teacher.eval(), tokenizer
    teacher, tokenizer = cache.get_or_make(
        teacher_key(config, student_hidden, num_labels, clean_train), make)
    return copy.deepcopy(teacher).eval(), tokenizer


class _StudentAndProjection(torch.nn.Module):
    """What the optimizer sees: the student (its adapter) and, when unlearned, the projection."""

    def __init__(self, student: torch.nn.Module, projection: torch.nn.Module):
        super().__init__()
        self.student = student
        self.projection = projection


@dataclass
class UnlearningSetup:
    strategy: TuningStrategy
    modules: _StudentAndProjection  # what the optimizer trains
    teacher: ProjectedTeacher
    loss_fn: LossFn


@REPAIRS.register("w2sdefense", W2SDefenseConfig)
class W2SDefense(RepairDefense):
    """W2SDefense (Zhao et al. 2025): weak-to-strong distillation unlearning with a LoRA student."""

    config: W2SDefenseConfig
    conformance = {"teacher": "tiny-bert",  # a tiny teacher, trained in a second
                   "teacher_training": {"epochs": 3, "learning_rate": 1e-3, "max_length": 32}}

    def repair(self, suspect: LoadedModel, clean_train: Sequence[Example], *,
               progress: bool = False, cache: ModelCache | None = None,
               runtime: Runtime | None = None) -> RepairedModel:
        run = self.setup(suspect, clean_train, progress=progress, cache=cache, runtime=runtime)
        modules = run.modules
        history = train_classifier(modules, suspect.tokenizer, clean_train, self.config.training,
                                   loss_fn=run.loss_fn, progress=progress,
                                   description="w2sdefense", runtime=runtime)
        state = run.strategy.trainable_state(modules.student)
        if self.config.unlearn_projection:
            state.update({f"w2s_projection.{n}": p.detach().cpu().contiguous()
                          for n, p in modules.projection.named_parameters()})
        return RepairedModel(modules.student.eval(), suspect.tokenizer, state, history)

    def setup(self, suspect: LoadedModel, clean_train: Sequence[Example], *,
              progress: bool = False, cache: ModelCache | None = None,
              runtime: Runtime | None = None) -> "UnlearningSetup":
        """Train (or reuse from `cache`) the teacher, freeze it (the projection too unless
        `unlearn_projection`), wrap the student, and build the student's loss."""
        cfg = self.config
        student_config = suspect.model.config
        teacher, teacher_tokenizer = train_teacher(
            cfg, student_config.hidden_size, student_config.num_labels, clean_train,
            progress=progress, cache=cache, device=model_device(suspect.model), runtime=runtime)
        teacher.eval().requires_grad_(False)
        teacher.projection.requires_grad_(cfg.unlearn_projection)
        strategy, student = self.wrap(suspect)
        modules = _StudentAndProjection(student, teacher.projection)
        return UnlearningSetup(strategy, modules, teacher,
                               self.loss_fn(teacher, teacher_tokenizer, clean_train))

    def loss_fn(self, teacher: ProjectedTeacher, teacher_tokenizer: Any,
                clean_train: Sequence[Example]) -> LossFn:
        """The student's loss; the teacher's tokenization of example i is looked up by index."""
        cfg = self.config
        a, b, c = cfg.weights()
        teacher_ids = encode_texts(teacher_tokenizer, [e.text for e in clean_train],
                                   cfg.training.max_length)
        teacher_pad = teacher_tokenizer.pad_token_id or 0

        def loss(modules: _StudentAndProjection, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            teacher_batch = to_device(collate([teacher_ids[i] for i in batch["index"].tolist()],
                                              teacher_pad), model_device(teacher))
            teacher.eval()
            with torch.no_grad():
                pooled = teacher.pooled(**teacher_batch)
            features = modules.projection(pooled)
            teacher_logits = teacher.classifier(features).detach()
            out = modules.student(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"],
                                  output_hidden_states=True)
            student_hidden = out.hidden_states[-1]
            # the teacher may sit on another device or in another dtype than the student: its
            # features take the student's (the logits keep their precision; KD promotes)
            features = features.to(student_hidden.device, student_hidden.dtype)
            teacher_logits = teacher_logits.to(out.logits.device)
            return unlearning_loss(
                out.logits, batch["labels"], teacher_logits, features, student_hidden,
                batch["attention_mask"], a=a, b=b, c=c, temperature=cfg.temperature,
                mode=cfg.alignment, pooling=cfg.student_pooling).total
        return loss
