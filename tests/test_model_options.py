"""Model loading options (`model:` dtype, device_map, attn_implementation, quantization): fp32 by
default even from a bf16 checkpoint, the other dtypes on request, transformers' options reach the
model, quantization fails with one actionable line where bitsandbytes or a GPU is missing, and
`check_trainable` refuses what a training job cannot use."""

import importlib.util

import pytest
import torch

from poisonlab.config import load_config
from poisonlab.errors import ConfigError, PoisonlabError
from poisonlab.experiment.config import ModelConfig, RunConfig
from poisonlab.experiment.rundir import config_hash
from poisonlab.models.loading import (check_model_source, check_trainable, load_causal_lm,
                                      load_classifier, load_encoder)

NO_BITSANDBYTES = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None,
                                     reason="bitsandbytes is installed here")


def parameter_dtypes(model: torch.nn.Module) -> set[torch.dtype]:
    return {parameter.dtype for parameter in model.parameters()}


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def save_checkpoint(loaded, folder, dtype: torch.dtype):
    loaded.model.to(dtype).save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def bert_bf16(tmp_path_factory):
    """A tiny BERT classifier saved in bfloat16, as many Hub checkpoints are."""
    return save_checkpoint(load_classifier("tiny-bert", 2), tmp_path_factory.mktemp("bert16"),
                           torch.bfloat16)


@pytest.fixture(scope="module")
def llama_bf16(tmp_path_factory):
    return save_checkpoint(load_causal_lm("tiny-llama"), tmp_path_factory.mktemp("llama16"),
                           torch.bfloat16)


@pytest.fixture(scope="module")
def bert_fp32(tmp_path_factory):
    return save_checkpoint(load_classifier("tiny-bert", 2), tmp_path_factory.mktemp("bert32"),
                           torch.float32)


def load_from(kind: str, bert: str, llama: str, **options):
    if kind == "classifier":
        return load_classifier(bert, 2, **options)
    if kind == "encoder":
        return load_encoder(bert, **options)
    return load_causal_lm(llama, **options)


# ------------------------------------------------------------------------------------ dtype

@pytest.mark.parametrize("kind", ["classifier", "encoder", "causal"])
def test_default_loads_float32_from_a_bf16_checkpoint(kind, bert_bf16, llama_bf16):
    assert parameter_dtypes(load_from(kind, bert_bf16, llama_bf16).model) == {torch.float32}
    # None is what an unset `model.dtype` passes: float32 too.
    assert parameter_dtypes(load_from(kind, bert_bf16, llama_bf16, dtype=None).model) \
        == {torch.float32}


@pytest.mark.parametrize("kind", ["classifier", "encoder", "causal"])
def test_bfloat16_on_request(kind, bert_bf16, llama_bf16):
    loaded = load_from(kind, bert_bf16, llama_bf16, dtype="bfloat16")
    assert parameter_dtypes(loaded.model) == {torch.bfloat16}


def test_auto_keeps_the_checkpoint_dtype(bert_bf16, bert_fp32):
    assert parameter_dtypes(load_classifier(bert_bf16, 2, dtype="auto").model) == {torch.bfloat16}
    assert parameter_dtypes(load_classifier(bert_fp32, 2, dtype="auto").model) == {torch.float32}


@pytest.mark.parametrize("loader", [load_classifier, load_causal_lm, load_encoder])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_tiny_builtin_models_are_cast_after_construction(loader, dtype):
    name = "tiny-bert" if loader is not load_causal_lm else "tiny-llama"
    reference = loader(name, seed=3).model
    cast = loader(name, seed=3, dtype=dtype).model
    assert parameter_dtypes(reference) == {torch.float32}
    assert parameter_dtypes(cast) == {getattr(torch, dtype)}
    # the same seed gives the same initial weights, rounded: cast after building in fp32
    for (name_a, a), (name_b, b) in zip(reference.named_parameters(), cast.named_parameters()):
        assert name_a == name_b and torch.equal(a.to(b.dtype), b)


def test_a_bf16_classifier_runs(bert_bf16):
    loaded = load_classifier(bert_bf16, 2, dtype="bfloat16")
    batch = loaded.tokenizer(["a good film"], return_tensors="pt")
    assert loaded.model(**batch).logits.dtype == torch.bfloat16


# ----------------------------------------------------------------- attention and placement

@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_attn_implementation_reaches_the_model_config(implementation, bert_bf16, llama_bf16):
    for loaded in (load_classifier(bert_bf16, 2, attn_implementation=implementation),
                   load_causal_lm(llama_bf16, attn_implementation=implementation),
                   load_classifier("tiny-bert", 2, attn_implementation=implementation),
                   load_causal_lm("tiny-llama", attn_implementation=implementation)):
        assert loaded.model.config._attn_implementation == implementation


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None,
                    reason="flash-attn is installed here")
