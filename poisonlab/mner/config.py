"""Typed MNER-QG config: what YAML (configs/mner/*.yaml) is validated against. Unknown keys are errors.

The `runtime:` section (poisonlab.runtime.RuntimeConfig) says where and how the job runs.

Load a file with `poisonlab.config.load_config(MnerConfig, path, overrides)`. A section class
carries an `Mner` prefix where a general config of the same concept exists
(`poisonlab.data.DataConfig`, `poisonlab.experiment.config.ModelConfig`,
`poisonlab.training.TrainingConfig`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poisonlab.config import StrictConfig
from poisonlab.errors import ConfigError
from poisonlab.runtime import RuntimeConfig


class MnerDataConfig(StrictConfig):
    dir: str = Field(description="folder with train.txt, valid.txt|dev.txt, test.txt; a relative "
                                 "path is tried in the working directory, then in the data directory")
    images: str | None = Field(None, description="image folder (<img_id>.png/.jpg); relative to dir")
    boxes: str | None = Field(None, description="box JSONL; relative to dir")
    train_limit: int | None = Field(None, ge=1, description="first N shuffled training tweets (by seed)")
    types: list[str] | None = Field(None, description="entity types; default: those in train")


class MnerModelConfig(StrictConfig):
    encoder: str = Field("minilm", description="builtin name, local folder or Hub id (BERT family)")
    encoder_dropout: float | None = Field(None, ge=0, lt=1, description="override the encoder's "
                                          "hidden and attention dropout; null keeps its own")
    image: bool = Field(True, description="use the image branch; false = text-only mode")
    image_size: int = Field(128, ge=32, description="images are resized to a square of this side")
    cnn_channels: list[int] = Field([16, 32, 64, 128, 128], min_length=5, max_length=5,
                                    description="channels of the 5 stride-2 CNN stages; the last "
                                                "three (strides 8/16/32) are the grounding scales")
    cnn_weights: str | None = Field(
        None, description="local safetensors file to start the CNN from: a SmallCNN state dict "
                          "or an MNER run's model.safetensors (its cnn.* tensors); null: random")
    fusion_dim: int = Field(128, ge=8)
    fusion_heads: int = Field(4, ge=1)
    visual_evidence: Literal["grounded", "max"] = Field(
        "grounded", description="what the NER heads read from the image: the fused cells pooled "
                                "under the grounding confidence, or the per-channel max over cells")
    max_length: int = Field(128, ge=16, description="query + tweet subword tokens")
    max_span_words: int = Field(10, ge=1, description="longest span the match head scores")
    queries: dict[str, str] | None = Field(None, description="override the query of a type")


class LossConfig(StrictConfig):
    start: float = 1.0
    end: float = 1.0
    match: float = 1.0
    existence: float = 0.5
    grounding: float = Field(1.0, description="0 disables the grounding loss (ablation)")
    weak_box_weight: float = Field(0.5, ge=0, description="grounding loss weight of weak boxes")
    no_box_means_absent: bool = Field(
        False, description="train a (tweet, type) with a real image and no box to ground to 'no "
                           "region'; set it only when every visible entity is boxed (synthetic set)")


class MnerTrainConfig(StrictConfig):
    epochs: float = Field(3, gt=0, description="may be fractional (e.g. 0.5 of an epoch)")
    batch_size: int = Field(8, ge=1, description="tweets per batch (x number of queries sequences)")
    lr: float = Field(5e-5, gt=0, description="encoder learning rate")
    head_lr: float = Field(1e-3, gt=0, description="CNN, fusion and heads learning rate")
    weight_decay: float = 0.01
    warmup: float = Field(0.1, ge=0, le=1)
    grad_clip: float = 1.0
    eval_batch_size: int = 32
    checkpoint_every: int = Field(200, ge=0, description="steps between resumable checkpoints "
                                                         "in the run folder; 0: none")


class DecodeConfig(StrictConfig):
    threshold: float = Field(0.5, gt=0, lt=1, description="start, end and match probabilities")
    existence_threshold: float | None = Field(
        0.5, description="drop a type's spans when P(type exists) is below; null = no gate")

    def with_threshold(self, threshold: float) -> DecodeConfig:
        if not 0 < threshold < 1:
            raise ConfigError(f"span threshold {threshold} is outside (0, 1)")
        return self.model_copy(update={"threshold": threshold})


class MnerConfig(StrictConfig):
    seed: int = 0
    data: MnerDataConfig
    model: MnerModelConfig = MnerModelConfig()
    loss: LossConfig = LossConfig()
    train: MnerTrainConfig = MnerTrainConfig()
    decode: DecodeConfig = DecodeConfig()
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig,
                                   description="device, mixed precision, gradient accumulation "
                                               "and checkpointing; the default trains as before")
