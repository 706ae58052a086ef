"""One training loop for every classifier poisonlab trains, with a pluggable loss."""

from poisonlab.training.trainer import (TrainingConfig, encode_texts, predict_logits,
                                        predict_labels, train_classifier)

__all__ = ["TrainingConfig", "encode_texts", "predict_logits", "predict_labels",
           "train_classifier"]
