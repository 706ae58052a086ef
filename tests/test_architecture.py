"""Architecture knowledge (poisonlab/models/architecture.py): the causal/encoder decision, the
per-family block layouts, and the module lookups every attack, defense and strategy relies on.

The tiny builtin models must resolve exactly the modules they always did: published numbers
depend on which modules adapters wrap, fine-pruning prunes and prompt tuning pools."""

import pytest
import torch

from poisonlab.errors import PoisonlabError
from poisonlab.models import LoadedModel, load_classifier
from poisonlab.models.architecture import (BLOCK_LAYOUTS, attention_modules, attention_output,
                                           ffn_activation_consumer, ffn_block_output,
                                           input_embeddings, is_causal, layer_submodule,
                                           model_kind, task_head, transformer_layers)
from poisonlab.tuning import TUNING_STRATEGIES

CAUSAL = ["llama", "gpt2", "opt", "qwen2_moe", "mixtral", "olmo2", "granite", "gpt_oss",
          "modernbert-decoder"]
ENCODER = ["bert", "roberta", "distilbert", "xlm-roberta", "electra", "deberta-v2", "xlnet",
           "bert-generation",
           "bart", "t5", "whisper"]  # encoder-decoders: not decoder-only
# The hand-written list this module replaced: every type in it must stay causal.
FORMER_CAUSAL_TYPES = ["llama", "gpt2", "opt", "mistral", "qwen2", "qwen3", "gemma", "gemma2",
                       "gemma3", "gemma3_text", "phi", "phi3", "gpt_neox", "falcon", "bloom",
                       "smollm3"]


def config_for(model_type, **values):
    from transformers import AutoConfig
    return AutoConfig.for_model(model_type, **values)


def tiny_config(model_type):
    """A 2-layer, hidden-32 config of any architecture (MoE: 4 small experts)."""
    config = config_for(model_type, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, vocab_size=100)
    present = config.to_dict()
    for key, value in {"num_key_value_heads": 2, "head_dim": 8, "num_experts": 4,
                       "num_local_experts": 4, "moe_intermediate_size": 16,
                       "shared_expert_intermediate_size": 16}.items():
        if key in present:
            setattr(config, key, value)
    config.pad_token_id = 0
    return config


def names_of(model, modules):
    by_id = {id(m): n for n, m in model.named_modules()}
    return [by_id[id(m)] for m in modules]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model_type", sorted(set(CAUSAL + FORMER_CAUSAL_TYPES)))
def test_decoder_only_types_are_causal(model_type):
    config = config_for(model_type)
    assert is_causal(config) and model_kind(config) == "causal"


@pytest.mark.parametrize("model_type", ENCODER)
def test_encoders_and_encoder_decoders_are_not_causal(model_type):
    """bert, roberta, bart, ... also have a causal-LM head class; that must not make them causal."""
    config = config_for(model_type)
    assert not is_causal(config) and model_kind(config) == "encoder"


def test_a_bert_built_as_decoder_is_causal():
    assert is_causal(config_for("bert", is_decoder=True))


def test_unknown_types_use_their_architectures():
    """Remote-code models: transformers has no mapping entry; the class name decides."""
    from transformers import PretrainedConfig
    causal, encoder = PretrainedConfig(), PretrainedConfig()
    causal.model_type, causal.architectures = "mystery-lm", ["MysteryForCausalLM"]
    encoder.model_type, encoder.architectures = "mystery-bert", ["MysteryModel"]
    assert is_causal(causal) and not is_causal(encoder)


