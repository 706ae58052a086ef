"""Fine-tuning strategies: full, lora, prefix, prompt, ptuning, adapter, ia3 (see each module)."""

from poisonlab.tuning.base import TUNING_STRATEGIES, TuningStrategy, count_parameters

__all__ = ["TUNING_STRATEGIES", "TuningStrategy", "count_parameters"]
