"""One training loop for every classifier poisonlab trains, with a pluggable loss, and the one
learning-rate schedule every training loop (classifiers and MNER) uses."""

from poisonlab.training.schedule import linear_warmup_decay
from poisonlab.training.trainer import (RunTrainingConfig, TrainingConfig, encode_texts,
                                        predict_logits, predict_labels, train_classifier)

__all__ = ["RunTrainingConfig", "TrainingConfig", "encode_texts", "linear_warmup_decay",
           "predict_logits", "predict_labels", "train_classifier"]