@pytest.mark.parametrize("name, expected", [
    ("tiny-bert", {"kind": "encoder", "layers": "bert.encoder.layer", "head": "classifier",
                   "ffn_block_output": "output.dense", "ffn_activation_consumer": "output.dense",
                   "attention_output": "attention.output.dense",
                   "attention": "attention.self", "embeddings": "bert.embeddings.word_embeddings"}),
    ("tiny-llama", {"kind": "causal", "layers": "model.layers", "head": "score",
                    "ffn_block_output": "mlp", "ffn_activation_consumer": "mlp.down_proj",
                    "attention_output": "self_attn.o_proj",
                    "attention": "self_attn", "embeddings": "model.embed_tokens"}),
])
def test_builtin_models_resolve_the_same_modules_as_before(name, expected):
    loaded = load_classifier(name, seed=0)
    model, config = loaded.model, loaded.model.config
    assert loaded.kind == model_kind(config) == expected["kind"]
    layers = transformer_layers(model)
    assert names_of(model, layers) == [f"{expected['layers']}.{i}" for i in range(2)]
    assert task_head(model) == (expected["head"], getattr(model, expected["head"]))
    for role, path in [("ffn_block_output", ffn_block_output(config)),
                       ("ffn_activation_consumer", ffn_activation_consumer(config)),
                       ("attention_output", attention_output(config))]:
        assert path == expected[role], role
        module = layer_submodule(layers[1], path, role)
        assert names_of(model, [module]) == [f"{expected['layers']}.1.{path}"]
    assert names_of(model, attention_modules(model)) == [
        f"{expected['layers']}.{i}.{expected['attention']}" for i in range(2)]
    assert names_of(model, [input_embeddings(model)]) == [expected["embeddings"]]


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_layerwise_head_on_the_last_layer_gives_the_model_logits(name):
    """The layerwise attack pools each layer as the model's own head pools the last one."""
    from poisonlab.attacks.layerwise import head_logits
    loaded = load_classifier(name, seed=0)
    batch = loaded.tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = loaded.model(**batch, output_hidden_states=True)
        pooled = head_logits(loaded.model, out.hidden_states[-1], batch["attention_mask"])
    assert batch["attention_mask"][1, -1] == 0  # a padded row: pooling must skip the pad
    torch.testing.assert_close(pooled, out.logits)


@pytest.mark.parametrize("model_type", sorted(BLOCK_LAYOUTS))
def test_every_block_layout_names_real_modules(model_type):
    from transformers import AutoModel
    config = tiny_config(model_type)
    layer = transformer_layers(AutoModel.from_config(config))[0]
    layout = BLOCK_LAYOUTS[model_type]
    layer_submodule(layer, layout.ffn_block_output, "ffn_module")
    layer_submodule(layer, layout.attention_output, "attention_module")
    if layout.ffn_activation_consumer:  # its input columns are the FFN units fine-pruning cuts
        consumer = layer_submodule(layer, layout.ffn_activation_consumer, "ffn_output")
        assert isinstance(consumer, torch.nn.Linear)
        assert consumer.out_features == config.hidden_size != consumer.in_features


def test_an_unknown_architecture_names_the_config_field_to_set():
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_config(tiny_config("megatron-bert"))
    assert ffn_block_output(model.config) == ""
    loaded = LoadedModel(model, None, "encoder", "megatron")
    with pytest.raises(PoisonlabError, match=r"no module '' in MegatronBertLayer; set "
                                             r"'ffn_module' to one of: .*output\.dense"):
        TUNING_STRATEGIES.build("adapter").apply(loaded)
    moe_layer = transformer_layers(AutoModelForSequenceClassification.from_config(
        tiny_config("qwen2_moe")))[0]
    with pytest.raises(PoisonlabError, match="set 'ffn_output' to one of: .*mlp.experts"):
        layer_submodule(moe_layer, ffn_activation_consumer("qwen2_moe"), "ffn_output")


@pytest.mark.parametrize("model_type", ["qwen2_moe", "olmo2", "bert"])
def test_prompt_tuning_pools_as_the_architecture_says(model_type):
    """A Qwen-MoE or OLMo-2 classifier takes the causal path (last real token), BERT does not."""
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_config(tiny_config(model_type))
    for strategy in ("prompt", "ptuning"):
        prompted = TUNING_STRATEGIES.build(strategy).apply(
            LoadedModel(model, None, "encoder", model_type))  # a wrong kind must not matter
        assert prompted.causal == (model_type != "bert")