@pytest.mark.parametrize("name", ["tiny-llama", "folder"])
def test_flash_attention_without_its_package_is_one_line(name, llama_bf16):
    name = llama_bf16 if name == "folder" else name
    with pytest.raises(PoisonlabError) as error:
        load_causal_lm(name, attn_implementation="flash_attention_2")
    assert one_line(error).startswith("attn_implementation: flash_attention_2 cannot be used "
                                      f"for model '{name}': ")


@pytest.mark.parametrize("device_map", ["auto", "cpu", {"": "cpu"}])
def test_device_map_places_checkpoints_and_tiny_models(device_map, llama_bf16):
    for name in (llama_bf16, "tiny-llama"):
        loaded = load_causal_lm(name, device_map=device_map)
        assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
        assert parameter_dtypes(loaded.model) == {torch.float32}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_device_map_naming_a_missing_gpu_is_one_line():
    for device_map in ("cuda", 0, {"": "cuda:1"}):
        with pytest.raises(ConfigError) as error:
            load_causal_lm("tiny-llama", device_map=device_map)
        assert "no CUDA device is available here" in one_line(error)


# ------------------------------------------------------------------------------ quantization

@NO_BITSANDBYTES
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantization_without_bitsandbytes_names_the_extra(quantization, bert_bf16, llama_bf16):
    for load in (lambda **o: load_classifier(bert_bf16, 2, **o),
                 lambda **o: load_causal_lm(llama_bf16, **o),
                 lambda **o: load_classifier("tiny-bert", 2, **o),
                 lambda **o: check_model_source(bert_bf16, **o)):
        with pytest.raises(PoisonlabError) as error:
            load(quantization=quantization)
        assert one_line(error) == (f"quantization: {quantization} loading needs bitsandbytes, "
                                   "which is not installed: pip install poisonlab[quantization]")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None or torch.cuda.is_available(),
                    reason="needs bitsandbytes installed and no CUDA device")
def test_quantization_without_a_gpu_is_one_line(bert_bf16):
    with pytest.raises(PoisonlabError) as error:
        load_classifier(bert_bf16, 2, quantization="4bit")
    assert "need a CUDA GPU" in one_line(error)


def test_check_trainable_refuses_full_fine_tuning_of_quantized_weights():
    with pytest.raises(ConfigError) as error:
        check_trainable(ModelConfig(name="org/model", quantization="4bit"), "full")
    assert one_line(error).startswith("model.quantization: 4bit weights cannot be fully "
                                      "fine-tuned (tuning: full)")
    for strategy in ("lora", "ia3", "prefix", "prompt", "ptuning", "adapter"):
        check_trainable(ModelConfig(quantization="4bit"), strategy)  # QLoRA and friends
        check_trainable(ModelConfig(quantization="8bit"), strategy)


def test_check_trainable_refuses_inference_only_options():
    check_trainable(ModelConfig(), "full")
    check_trainable(ModelConfig(dtype="bfloat16"), "full")  # explicit: the user's choice
    with pytest.raises(ConfigError, match=r"^model\.dtype: auto keeps the checkpoint's dtype"):
        check_trainable(ModelConfig(dtype="auto"), "lora")
    with pytest.raises(ConfigError, match=r"^model\.device_map is for inference-only jobs"):
        check_trainable(ModelConfig(device_map="auto"), "full")


# ---------------------------------------------------------------------------------- config

def run_config(**model):
    return load_config(RunConfig, base={"data": {"name": "sst2"},
                                        "model": {"name": "tiny-bert", **model}})


@pytest.mark.parametrize("field, value", [
    ("dtype", "fp32"), ("dtype", "int8"), ("attn_implementation", "flash"),
    ("quantization", "4-bit"), ("quantization", 4), ("device_map", "gpu"),
    ("device_map", True), ("device_map", {"": -1}), ("device_map", ["cpu"])])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        run_config(**{field: value})
    assert f"field 'model.{field}'" in one_line(error)


@pytest.mark.parametrize("option, value", [("dtype", "fp32"), ("attn_implementation", "flash"),
                                           ("quantization", "4-bit"), ("device_map", "gpu")])
def test_bad_values_passed_to_a_loader_name_the_option(option, value):
    with pytest.raises(ConfigError) as error:
        load_classifier("tiny-bert", 2, **{option: value})
    assert one_line(error).startswith(f"{option}: ")


