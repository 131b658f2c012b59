"""Which modules LoRA adapts, for reward_modeling.py and ppo.py alike: names given on the command
line, checked against the model before any data loads, or a default read from the model itself.

peft chooses defaults only for the architectures in its own table and raises for the rest
(DistilBERT among them: "Please specify `target_modules`"); here those get the model's attention
query and value projections, the pair the LoRA paper adapts (Hu et al. 2021, section 7.1). Tested in
tests/test_lora.py.
"""

from __future__ import annotations

import logging

from torch import nn

import cmdline

# bitsandbytes (QLoRA; imported by peft and TRL whenever it is installed) warns at every import, on
# CPUs with AVX512-BF16, that the optional hub kernel package `kernels` is missing; it then uses its
# own CPU kernel, which is what runs here. Quieted so every run does not open with a false alarm.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# peft's shorthand for every Linear layer but the output layer (LoraConfig.target_modules docs)
ALL_LINEAR = "all-linear"
# Leaf names of separate query and value projections (DistilBERT, Llama/BART, BERT, DeBERTa-v2, T5,
# ...), tried in this order, then of fused query-key-value ones (GPT-2, GPT-NeoX, Phi-3, MPT, ...).
QUERY_VALUE = [
    ("q_lin", "v_lin"),
    ("q_proj", "v_proj"),
    ("query", "value"),
    ("query_proj", "value_proj"),
    ("q", "v"),
    ("wq", "wv"),
]
FUSED_QKV = ["c_attn", "query_key_value", "qkv_proj", "Wqkv", "qkv", "W_pack", "in_proj"]


def adaptable_modules(model: nn.Module) -> list[str]:
    """Full names of the modules a LoRA adapter can wrap: Linear, transformers' Conv1D (GPT-2's
    linear layers), Embedding."""
    from transformers.pytorch_utils import Conv1D

    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D, nn.Embedding))]


def leaf_names(module_names: list[str]) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name in module_names})


def default_target_modules(model: nn.Module) -> list[str]:
    """peft's default for the architecture where it has one (and the model has those modules), else
    the attention query/value projections found among the model's own layer names."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    leaves = set(leaf_names(adaptable_modules(model)))
    model_type = model.config.model_type
    peft_default = PEFT_DEFAULTS.get(model_type)
    if peft_default and set(peft_default) <= leaves:
        return list(peft_default)
    for query, value in QUERY_VALUE:
        if query in leaves and value in leaves:
            return [query, value]
    for fused in FUSED_QKV:
        if fused in leaves:
            return [fused]
    raise cmdline.UsageError(
        f"{model_type}: no default LoRA target modules (peft has none and no attention query/value "
        f"projection was recognised); name them with --lora_target_modules, from: {' '.join(sorted(leaves))}"
    )


def resolve_target_modules(model: nn.Module, requested: list[str] | str | None) -> list[str] | str:
    """The modules to adapt: `requested` once every name is found in `model`, else the default for
    its architecture. A name matches a module whose full name is it or ends in "." + it, as in peft
    (`q_lin` or `attention.q_lin`). A single string is one name (TRL's ModelConfig turns a one-item
    list into a string, which peft would read as a regular expression), except peft's "all-linear"."""
    names = [requested] if isinstance(requested, str) else list(requested or [])
    if not names:
        return default_target_modules(model)
    if names == [ALL_LINEAR]:
        return ALL_LINEAR
    found = adaptable_modules(model)
    missing = [name for name in names if not any(f == name or f.endswith("." + name) for f in found)]
    if missing:
        raise cmdline.UsageError(
            f"--lora_target_modules {' '.join(missing)}: no such Linear/Conv1D/Embedding module in this "
            f"{model.config.model_type} model; its modules are: {' '.join(leaf_names(found))}"
        )
    return names


