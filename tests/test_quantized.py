"""Quantized backbones (--load_in_4bit / --load_in_8bit, QLoRA) in reward_modeling.py and ppo.py, on a CPU.

bitsandbytes 0.50.2 (requirements.txt) runs its 4-bit and 8-bit layers on x86-64 CPUs: these tests run
where it is importable and skip elsewhere. The refusals are tested whatever is installed."""

import importlib.util
import json

import pytest
import torch
from test_cli_errors import assert_one_line_error, run_script
from test_ppo import LORA_FLAGS, make_trainer, read_metrics, record_first_log_ratio, run_ppo
from test_reward_modeling import CHOSEN, REJECTED, check_merged_adapters, check_saved_model, train, weights

import cmdline
import lora
import ppo
import ppo_models
import reward_modeling

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_bnb = pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed (pip install bitsandbytes)")


def spy(monkeypatch, module, name, seen: list, pick):
    """Wrap module.name so that `pick(result)` of each call is appended to `seen`."""
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append(pick(result))
        return result

    monkeypatch.setattr(module, name, wrapper)


@needs_bnb
@pytest.mark.parametrize("bits", [4, 8])
def test_reward_model_trains_lora_on_a_quantized_backbone(
    tiny_distilbert, pref_dir, tmp_path, monkeypatch, bits
):
    seen = []
    spy(
        monkeypatch,
        reward_modeling,
        "load_backbone",
        seen,
        lambda r: type(r[2].distilbert.transformer.layer[0].attention.q_lin).__name__,
    )
    out = tmp_path / "rm"
    metrics = train(
        tiny_distilbert,
        pref_dir,
        out,
        f"--load_in_{bits}bit=True",
        "--use_peft=True",
        "--lora_r=8",
        "--lora_alpha=16",
        "--learning_rate=1e-2",
    )
    # trained on bitsandbytes layers, then merged into the backbone loaded again in float32
    assert seen == [f"Linear{bits}bit" if bits == 4 else "Linear8bitLt", "Linear"]
    assert metrics["accuracy"] >= 0.9, metrics
    # merged adapters on the full-precision weights, not on their quantized round trip
    check_merged_adapters(weights(tiny_distilbert), weights(out))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    check_saved_model(out, CHOSEN, REJECTED)


@needs_bnb
def test_ppo_qlora_policy_raises_the_reward(word_policy, kind_rm, kind_data, tmp_path, monkeypatch):
    seen = []
    spy(monkeypatch, ppo, "build_policy_and_value", seen, lambda r: (r[0].policy.is_loaded_in_4bit, r[1]))
    # Phase 2's log-probs come from the merged_lora context, the training forward from peft's adapter
    # path: on 4-bit layers the two must agree, so the PPO ratio starts at exactly 1.
    first_log_ratio = record_first_log_ratio(monkeypatch)
    out = tmp_path / "ppo-qlora"
    result = run_ppo(
        word_policy,
        kind_rm,
        kind_data,
        out,
        "--load_in_4bit=True",
        *LORA_FLAGS,
    )
    assert seen == [(True, None)]  # a 4-bit policy, and no second copy: the reference is adapters off
    history = read_metrics(out)
    assert first_log_ratio[0].abs().max().item() < 1e-5
    assert history[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # LoRA B starts at zero
    assert history[-1]["objective/scores"] > history[0]["objective/scores"] + 0.3
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.3
    from transformers import AutoModelForCausalLM, pipeline

    text = pipeline("text-generation", model=str(out))("\n\nHuman: hi\n\nAssistant:", max_new_tokens=4)
    assert text[0]["generated_text"].startswith("\n\nHuman: hi")
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    base = AutoModelForCausalLM.from_pretrained(str(word_policy))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert not torch.equal(merged.lm_head.weight, base.lm_head.weight)  # adapters merged, in float32
    assert torch.equal(merged.transformer.h[0].mlp.c_fc.weight, base.transformer.h[0].mlp.c_fc.weight)


@needs_bnb
def test_merged_lora_keeps_quantized_layers_on_the_adapter_path(tiny_llama, kind_rm, kind_data, tmp_path):
    """merged_lora on a 4-bit Llama: the float lm_head's adapter is merged, the 4-bit q_proj/v_proj keep
    peft's adapter branch (B A s cannot be added to packed 4-bit weights); the log-probs are the adapter
    path's, the reference's bit for bit, and every weight is back, bit for bit, on exit."""
    tr = make_trainer(
        tiny_llama,
        kind_rm,
        kind_data,
        tmp_path,
        use_peft=True,
        lora_r=4,
        lora_target_modules=["q_proj", "v_proj", "lm_head"],
        load_in_4bit=True,
    )
    torch.manual_seed(1)
    for name, p in tr.policy.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.3)  # B starts at zero: make the adapters matter
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    ro = tr.rollout(list(range(8)), generator=torch.Generator().manual_seed(0))
    plain = tr.forward_logprobs(ro)
    merged_layers = []
    with ppo_models.merged_lora(tr.policy):
        merged_layers = [n for n, m in tr.policy.named_modules() if getattr(m, "merged", False)]
        merged = tr.forward_logprobs(ro)
    assert [n.rsplit(".", 1)[-1] for n in merged_layers] == ["lm_head"]
    quantized = [type(m).__name__ for n, m in tr.policy.named_modules() if n.endswith("q_proj.base_layer")]
    assert quantized == ["Linear4bit", "Linear4bit"]
    for a, b in zip(plain, merged):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)  # logprobs, ref_logprobs, values, entropy
    assert torch.equal(merged[1], plain[1])  # the reference: adapters off, base weights untouched
    after = tr.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_quantized_loading_without_bitsandbytes_is_refused(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(
        cmdline.UsageError, match=r"--load_in_8bit needs bitsandbytes.*CUDA GPUs and x86-64 CPUs"
    ):
        lora.require_quantization("--load_in_8bit", use_peft=True)


def test_quantized_refusals_come_before_anything_loads(tmp_path):
    missing = "bitsandbytes" if not HAS_BNB else "--use_peft=True"
    # No model, no data: the refusal comes first.
    proc = run_script(
        "reward_modeling.py",
        [
            "--load_in_4bit=True",
            f"--dataset_name={tmp_path / 'none.jsonl'}",
            f"--output_dir={tmp_path / 'rm'}",
        ],
        tmp_path,
    )
    assert_one_line_error(proc, "--load_in_4bit", missing)
    proc = run_script(
        "ppo.py",
        ["--load_in_8bit=True", f"--query_dataset={tmp_path / 'none.txt'}", f"--output_dir={tmp_path}"],
        tmp_path,
    )
    assert_one_line_error(proc, "--load_in_8bit", missing)
    proc = run_script("ppo.py", ["--load_in_8bit=True", "--load_in_4bit=True", "--use_peft=True"], tmp_path)
    assert_one_line_error(proc, "--load_in_4bit", "--load_in_8bit", "exclusive")