def test_new_fields_leave_finished_runs_current():
    """The run protocol hashes the resolved config without nulls: unset options add nothing."""
    resolved = run_config().resolved()
    before = {**resolved, "model": {k: v for k, v in resolved["model"].items()
                                    if k in ("name", "allow_pickle", "trust_remote_code")}}
    assert config_hash(resolved) == config_hash(before)


def test_load_options_are_the_loaders_keyword_arguments():
    config = run_config(dtype="bfloat16", attn_implementation="eager", device_map="cpu").model
    assert config.load_options() == {
        "dtype": "bfloat16", "device_map": "cpu", "attn_implementation": "eager",
        "quantization": None, "allow_pickle": False, "trust_remote_code": False}
    check_model_source(config.name, **config.load_options())
    loaded = load_classifier(config.name, 2, seed=0, **config.load_options())
    assert parameter_dtypes(loaded.model) == {torch.bfloat16}
    assert loaded.model.config._attn_implementation == "eager"


# ------------------------------------------------------------------- the embedded GGUF model

@pytest.mark.integration
def test_the_gguf_model_honours_dtype_and_attention():
    default = load_causal_lm("smollm2-135m")
    assert parameter_dtypes(default.model) == {torch.float32}
    half = load_causal_lm("smollm2-135m", dtype="bfloat16", attn_implementation="eager")
    assert parameter_dtypes(half.model) == {torch.bfloat16}
    assert half.model.config._attn_implementation == "eager"


def _run_config(synthetic_dir, tmp_path, **model):
    from poisonlab.experiment import load_run_config
    return load_run_config(base={
        "name": "run", "data": {"name": str(synthetic_dir), "train_size": 24, "test_size": 8},
        "model": {"name": "tiny-bert", **model}, "tuning": {"name": "full"},
        "training": {"epochs": 1, "max_length": 16}, "eval_every_epoch": False,
        "output_dir": str(tmp_path / "runs")})


@pytest.mark.parametrize("model, message", [({"dtype": "auto"}, "inference-only"),
                                            ({"device_map": "cpu"}, "inference-only")])
def test_a_run_refuses_inference_only_options_before_writing(model, message, synthetic_dir,
                                                              tmp_path):
    from poisonlab.experiment import run_experiment
    with pytest.raises(ConfigError, match=message):
        run_experiment(_run_config(synthetic_dir, tmp_path, **model), progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_run_loads_and_restores_in_its_dtype(synthetic_dir, tmp_path):
    """`model.dtype` reaches the loader of a run, and restoring the run folder (or using it as a
    suspect) loads the same dtype again."""
    from poisonlab.experiment import run_experiment
    from poisonlab.experiment.pipeline import prepare_run
    from poisonlab.experiment.restore import restore_run, suspect_from_run
    config = _run_config(synthetic_dir, tmp_path, dtype="bfloat16")
    assert parameter_dtypes(prepare_run(config).loaded.model) == {torch.bfloat16}
    run_experiment(config, progress=False)
    assert parameter_dtypes(restore_run(config.run_dir).model) == {torch.bfloat16}
    assert parameter_dtypes(suspect_from_run(config.run_dir).load_weights().model) == {
        torch.bfloat16}


def test_icl_loads_in_its_dtype_and_keeps_a_device_map():
    from poisonlab.experiment.icl import ICLRunConfig, load_icl_model
    from poisonlab.runtime import Runtime
    bf16 = load_icl_model(ICLRunConfig(model="tiny-llama", dtype="bfloat16"))
    assert parameter_dtypes(bf16.model) == {torch.bfloat16}
    mapped = load_icl_model(ICLRunConfig(model="tiny-llama", device_map={"": "cpu"}))
    assert mapped.model.hf_device_map == {"": "cpu"}
    assert Runtime().place(mapped.model) is mapped.model
    with pytest.raises(ValueError, match="not a device"):
        ICLRunConfig(model="tiny-llama", device_map="gpu7")


def test_quantized_weights_are_prepared_for_qlora():
    """What the pipeline does to quantized weights before LoRA (checked on a bf16 tiny model
    that says it is 4-bit, since bitsandbytes needs a GPU): every weight frozen and in fp32,
    and LoRA then trains adapters on top."""
    from poisonlab.models.loading import prepare_quantized_for_training
    from poisonlab.tuning import TUNING_STRATEGIES
    loaded = load_classifier("tiny-bert", 2, dtype="bfloat16")
    loaded.model.is_loaded_in_4bit = True
    prepare_quantized_for_training(loaded.model)
    assert parameter_dtypes(loaded.model) == {torch.float32}
    assert not any(p.requires_grad for p in loaded.model.parameters())
    tuned = TUNING_STRATEGIES.build("lora", {}).apply(loaded)
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n or "classifier" in n for n in trainable), trainable
