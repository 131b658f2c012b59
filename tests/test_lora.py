"""LoRA target modules (lora.py): a default for every backbone family when none is named, named
modules checked against the model before any data loads, and both scripts end to end with the
default, where only the adapters and the new heads may move."""

import json

import pytest
import torch

import lora
import ppo
import reward_modeling

# Tiny random models built from their configs: (config class, model class, config kwargs, default).
FAMILIES = {
    "distilbert": (
        "DistilBertConfig",
        "DistilBertForSequenceClassification",
        {"dim": 32, "hidden_dim": 64, "n_layers": 1, "n_heads": 2},
        ["q_lin", "v_lin"],  # not in peft's table: the model's own query/value projections
    ),
    "bert": (
        "BertConfig",
        "BertForSequenceClassification",
        {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        ["query", "value"],
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2ForSequenceClassification",
        {"n_embd": 32, "n_layer": 1, "n_head": 2},
        ["c_attn"],
    ),
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        ["q_proj", "v_proj"],
    ),
    "t5": (
        "T5Config",
        "T5ForConditionalGeneration",
        {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 1, "num_heads": 2},
        ["q", "v"],
    ),
    "bart": (
        "BartConfig",
        "BartForConditionalGeneration",
        {
            "d_model": 32,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
        },
        ["q_proj", "v_proj"],
    ),
}


def tiny_model(family: str):
    import transformers

    config_cls, model_cls, kwargs, _ = FAMILIES[family]
    config = getattr(transformers, config_cls)(vocab_size=128, **kwargs)
    return getattr(transformers, model_cls)(config)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_default_targets_are_attention_projections_peft_can_wrap(family):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(family)
    targets = lora.resolve_target_modules(model, None)
    assert targets == FAMILIES[family][3]
    adapted = get_peft_model(model, LoraConfig(r=2, target_modules=targets))
    wrapped = {name.rsplit(".", 1)[-1] for name, m in adapted.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(targets)


def test_named_targets_are_checked_against_the_model():
    model = tiny_model("distilbert")
    assert lora.resolve_target_modules(model, ["q_lin", "attention.v_lin"]) == ["q_lin", "attention.v_lin"]
    assert lora.resolve_target_modules(model, "q_lin") == ["q_lin"]  # TRL's one-item list
    assert lora.resolve_target_modules(model, ["all-linear"]) == "all-linear"
    with pytest.raises(ValueError, match=r"q_proj k_proj: .* its modules are: .*\bq_lin\b.*\bv_lin\b"):
        lora.resolve_target_modules(model, ["q_proj", "q_lin", "k_proj"])
    with pytest.raises(ValueError, match="lin1"):  # a module, but no layer LoRA can wrap
        lora.resolve_target_modules(model, ["attention"])


def cloned_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_only_adapters_and_heads_moved(before, after, targets, is_head):
    adapters = {k for k in before if ".lora_A." in k or ".lora_B." in k}
    heads = {k for k in before if is_head(k)}
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in adapters} == set(targets)
    assert heads
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved <= adapters | heads, sorted(moved - adapters - heads)  # base weights bit-identical
    # every adapter and head weight moved; a bias of the scalar output may not: the pairwise loss
    # depends on score differences only, so it gets no gradient
    assert adapters <= moved and {k for k in heads if k.endswith("weight")} <= moved


def rm_flags(model, data, out, *extra):
    return [
        f"--model_name_or_path={model}",
        f"--dataset_name={data}",
        f"--output_dir={out}",
        "--use_peft=True",
        "--lora_r=4",
        "--max_steps=2",
        "--per_device_train_batch_size=4",
        "--max_train_samples=8",
        "--max_eval_samples=4",
        "--learning_rate=1e-2",
        "--max_length=64",
        "--report_to=none",
        "--save_strategy=no",
        "--disable_tqdm=True",
        *extra,
    ]


RM_FAMILIES = [
    ("tiny_distilbert", ["q_lin", "v_lin"]),
    ("tiny_bert", ["query", "value"]),
    ("tiny_gpt2", ["c_attn"]),
    ("tiny_llama", ["q_proj", "v_proj"]),
]


