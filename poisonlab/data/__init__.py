"""Data: examples (text + integer label), splits, and loaders for every source."""

from poisonlab.data.example import DatasetSplits, Example, labels, texts
from poisonlab.data.loading import DataConfig, load_dataset

__all__ = ["DataConfig", "DatasetSplits", "Example", "labels", "load_dataset", "texts"]