def resolve_target_modules_from_config(
    path: str, requested: list[str] | str | None, task: str, trust_remote_code: bool = False
) -> list[str] | str:
    """`resolve_target_modules` on an empty copy of the model built on the meta device from its config
    alone (no weights read, no memory): a misspelt module name fails in seconds, before the data and
    the weights load. `task`: "causal" (a policy), "seq2seq" (an encoder-decoder policy) or "reward"
    (a 1-label sequence classifier)."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
    )

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if task == "reward":
        config.num_labels = 1
    auto = {
        "causal": AutoModelForCausalLM,
        "seq2seq": AutoModelForSeq2SeqLM,
        "reward": AutoModelForSequenceClassification,
    }[task]
    with torch.device("meta"):
        model = auto.from_config(config, trust_remote_code=trust_remote_code)
    return resolve_target_modules(model, requested)


# --- Quantized backbones (QLoRA: Dettmers et al. 2023) ---

# Where bitsandbytes' quantized layers run, for the refusals below: bitsandbytes 0.50.2 loaded, trained
# (LoRA backward) and sampled 4-bit and 8-bit models on this repo's x86-64 CPU (tests/test_quantized.py)
# as well as on CUDA GPUs.
BNB_RUNS_ON = "CUDA GPUs and x86-64 CPUs with bitsandbytes >= 0.50"


def quantization_flag(load_in_4bit: bool, load_in_8bit: bool) -> str | None:
    """The quantization flag that is set (`--load_in_4bit` / `--load_in_8bit`), or None."""
    return "--load_in_4bit" if load_in_4bit else "--load_in_8bit" if load_in_8bit else None


def require_quantization(flag: str, use_peft: bool) -> None:
    """Refuse a quantized load that cannot run or cannot train, before any data or weights load:
    bitsandbytes missing, or no LoRA (quantized weights have no gradients: only adapters train)."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise cmdline.UsageError(
            f"{flag} needs bitsandbytes, which is not installed (`pip install bitsandbytes`; it runs on "
            f"{BNB_RUNS_ON})"
        )
    if not use_peft:
        raise cmdline.UsageError(
            f"{flag} needs --use_peft=True: quantized weights are frozen, only LoRA adapters train (QLoRA)"
        )


def kbit_device_map() -> dict[str, int | str]:
    """Where a quantized model loads: the whole model on this process's device (TRL's former
    `get_kbit_device_map`, dropped from TRL 1.x): bitsandbytes quantizes the weights as they are
    placed, and a quantized model cannot be moved to another device afterwards."""
    import torch
    from accelerate import PartialState

    return {"": PartialState().local_process_index} if torch.cuda.is_available() else {"": "cpu"}


def merge_in_full_precision(peft_model, load_full_precision):
    """The adapters of a LoRA model over a quantized backbone, merged into the backbone loaded again in
    full precision (`load_full_precision()`), as QLoRA models are released: peft's own merge into 4-bit
    or 8-bit layers quantizes W + BA again, which rounds away most of a small LoRA update, and the
    result would need bitsandbytes to load."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    config = peft_model.peft_config["default"]
    full = get_peft_model(load_full_precision(), config)
    set_peft_model_state_dict(full, get_peft_model_state_dict(peft_model))
    return full.merge_and_unload()


def prepare_quantized(model, gradient_checkpointing: bool):
    """A bitsandbytes-loaded model made ready for LoRA: peft's `prepare_model_for_kbit_training` (layer
    norms and float layers in float32, every weight frozen; the adapters come next) and one CPU weight
    format for sampling and training (`keep_one_cpu_weight_format`). Returns the model."""
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    keep_one_cpu_weight_format(model)
    return model


def keep_one_cpu_weight_format(model) -> None:
    """bitsandbytes (0.50) repacks a 4-bit layer's weights for its CPU inference kernel, with bf16 block
    scales, the first time the layer runs in eval mode without gradients on a CPU with AVX512-BF16, and
    keeps them so: sampling and training would then compute with different weights (PPO's first ratio
    would not be 1), and a layer narrower than one 64-value block fails. One format for both."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