@pytest.mark.parametrize("fixture, targets", RM_FAMILIES, ids=[f[0] for f in RM_FAMILIES])
def test_reward_model_lora_default_trains_only_adapters_and_head(
    fixture, targets, request, pref_dir, tmp_path, monkeypatch, capsys
):
    from transformers import TrainerCallback

    states = {}

    class AfterTraining(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            states["after"] = cloned_state(model)  # before main() merges the adapters

    build_trainer = reward_modeling.build_trainer

    def recording_build_trainer(*args, **kwargs):
        trainer = build_trainer(*args, **kwargs)
        states["before"] = cloned_state(trainer.model)
        trainer.add_callback(AfterTraining())
        return trainer

    monkeypatch.setattr(reward_modeling, "build_trainer", recording_build_trainer)
    out = tmp_path / "rm"
    reward_modeling.cli(rm_flags(request.getfixturevalue(fixture), pref_dir, out))
    assert f"[rm] LoRA r=4 on {targets}" in capsys.readouterr().out
    assert json.loads((out / "args.json").read_text())["model"]["lora_target_modules"] == targets
    # the new head (DistilBERT's pre_classifier + classifier, BERT's classifier, GPT-2/Llama's score)
    assert_only_adapters_and_heads_moved(
        states["before"], states["after"], targets, lambda k: ".modules_to_save." in k
    )


def test_one_named_module_reaches_peft_as_a_name(tiny_distilbert, pref_dir, tmp_path):
    """TRL's ModelConfig turns a one-item --lora_target_modules into a string, which peft would match
    as a regular expression against full module names (none is just "q_lin")."""
    out = tmp_path / "rm"
    reward_modeling.cli(rm_flags(tiny_distilbert, pref_dir, out, "--lora_target_modules", "q_lin"))
    assert json.loads((out / "args.json").read_text())["model"]["lora_target_modules"] == ["q_lin"]


def ppo_flags(policy, rm, data, out, *extra):
    return [
        f"--model_name={policy}",
        f"--reward_model={rm}",
        f"--query_dataset={data}",
        f"--output_dir={out}",
        "--use_peft=True",
        "--lora_r=4",
        "--batch_size=8",
        "--mini_batch_size=4",
        "--ppo_epochs=1",
        "--steps=16",
        "--response_length=4",
        "--learning_rate=1e-2",
        "--eval_samples=4",
        "--sample_every=0",
        "--num_samples=0",  # no sample table (it once crashed the final evaluation)
        "--seed=0",
        *extra,
    ]


@pytest.mark.parametrize("fixture, targets", RM_FAMILIES[2:], ids=[f[0] for f in RM_FAMILIES[2:]])
def test_policy_lora_default_trains_only_adapters_and_value_head(
    fixture, targets, request, kind_rm, kind_data, tmp_path, monkeypatch, capsys
):
    built = {}
    build = ppo.build_policy_and_value

    def recording_build(*args, **kwargs):
        model, ref, source = build(*args, **kwargs)
        built.update(model=model, before=cloned_state(model))
        return model, ref, source

    monkeypatch.setattr(ppo, "build_policy_and_value", recording_build)
    out = tmp_path / "ppo"
    # adapters kept apart on save: merging would fold them into the base weights in place
    ppo.cli(
        ppo_flags(request.getfixturevalue(fixture), kind_rm, kind_data, out, "--merge_lora_on_save=False")
    )
    assert f"LoRA r=4 on {targets}" in capsys.readouterr().out
    args = json.loads((out / "args.json").read_text())
    assert args["lora_target_modules"] == targets and args["value_model"] == "auto"  # auto: a scalar head
    assert "samples" not in json.loads((out / "eval.json").read_text())
    after = cloned_state(built["model"])
    assert_only_adapters_and_heads_moved(built["before"], after, targets, lambda k: k.startswith("value."))


def test_unknown_target_module_is_refused_before_the_data_loads(tiny_gpt2, kind_rm, tmp_path):
    missing = tmp_path / "no-such-data"
    with pytest.raises(ValueError, match=r"--lora_target_modules q_lin: .* its modules are: .*\bc_attn\b"):
        ppo.cli(ppo_flags(tiny_gpt2, kind_rm, missing, tmp_path / "ppo", "--lora_target_modules", "q_lin"))
    with pytest.raises(ValueError, match=r"--lora_target_modules c_attn: .* its modules are: .*\bq_lin\b"):
        reward_modeling.cli(rm_flags(kind_rm, missing, tmp_path / "rm", "--lora_target_modules", "c_attn"))
