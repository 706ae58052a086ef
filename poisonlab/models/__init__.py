"""Loading victims, teachers and language models: builtin names, local folders, Hub ids;
safetensors only; loading options (dtype, device_map, attention, quantization) and the check of
which of them a training job may use. What poisonlab knows about architectures (causal or
encoder, where the FFN, attention and task head are) is in `poisonlab.models.architecture`."""

from poisonlab.models.loading import (LoadedModel, check_load_options, check_model_source,
                                      check_trainable, load_causal_lm, load_classifier,
                                      load_tokenizer)

__all__ = ["LoadedModel", "check_load_options", "check_model_source", "check_trainable",
           "load_classifier", "load_causal_lm", "load_tokenizer"]
