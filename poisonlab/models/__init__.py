"""Loading victims, teachers and language models: builtin names, local folders, Hub ids;
safetensors only. What poisonlab knows about architectures (causal or encoder, where the FFN,
attention and task head are) is in `poisonlab.models.architecture`."""

from poisonlab.models.loading import (LoadedModel, check_model_source, load_causal_lm,
                                      load_classifier, load_tokenizer)

__all__ = ["LoadedModel", "check_model_source", "load_classifier", "load_causal_lm",
           "load_tokenizer"]
