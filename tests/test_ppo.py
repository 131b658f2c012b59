"""ppo.py: rollouts, cross-tokenizer scoring, and end-to-end runs through its command line.

The end-to-end policy is a tiny GPT-2 (real GPT-2 vocabulary) whose output head is set so it samples
almost only a handful of words, half of them "kind" and half "curt"; the reward model is a tiny
DistilBERT (another tokenizer) trained by reward_modeling.py to prefer kind replies. PPO must move
the policy toward the kind words within a few updates."""

import contextlib
import json
import math
import os

import pytest
import torch
from conftest import ROOT, write_jsonl

import cmdline
import ppo
import ppo_models
import runtime


def run_ppo(policy, rm, data, out, *extra):
    return ppo.cli(
        [
            f"--model_name={policy}",
            f"--reward_model={rm}",
            f"--query_dataset={data}",
            f"--output_dir={out}",
            "--batch_size=16",
            "--mini_batch_size=8",
            "--ppo_epochs=4",
            "--steps=160",
            "--response_length=8",
            "--temperature=1.0",
            "--learning_rate=3e-3",
            "--init_kl_coef=0.01",
            "--eval_samples=32",
            "--sample_every=0",
            "--seed=0",
            "--num_samples=2",
            *extra,
        ]
    )


# LoRA on the word policy's attention and output layers, fast enough to move it in a few updates
LORA_FLAGS = [
    "--use_peft=True",
    "--lora_r=8",
    "--lora_alpha=16",
    "--lora_target_modules",
    "c_attn",
    "lm_head",
    "--learning_rate=1e-2",
]


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# The default precision is bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16, AMX),
# else float32: run both, whatever this machine is.
PRECISIONS = [pytest.param([], id="default"), pytest.param(["--bf16=False"], id="float32")]


def record_first_log_ratio(monkeypatch) -> list:
    """Records the log-ratio of the first training micro-batch (from ppo_math.policy_loss): before
    any optimizer step the training forward must reproduce phase 2's log-probs, so the PPO ratio
    starts at exactly 1."""
    first = []
    policy_loss = ppo.ppo_math.policy_loss

    def recording_policy_loss(new, old, *a, **k):
        if not first:
            first.append((new - old).detach())
        return policy_loss(new, old, *a, **k)

    monkeypatch.setattr(ppo.ppo_math, "policy_loss", recording_policy_loss)
    return first


@pytest.mark.parametrize("precision", PRECISIONS)
def test_ppo_raises_the_reward(word_policy, kind_rm, kind_data, tmp_path, monkeypatch, precision):
    first_log_ratio = record_first_log_ratio(monkeypatch)
    out = tmp_path / "ppo"
    result = run_ppo(word_policy, kind_rm, kind_data, out, *precision)
    history = read_metrics(out)
    assert len(history) == 10
    bf16 = json.loads((out / "args.json").read_text())["bf16"]
    assert bf16 is (bool(not precision) and runtime.native_bf16("cpu"))  # resolved, then recorded
    first = sum(m["objective/scores"] for m in history[:2]) / 2
    last = sum(m["objective/scores"] for m in history[-2:]) / 2
    assert last > first + 0.5, (first, last)
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.5
    assert result["win_rate"] > 0.7
    kls = [m["objective/kl"] for m in history]
    assert all(math.isfinite(k) for k in kls) and sum(kls) / len(kls) >= 0
    assert all(m["policy/grad_norm"] > 0 and m["val/grad_norm"] > 0 for m in history)
    assert first_log_ratio[0].abs().max().item() < 1e-5
    assert history[0]["objective/kl"] == 0.0  # the reference is the starting policy
    # eval.json is this run's final evaluation: the 32 held-out prompts after the last update
    eval_json = json.loads((out / "eval.json").read_text())
    assert eval_json == json.loads(json.dumps(result))
    assert (eval_json["prompts"], eval_json["update"]) == (32, 10)
    # The saved policy loads as a plain causal LM and in pipeline().
    from transformers import AutoModelForCausalLM, pipeline

    AutoModelForCausalLM.from_pretrained(str(out))
    text = pipeline("text-generation", model=str(out))("\n\nHuman: hi\n\nAssistant:", max_new_tokens=4)
    assert text[0]["generated_text"].startswith("\n\nHuman: hi")
    assert (out / "value_model.safetensors").exists() and (out / "args.json").exists()


@pytest.mark.parametrize(
    "flags, launcher, native, expected",
    [
        ([], None, True, (True, False)),  # bf16 hardware: bf16 by default
        ([], None, False, (False, False)),  # elsewhere float32
        (["--bf16=False"], None, True, (False, False)),
        (["--bf16"], None, False, (True, False)),  # asked for: emulated, but as asked
        (["--fp16=True"], None, True, (False, True)),
        ([], "bf16", False, (True, False)),  # accelerate launch --mixed_precision=bf16
        ([], "fp16", True, (False, True)),
        (["--bf16=False"], "bf16", True, (False, False)),  # a flag beats the launcher
    ],
)
def test_precision_default_follows_flags_then_launcher_then_hardware(
    monkeypatch, flags, launcher, native, expected
):
    monkeypatch.setattr(ppo.runtime, "native_bf16", lambda device_type: native)
    (args,) = cmdline.parse_args((ppo.PPOArguments,), flags, renamed=ppo.ALIASES)
    ppo.resolve_precision(args, "cpu", launcher or "no")
    assert (args.bf16, args.fp16) == expected


def test_float32_run_after_a_bf16_accelerator_in_the_same_process(word_policy, kind_rm, kind_data, tmp_path):
    """The accelerate state is shared within a process: after a bf16 Trainer (or Accelerator), prepare()
    would wrap the policy's forward in bf16 autocast and not the reference's, so their first-update
    log-probs would differ. --bf16=False must mean float32 for both."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # whatever earlier tests left in this process
    Accelerator(cpu=True, mixed_precision="bf16")
    try:
        out = tmp_path / "ppo"
        run_ppo(word_policy, kind_rm, kind_data, out, "--bf16=False", "--steps=16")
    finally:
        AcceleratorState._reset_state(True)
    assert json.loads((out / "args.json").read_text())["bf16"] is False
    assert read_metrics(out)[0]["objective/kl"] == 0.0


def test_fp16_scales_the_loss_and_survives_overflow(word_policy, kind_rm, kind_data, tmp_path, monkeypatch):
    """--fp16 scales the loss dynamically. Started at 2^24 the scaled gradients overflow float16:
    those steps are skipped, the scale halves each time, and training goes on from the steps that fit."""
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device: real(device, init_scale=2.0**24))
    out = tmp_path / "fp16"
    result = run_ppo(word_policy, kind_rm, kind_data, out, "--fp16=True")
    history = read_metrics(out)
    overflows = [m["fp16/overflow_steps"] for m in history]
    scales = [m["fp16/loss_scale"] for m in history]
    assert overflows[0] >= 4 and scales[0] == 2.0**24 / 2 ** overflows[0]
    assert scales == sorted(scales, reverse=True) and sum(overflows) < len(history) * 8 / 2
    assert all(m["faults/skipped_total"] == 0 for m in history)  # overflows are not faults
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.5
    assert json.loads((out / "args.json").read_text())["fp16"] is True


def test_ppo_with_lora_reference_is_adapters_off(word_policy, kind_rm, kind_data, tmp_path):
    out = tmp_path / "ppo-lora"
    result = run_ppo(
        word_policy,
        kind_rm,
        kind_data,
        out,
        *LORA_FLAGS,
    )
    history = read_metrics(out)
    assert history[-1]["objective/scores"] > history[0]["objective/scores"] + 0.3
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.3
    assert json.loads((out / "args.json").read_text())["value_model"] == "auto"
    assert history[0]["objective/kl"] == pytest.approx(
        0.0, abs=1e-5
    )  # LoRA B starts at zero: policy == reference
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(out))
    base = AutoModelForCausalLM.from_pretrained(str(word_policy))
    assert not torch.equal(
        merged.lm_head.weight, base.lm_head.weight
    )  # adapters merged into the saved policy
    assert torch.equal(merged.transformer.h[0].mlp.c_fc.weight, base.transformer.h[0].mlp.c_fc.weight)


@pytest.mark.parametrize(
    "policy, seq2seq", [("word_policy", False), ("word_t5", True)], ids=["causal", "seq2seq"]
)
def test_seed_command_line_parses_and_runs_one_update(
    policy, seq2seq, kind_rm, tmp_path, offline_wandb, request
):
    """The 2024 command (gpt2 replaced by a tiny local policy, causal or T5 with --use_seq2seq=True) on a
    first-prompt dataset like wentingzhao/anthropic-hh-first-prompt: one `user` column."""
    policy = request.getfixturevalue(policy)
    prompts = write_jsonl(tmp_path / "first-prompt.jsonl", [{"user": f"hello number {i}"} for i in range(80)])
    seed = (
        f"--exp_name=ppo --seed=0 --log_with=wandb --model_name={policy} --query_dataset={prompts} "
        f"--reward_model={kind_rm} --lora_alpha=16 --lora_r=16 --use_seq2seq={seq2seq} --trust_remote_code=False "
        "--use_peft=False --ppo_epochs=8"
    ).split()
    out = tmp_path / "out"
    extra = [
        "--steps=16",
        "--batch_size=16",
        "--mini_batch_size=16",
        "--response_length=4",
        "--eval_samples=8",
    ]
    result = ppo.cli(seed + [f"--output_dir={out}", *extra])
    assert len(read_metrics(out)) == 1
    assert result["prompts"] == 8
    assert json.loads((out / "config.json").read_text()).get("is_encoder_decoder", False) is seq2seq
    (run,) = offline_wandb.glob("offline-run-*")
    assert b"objective/scores" in next(run.glob("*.wandb")).read_bytes()


def test_left_padding_does_not_change_logprobs_or_values(word_policy, kind_rm):
    """Log-probs and values of a left-padded batch equal those of each sequence run alone."""
    model, _, _ = ppo_models.build_policy_and_value(str(word_policy), "critic")
    model.eval()
    torch.manual_seed(1)
    prompts = [[5, 6, 7, 8, 9], [11, 12]]
    responses = torch.randint(0, 1000, (2, 4))
    query, qmask = ppo_models.left_pad(prompts, 50256, "cpu")
    rmask = torch.ones_like(responses)
    logits, values = model(query, qmask, responses, rmask)
    batch_lp = torch.log_softmax(logits, -1).gather(-1, responses[..., None]).squeeze(-1)
    for i, p in enumerate(prompts):
        alone = torch.tensor([p])
        alone_logits, alone_values = model(
            alone, torch.ones_like(alone), responses[i : i + 1], rmask[i : i + 1]
        )
        alone_lp = torch.log_softmax(alone_logits, -1).gather(-1, responses[i : i + 1, :, None]).squeeze(-1)
        torch.testing.assert_close(batch_lp[i], alone_lp[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values[i], alone_values[0], atol=1e-5, rtol=1e-5)


def test_a_bf16_checkpoint_trains_with_float32_weights(tiny_gpt2, tmp_path):
    """Hub models are mostly saved in bf16, and transformers 5 loads them so: the policy, the critic
    and the reference must still hold float32 weights (--bf16 is autocast over them), and so must
    the reward model."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    policy_dir, rm_dir = tmp_path / "bf16-policy", tmp_path / "bf16-rm"
    AutoModelForCausalLM.from_pretrained(str(tiny_gpt2), dtype=torch.bfloat16).save_pretrained(policy_dir)
    rm = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_gpt2), num_labels=1, dtype=torch.bfloat16
    )
    rm.save_pretrained(rm_dir)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(rm_dir)
    assert (
        AutoModelForCausalLM.from_pretrained(str(policy_dir)).dtype == torch.bfloat16
    )  # what we guard against
    for value_model, reuse_rm in (("critic", False), ("critic", True), ("head", False)):
        model, ref, _ = ppo_models.build_policy_and_value(
            str(policy_dir), value_model, str(rm_dir) if reuse_rm else None
        )
        assert {p.dtype for m in (model, ref) for p in m.parameters()} == {torch.float32}, value_model
    rm, _, _ = ppo_models.load_reward_model(str(rm_dir), torch.device("cpu"), False)
    assert {p.dtype for p in rm.parameters()} == {torch.float32}


@pytest.mark.parametrize("kind", ["critic", "head"])
def test_response_logits_and_values_equal_a_full_forward(word_policy, kind_rm, kind):
    """The model reads the sequence without its last token and projects only the response positions;
    that must equal a plain forward over the whole sequence, read at positions P-1 .. P+T-2."""
    model, _, _ = ppo_models.build_policy_and_value(str(word_policy), kind)
    model.eval()
    torch.manual_seed(2)
    if kind == "head":  # a new value head starts at zero: give it weights, or any position reads 0
        torch.nn.init.normal_(model.value.weight)
    query, qmask = ppo_models.left_pad([[5, 6, 7, 8, 9], [11, 12]], 50256, "cpu")
    responses = torch.randint(0, 1000, (2, 3))
    ids = torch.cat([query, responses], 1)
    mask = torch.cat([qmask, torch.ones_like(responses)], 1)
    P = query.shape[1]
    with torch.no_grad():
        logits, values = model(query, qmask, responses, torch.ones_like(responses))
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)
        full = model.policy(
            input_ids=ids, attention_mask=mask, position_ids=position_ids, output_hidden_states=True
        )
        if kind == "head":
            hidden = full.hidden_states[-1]
            expected_values = model.value(hidden).squeeze(-1)
        else:
            hidden = model.value["trunk"](input_ids=ids, attention_mask=mask, position_ids=position_ids)
            expected_values = model.value["head"](hidden.last_hidden_state).squeeze(-1)
    assert logits.shape == (2, 3, full.logits.shape[-1])
    torch.testing.assert_close(logits, full.logits[:, P - 1 : -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, expected_values[:, P - 1 : -1], atol=1e-5, rtol=1e-5)


def test_fused_gelu_matches_gpt2_gelu_new_in_logits_and_gradients(tiny_gpt2, tmp_path):
    """fuse_gelu swaps every gelu_new module for torch's tanh GELU: same logits and gradients as the
    model as loaded (to float rounding), and the saved config still names gelu_new."""
    import copy

    from transformers import AutoModelForCausalLM
    from transformers.activations import GELUTanh, NewGELUActivation

    from ppo_models import fuse_gelu

    plain = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2))
    fused = copy.deepcopy(plain)
    assert fuse_gelu(fused) == plain.config.n_layer
    assert not any(isinstance(m, NewGELUActivation) for m in fused.modules())
    assert sum(isinstance(m, GELUTanh) for m in fused.modules()) == plain.config.n_layer
    ids = torch.randint(0, 1000, (3, 12), generator=torch.Generator().manual_seed(0))
    out = [m(input_ids=ids, labels=ids) for m in (plain, fused)]
    torch.testing.assert_close(out[1].logits, out[0].logits, atol=1e-5, rtol=1e-5)
    for o in out:
        o.loss.backward()
    for (name, a), b in zip(plain.named_parameters(), fused.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=1e-4, msg=name)
    fused.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["activation_function"] == "gelu_new"


def test_inverse_cdf_sampling_draws_each_token_with_its_probability():
    """sample_categorical against the probabilities it samples from: 400k draws per row, each
    token's frequency within 5 standard errors, zero-probability tokens never drawn, and a row
    that sums to 0.5 sampled in proportion."""
    from ppo_models import sample_categorical

    probs = torch.tensor(
        [
            [0.0, 0.5, 0.0, 0.25, 0.125, 0.125, 0.0],  # zeros first, inside, last
            [0.01, 0.02, 0.03, 0.04, 0.1, 0.3, 0.5],
            [0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25],  # sums to 0.5
        ]
    )
    n = 400_000
    g = torch.Generator().manual_seed(0)
    draws = sample_categorical(probs.repeat_interleave(n, 0), g).view(3, n)
    freq = torch.stack([torch.bincount(row, minlength=7) for row in draws]).double() / n
    expected = (probs / probs.sum(1, keepdim=True)).double()
    assert (freq[expected == 0] == 0).all()
    stderr = (expected * (1 - expected) / n).sqrt()
    assert ((freq - expected).abs() <= 5 * stderr + 1e-12).all(), (freq, expected)


def test_kv_cache_sampler_draws_from_the_full_forward_distribution(tiny_gpt2, monkeypatch):
    """Each token `sample` draws comes from softmax(logits / T) of one full forward over prompt +
    response so far, the distribution PPO recomputes its log-probs from (`response_logits`): the
    probabilities the sampler hands to `sample_categorical` at every step, recorded, equal the full
    forward's at every response position, for left-padded prompts of three lengths."""
    from transformers import AutoModelForCausalLM

    import ppo_models

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2)).eval()
    seen = []
    draw = ppo_models.sample_categorical

    def recording_draw(probs, generator=None):
        seen.append(probs.clone())
        return draw(probs, generator)

    monkeypatch.setattr(ppo_models, "sample_categorical", recording_draw)
    eos, T = lm.config.eos_token_id, 0.7
    query, qmask = ppo_models.left_pad([[31373, 612, 318, 257, 1332], [31373], [40, 588]], eos, "cpu")
    g = torch.Generator().manual_seed(0)
    responses = ppo_models.sample(lm, query, qmask, 12, T, {eos}, eos, g)
    assert len(seen) == responses.shape[1] == 12
    with torch.no_grad():
        logits, _ = ppo_models.response_logits(lm, query, qmask, responses, torch.ones_like(responses))
    full = torch.softmax(logits.float() / T, dim=-1)
    torch.testing.assert_close(torch.stack(seen, 1), full, atol=1e-6, rtol=1e-4)


def test_sampling_stops_at_eos_with_pad_equal_to_eos(word_policy):
    """GPT-2: pad == eos. A response is cut after its first EOS and masked by position."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(word_policy))
    lm = AutoModelForCausalLM.from_pretrained(str(word_policy)).eval()
    query, qmask = ppo_models.left_pad([[31373, 612], [31373]], tok.eos_token_id, "cpu")
    torch.manual_seed(0)
    resp = ppo_models.sample(lm, query, qmask, 40, 1.0, {tok.eos_token_id}, tok.eos_token_id)
    resp, mask, lengths, has_stop = ppo.ppo_math.truncate_after_stop(
        resp, {tok.eos_token_id}, tok.eos_token_id
    )
    for row, m, n, stopped in zip(resp, mask, lengths, has_stop):
        eos_at = (row == tok.eos_token_id).nonzero()
        if stopped:
            first = int(eos_at[0])
            assert int(n) == first + 1 and m[: first + 1].all() and not m[first + 1 :].any()
        else:
            assert int(n) == len(row) and m.all()
    assert has_stop.any(), "with EOS among 17 likely tokens, 40 steps must reach it"


def test_cross_tokenizer_scoring_matches_direct_scoring(word_policy, kind_rm):
    """Scoring GPT-2 tokens with the DistilBERT reward model equals scoring the hh text directly."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    policy_tok = AutoTokenizer.from_pretrained(str(word_policy))
    rm, rm_tok, fmt = ppo_models.load_reward_model(str(kind_rm), torch.device("cpu"), False)
    scorer = ppo_models.RewardScorer(rm, rm_tok, fmt, policy_tok)
    prompts = [
        {"turns": [{"role": "user", "content": "hi"}], "text": None},
        {"turns": [{"role": "user", "content": "hey there"}], "text": "\n\nHuman: hey there\n\nAssistant:"},
    ]
    replies = [" glad happy sure", " no stop away hate"]
    responses = torch.full((2, 6), policy_tok.eos_token_id)
    lengths = []
    for i, r in enumerate(replies):
        ids = policy_tok(r)["input_ids"] + [policy_tok.eos_token_id]
        responses[i, : len(ids)] = torch.tensor(ids)
        lengths.append(len(ids))
    got = scorer(prompts, responses, torch.tensor(lengths))
    model = AutoModelForSequenceClassification.from_pretrained(str(kind_rm)).eval()
    for i, reply in enumerate(replies):
        text = f"\n\nHuman: {prompts[i]['turns'][0]['content']}\n\nAssistant:{reply}"
        with torch.no_grad():
            direct = model(**rm_tok(text, return_tensors="pt")).logits[0, 0]
        torch.testing.assert_close(got[i], direct, atol=1e-5, rtol=1e-5)
    assert got[0] > got[1]


def test_batch_sizes_are_derived_once_and_checked():
    args = ppo.PPOArguments(batch_size=16, mini_batch_size=4, gradient_accumulation_steps=2, steps=100)
    s = ppo.derive_sizes(args, world=2)
    assert (s.global_batch, s.minibatch, s.minibatches, s.updates) == (32, 8, 2, 4)
    with pytest.raises(
        ValueError,
        match=r"--batch_size=16 is not a multiple of --mini_batch_size x "
        r"--gradient_accumulation_steps = 5 x 1 = 5",
    ):
        ppo.derive_sizes(ppo.PPOArguments(batch_size=16, mini_batch_size=5), world=1)
    with pytest.raises(ValueError, match="--rollout_batch_size"):
        ppo.derive_sizes(ppo.PPOArguments(batch_size=16, mini_batch_size=8, rollout_batch_size=5), world=1)


def test_bad_inputs_give_clear_errors(word_policy, kind_rm, kind_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="reward model not found"):
        run_ppo(word_policy, tmp_path / "missing-rm", kind_data, tmp_path / "a")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        run_ppo(word_policy, kind_rm, tmp_path / "empty.txt", tmp_path / "b")
    with pytest.raises(ValueError, match="no room for a prompt in the policy's context of 256 tokens"):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "c", "--response_length=300")
    with pytest.raises(ValueError, match="seq2seq"):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "d", "--use_seq2seq=True")
    with pytest.raises(ValueError, match="--batch_size=16 is not a multiple"):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "e", "--mini_batch_size=6")


def test_nan_scores_stop_with_a_clear_error(word_policy, kind_rm, kind_data, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "nan-rm"
    shutil.copytree(kind_rm, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["classifier.bias"] = torch.full_like(weights["classifier.bias"], float("nan"))
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(FloatingPointError, match=r"reward model returned \d+ non-finite scores"):
        run_ppo(word_policy, broken, kind_data, tmp_path / "out", "--max_bad_updates=2")


def test_yaml_config_file(word_policy, kind_rm, kind_data, tmp_path):
    config = tmp_path / "ppo.yaml"
    config.write_text(
        f"model_name: {word_policy}\nreward_model: {kind_rm}\nquery_dataset: {kind_data}\n"
        f"output_dir: {tmp_path / 'out'}\nbatch_size: 8\nmini_batch_size: 8\nsteps: 8\nresponse_length: 4\n"
        "eval_samples: 4\nsample_every: 0\nnum_ppo_epochs: 1\n"  # a TRL-style alias in a config file
    )
    result = ppo.cli([str(config)])
    assert result["prompts"] == 4
    saved = json.loads((tmp_path / "out" / "args.json").read_text())
    assert saved["ppo_epochs"] == 1 and saved["batch_size"] == 8


@pytest.mark.parametrize("var", sorted(ppo.UNSUPPORTED_LAUNCH))
def test_ppo_refuses_deepspeed_and_fsdp_before_loading_anything(var, tmp_path, monkeypatch):
    """Under `accelerate launch` with a DeepSpeed, FSDP or Megatron-LM config, main() stops with one
    line naming what works, before the Accelerator (which would fail without deepspeed installed)
    and before any model or output folder."""
    monkeypatch.setenv(var, "true")
    out = tmp_path / "ppo"
    args = ppo.PPOArguments(model_name="./no-such-model", output_dir=str(out))
    with pytest.raises(cmdline.UsageError, match=r"multi_gpu_ddp\.yaml .*--use_peft=True"):
        ppo.main(args)
    assert not out.exists()
    monkeypatch.setenv(var, "false")
    ppo.refuse_unsupported_launch(os.environ)


def test_trl07_config_sets_trl_0_7_defaults():
    """configs/trl07.yaml gives TRL 0.7's PPOConfig defaults, PPOTrainer's optimizer and the 2024
    script's sampling; exactly the keys it marks `(ours: x)` differ from our defaults, and x is ours."""
    import re

    path = ROOT / "configs" / "trl07.yaml"
    (args,) = cmdline.parse_args((ppo.PPOArguments,), [str(path)], renamed=ppo.ALIASES)
    trl07 = {
        "learning_rate": 1e-5,
        "lr_decay": False,
        "adam_eps": 1e-8,
        "adap_kl_ctrl": True,
        "init_kl_coef": 0.2,
        "target": 6.0,
        "horizon": 10000,
        "max_grad_norm": 0.0,
        "batch_size": 256,
        "mini_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "ppo_epochs": 4,
        "temperature": 1.0,
        "response_length": 32,
        "value_model": "head",
    }
    assert {k: getattr(args, k) for k in trl07} == trl07
    ours = ppo.PPOArguments()
    notes = dict(re.findall(r"^(\w+):.*\(ours: ([^),]*)", path.read_text(), re.M))
    assert set(notes) == {k for k, v in trl07.items() if getattr(ours, k) != v}
    for key, note in notes.items():  # where the note is a number, it is our default
        if re.fullmatch(r"[\d.e-]+", note):
            assert float(note) == getattr(ours, key), key
    sizes = ppo.derive_sizes(args, world=1)
    assert (sizes.minibatch, sizes.minibatches) == (1, 256)  # TRL 0.7: one optimizer step per episode


def make_trainer(policy, rm, data, out, **overrides):
    """A Trainer on the tiny models, float32, 8 episodes of 8 tokens (EOS ignored, so all are 8 long)."""
    from accelerate import Accelerator

    settings = dict(
        model_name=str(policy),
        reward_model=str(rm),
        query_dataset=str(data),
        output_dir=str(out),
        batch_size=8,
        mini_batch_size=8,
        ppo_epochs=1,
        steps=24,
        response_length=8,
        ignore_eos=True,
        temperature=1.0,
        eval_samples=4,
        bf16=False,
        seed=0,
    )
    args = ppo.PPOArguments(**{**settings, **overrides})
    ppo.validate(args)
    torch.manual_seed(0)
    return ppo.Trainer(args, Accelerator(cpu=True))


def rollout_with_lengths(tr, lengths):
    """A rollout whose responses have `lengths` real tokens, its log-probs and values, and random
    advantages and returns: the inputs of train_on."""
    ro = tr.rollout(list(range(len(lengths))))
    T = ro.responses.shape[1]
    ro.response_mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    logprobs, _, values, _ = tr.forward_logprobs(ro)
    gen = torch.Generator().manual_seed(0)
    advantages = torch.randn(len(lengths), T, generator=gen) * ro.response_mask
    returns = values + torch.randn(len(lengths), T, generator=gen)
    return ro, logprobs, values, advantages, returns


def minibatch_gradients(tr, inputs):
    """(policy grads, value grads, stats) of train_on's one optimizer step (the optimizer does not step)."""
    model = tr.acc.unwrap_model(tr.model)
    steps = []
    tr.optimizer.step = lambda: steps.append(
        [
            torch.cat([p.grad.flatten() for p in part.parameters() if p.grad is not None])
            for part in (model.policy, model.value)
        ]
    )
    torch.manual_seed(1)  # the same minibatch order every call
    stats = tr.train_on(*inputs)
    ((policy_grad, value_grad),) = steps
    return policy_grad, value_grad, stats


def test_gradient_accumulation_gives_the_gradient_of_one_micro_batch(
    word_policy, kind_rm, kind_data, tmp_path
):
    """Micro-batches of 4 with 1 + 1 + 1 + 8 and 1 + 1 + 1 + 1 real tokens (whatever the shuffle, the
    long response sits in one of them): accumulating them gives the gradient of the whole minibatch
    of 8 in one pass, every token weighing 1 / 15."""
    import dataclasses

    tr = make_trainer(word_policy, kind_rm, kind_data, tmp_path, max_grad_norm=0.0)
    inputs = rollout_with_lengths(tr, [1] * 7 + [8])
    one = minibatch_gradients(tr, inputs)
    tr.sizes = dataclasses.replace(tr.sizes, micro=4)  # gradient_accumulation_steps 2
    two = minibatch_gradients(tr, inputs)
    for a, b in zip(one[:2], two[:2]):
        assert a.abs().max() > 0
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_policy_and_value_gradients_are_clipped_separately(word_policy, kind_rm, kind_data, tmp_path):
    """A value loss 1000x heavier makes the value gradient huge: it is clipped to --max_grad_norm alone,
    and the policy's gradient is the same as with the light value loss (one joint norm would shrink it)."""
    tr = make_trainer(word_policy, kind_rm, kind_data, tmp_path, max_grad_norm=1.0, vf_coef=0.1)
    inputs = rollout_with_lengths(tr, [8, 5, 3, 8, 2, 8, 7, 1])
    light = minibatch_gradients(tr, inputs)
    tr.args.vf_coef = 100.0
    heavy = minibatch_gradients(tr, inputs)
    torch.testing.assert_close(heavy[0], light[0], rtol=1e-5, atol=1e-7)
    assert heavy[2]["value_grad_norm"] > 10 * max(1.0, heavy[2]["policy_grad_norm"])
    assert heavy[1].norm().item() == pytest.approx(1.0, rel=1e-4)
    assert heavy[2]["policy_grad_norm"] == pytest.approx(light[2]["policy_grad_norm"], rel=1e-5)
    # the norms logged are those before clipping
    assert light[0].norm().item() == pytest.approx(min(1.0, light[2]["policy_grad_norm"]), rel=1e-4)


def test_critic_learning_rate_has_its_own_group_and_decays_with_the_policy(
    word_policy, kind_rm, kind_data, tmp_path
):
    tr = make_trainer(
        word_policy, kind_rm, kind_data, tmp_path, learning_rate=1e-3, critic_learning_rate=4e-3
    )
    policy_params = {id(p) for p in tr.policy.parameters()}
    groups = tr.optimizer.param_groups
    assert all(id(p) in policy_params for p in groups[0]["params"])
    assert not any(id(p) in policy_params for p in groups[1]["params"])
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == sum(
        p.requires_grad for p in tr.model.parameters()
    )
    lrs = [(m["lr"], m["val/lr"]) for m in (tr.step(), tr.step())]  # 3 updates: decay 1, then 2/3
    assert lrs[0] == (1e-3, 4e-3)
    assert lrs[1] == pytest.approx((1e-3 * 2 / 3, 4e-3 * 2 / 3))


MERGED_CASES = [
    ("tiny_gpt2", ["c_attn", "lm_head"], False),  # Conv1D layers, and an lm_head tied to the embeddings
    ("tiny_llama", ["q_proj", "v_proj"], False),
    ("tiny_llama", ["q_proj", "v_proj"], True),
    ("word_t5", ["q", "v"], False),  # an encoder-decoder policy (--use_seq2seq)
]


@pytest.mark.parametrize("fixture, targets, bf16", MERGED_CASES, ids=["gpt2", "llama", "llama-bf16", "t5"])
def test_lora_rollouts_on_merged_weights_equal_the_adapter_path(
    fixture, targets, bf16, request, kind_rm, kind_data, tmp_path
):
    """merged_lora: generation and phase 2 give the adapter path's samples and log-probs (float32 to
    1e-5, bf16 to its rounding), the reference's log-probs bit for bit, with no adapter matmul left
    but the tied lm_head's; after it the base weights are bit-identical, and a PPO update on it
    moves only adapters and the value head."""
    tr = make_trainer(
        request.getfixturevalue(fixture),
        kind_rm,
        kind_data,
        tmp_path,
        use_peft=True,
        lora_r=4,
        lora_target_modules=targets,
        bf16=bf16,
        learning_rate=1e-2,
        use_seq2seq=fixture == "word_t5",
    )
    torch.manual_seed(1)
    for name, p in tr.policy.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.3)  # B starts at zero: make the adapters matter
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    adapter_calls = []
    for name, m in tr.policy.named_modules():
        if name.endswith("lora_A.default"):
            m.register_forward_hook(lambda m, i, o, name=name: adapter_calls.append(name))

    def rollout_and_phase2():
        ro = tr.rollout(list(range(8)), generator=torch.Generator().manual_seed(0))
        return ro, tr.forward_logprobs(ro)

    ro, plain = rollout_and_phase2()
    assert adapter_calls
    adapter_calls.clear()
    with ppo_models.merged_lora(tr.policy):
        ro_merged, merged = rollout_and_phase2()
        same_ro = tr.forward_logprobs(ro)
    assert {n.split(".")[-3] for n in adapter_calls} <= {"lm_head"}
    # bf16 rounds W + BA apart from W x + B A x: a sample near a CDF boundary may flip, so only float32
    # is held to the same samples (the log-probs below compare the same responses either way)
    assert bf16 or torch.equal(ro_merged.responses, ro.responses)
    assert ro_merged.responses.shape == ro.responses.shape and merged[0].shape == plain[0].shape
    tol = {"atol": 0.05, "rtol": 0.05} if bf16 else {"atol": 1e-5, "rtol": 1e-5}
    for a, b in zip(plain, same_ro):
        torch.testing.assert_close(b, a, **tol)  # logprobs, ref_logprobs, values, entropy
    assert torch.equal(same_ro[1], plain[1])  # the reference: adapters off, base weights untouched
    assert not any(m.merged for m in tr.policy.modules() if hasattr(m, "merged_adapters"))
    after = tr.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    tr.step()
    moved = {k for k, v in tr.model.state_dict().items() if not torch.equal(before[k], v)}
    assert moved and all(".lora_" in k or k.startswith("value.") for k in moved), sorted(moved)


@pytest.mark.parametrize(
    "fixture, targets",
    [("tiny_gpt2", ["c_attn", "lm_head"]), ("tiny_llama", ["q_proj", "v_proj"])],
    ids=["gpt2", "llama"],
)
def test_frozen_weights_cast_once_give_the_same_bf16_updates(
    fixture, targets, request, kind_rm, kind_data, tmp_path, monkeypatch
):
    """frozen_weights_in (sampling, phase 2 and training of a bf16 LoRA policy): two updates with the
    frozen Linear/Conv1D weights cast once equal, bit for bit, those where autocast casts them at every
    call (samples, metrics, every weight after); inside, the frozen layers (the lm_head too, tied to
    the embeddings in GPT-2) ran on bf16 weights; after, every parameter is the same float32 object."""

    def two_updates(cast_once: bool, out):
        with monkeypatch.context() as patch:
            if not cast_once:
                patch.setattr(ppo, "frozen_weights_in", lambda model, dtype: contextlib.nullcontext())
                patch.setattr(ppo, "merged_lora", lambda policy, dtype=None: ppo_models.merged_lora(policy))
            tr = make_trainer(
                request.getfixturevalue(fixture),
                kind_rm,
                kind_data,
                out,
                use_peft=True,
                lora_r=4,
                lora_target_modules=targets,
                bf16=True,
                learning_rate=1e-2,
                ppo_epochs=2,
                mini_batch_size=4,
            )
            torch.manual_seed(1)
            for name, p in tr.policy.named_parameters():
                if "lora_B" in name:
                    p.data.normal_(0, 0.3)
            params = {n: id(p) for n, p in tr.model.named_parameters(remove_duplicate=False)}
            head = tr.policy.get_output_embeddings()
            head = head.get_base_layer() if hasattr(head, "get_base_layer") else head
            seen = []
            head.register_forward_pre_hook(lambda m, args: seen.append(m.weight.dtype))
            metrics = [tr.step(), tr.step()]
            assert params == {n: id(p) for n, p in tr.model.named_parameters(remove_duplicate=False)}
            assert all(p.dtype == torch.float32 for p in tr.model.parameters())
            state = {k: v.clone() for k, v in tr.model.state_dict().items()}
        untimed = [
            {k: v for k, v in m.items() if not k.startswith("time/") and "per_s" not in k} for m in metrics
        ]
        return untimed, state, set(seen)

    metrics, state, seen = two_updates(True, tmp_path / "once")
    metrics_ref, state_ref, seen_ref = two_updates(False, tmp_path / "every_call")
    assert seen == {torch.bfloat16} and seen_ref == {torch.float32}
    assert metrics == metrics_ref
    assert state.keys() == state_ref.keys() and all(torch.equal(state[k], state_ref[k]) for k in state)


def test_lora_dropout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--lora_dropout=0.05: dropout is disabled in every model"):
        ppo.cli([f"--output_dir={tmp_path}", "--use_peft=True", "--lora_dropout=0.05"])


def test_eval_temperature_samples_and_scores_at_its_own_temperature(
    tiny_gpt2, kind_rm, kind_data, tmp_path, monkeypatch
):
    """At the training temperature the evaluation's answers depend on its seed; near greedy
    (--eval_temperature=1e-4) they do not, and every log-prob of the evaluation (policy and reference,
    for its KL) is taken at that temperature."""
    tr = make_trainer(tiny_gpt2, kind_rm, kind_data, tmp_path, response_length=4, eval_samples=2)
    temperatures = []
    logprobs_and_entropy = ppo.ppo_math.logprobs_and_entropy

    def recording(logits, labels, temperature=1.0, **kw):
        temperatures.append(temperature)
        return logprobs_and_entropy(logits, labels, temperature, **kw)

    monkeypatch.setattr(ppo.ppo_math, "logprobs_and_entropy", recording)

    def answers(seed, eval_temperature):
        tr.args.seed, tr.args.eval_temperature = seed, eval_temperature
        return [row["response"] for row in ppo.evaluate(tr, n_show=2)["samples"]]

    assert answers(0, None) != answers(1, None)
    assert set(temperatures) == {1.0}
    temperatures.clear()
    assert answers(0, 1e-4) == answers(1, 1e-4)
    assert set(temperatures) == {1e-4}
    with pytest.raises(ValueError, match="--eval_temperature must be > 0"):
        ppo.validate(ppo.PPOArguments(eval_temperature=0.0))


def test_no_module_imports_ppo_py():
    """Imports point one way: ppo.py imports the modules beside it, none of them imports ppo.py (the
    checkpoint and models modules once reached into its Trainer and PPOArguments through
    TYPE_CHECKING imports, so a rename there broke them with nothing to tell)."""
    import ast

    for path in sorted(ROOT.glob("*.py")):
        if path.name == "ppo.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module]
            else:
                continue
            assert "ppo" not in names, f"{path.name}:{node.lineno} imports ppo"


def test_rollouts_of_other_widths_concatenate_to_what_each_reads(word_policy):
    """`Rollout.cat` pads prompts on the left and responses on the right: every row of the joined
    rollout has the log-probs and values it had in its own rollout, and its scores and texts."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(word_policy))
    model, _, _ = ppo_models.build_policy_and_value(str(word_policy), "critic")
    model.eval()
    g = torch.Generator().manual_seed(0)
    eos = tok.eos_token_id
    parts = [
        ppo_models.generate(model.policy, ["a", "b"], [[31373, 612], [31373]], 3, 1.0, {eos}, eos, g),
        ppo_models.generate(model.policy, ["c"], [[40, 588, 318, 257, 1332]], 8, 1.0, set(), eos, g),
    ]
    for k, part in enumerate(parts):
        part.raw_scores = torch.tensor([1.0, 2.0])[: len(part.prompts)] + k
    joined = ppo_models.Rollout.cat(parts, eos)
    assert joined.query.shape == (3, 5) and joined.responses.shape == (3, 8)
    assert joined.prompts == ["a", "b", "c"] and joined.raw_scores.tolist() == [1.0, 2.0, 2.0]
    assert joined.scores is None and joined.response_mask.dtype == torch.bool
    assert joined.query_mask[:2, :3].sum() == 0 and (joined.query[:2, :3] == eos).all()  # left
    assert not joined.response_mask[:2, 3:].any() and (joined.responses[:2, 3:] == eos).all()  # right
    with torch.no_grad():
        logits, values = model(*joined.model_inputs(slice(None)))
        rows = 0
        for part in parts:
            part_logits, part_values = model(*part.model_inputs(slice(None)))
            n, T = part.responses.shape
            mask = part.response_mask
            torch.testing.assert_close(
                logits[rows : rows + n, :T][mask], part_logits[mask], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(
                values[rows : rows + n, :T][mask], part_values[mask], atol=1e-5, rtol=1e-5
            )
            assert ppo_models.decode(
                tok, joined.responses[rows : rows + n], joined.lengths[rows : rows + n]
            ) == (ppo_models.decode(tok, part.responses, part.lengths))
            rows += n


CRITIC_FREE = ["rloo", "grpo", "dr_grpo", "reinforce_pp"]


@pytest.mark.parametrize("estimator", CRITIC_FREE)
def test_critic_free_estimators_raise_the_reward_without_a_value_model(
    word_policy, kind_rm, kind_data, tmp_path, estimator
):
    out = tmp_path / estimator
    flags = [f"--advantage_estimator={estimator}", "--num_generations=4", "--steps=96", "--bf16=False"]
    result = run_ppo(word_policy, kind_rm, kind_data, out, *flags)
    history = read_metrics(out)
    assert len(history) == 6
    first = sum(m["objective/scores"] for m in history[:2]) / 2
    last = sum(m["objective/scores"] for m in history[-2:]) / 2
    assert last > first + 0.5, (first, last)
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.5
    # no value model: its metrics are absent (not zero), and nothing of it is saved
    assert not [k for m in history for k in m if k.startswith("val/") or k == "loss/value"]
    assert not (out / "value_model.safetensors").exists()
    saved = json.loads((out / "args.json").read_text())
    in_loss = estimator in ("grpo", "dr_grpo")  # each paper's KL placement, recorded
    assert (saved["kl_penalty"], saved["kl_estimator"]) == (("loss", "k3") if in_loss else ("reward", "k1"))
    assert all(("loss/kl" in m) is in_loss for m in history)


@pytest.mark.parametrize("estimator", CRITIC_FREE)
def test_critic_free_builds_no_value_model_and_rolls_out_whole_groups(
    word_policy, kind_rm, kind_data, tmp_path, estimator
):
    tr = make_trainer(
        word_policy, kind_rm, kind_data, tmp_path, advantage_estimator=estimator, num_generations=4
    )
    model = tr.acc.unwrap_model(tr.model)
    assert model.value is None and tr.value_kind == "none"
    (group,) = tr.optimizer.param_groups  # the policy's parameters alone
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in model.parameters())
    assert {id(p) for p in model.parameters()} == {id(p) for p in tr.policy.parameters()}
    metrics = tr.step()
    ids = tr.last_rollout.prompt_ids
    groups = [ids[g : g + 4] for g in range(0, 8, 4)]  # 8 episodes: 2 prompts x 4 responses
    assert all(g[0] == member for g in groups for member in g) and groups[0] != groups[1]
    assert metrics["policy/grad_norm"] > 0 and "val/grad_norm" not in metrics


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--advantage_estimator=grpo"], "--num_generations must be at least 2 (got 1)"),
        (
            ["--advantage_estimator=rloo", "--num_generations=3"],
            "--batch_size=16 is not a multiple of --num_generations=3",
        ),
        (
            ["--advantage_estimator=rloo", "--num_generations=2", "--value_model=critic"],
            "--value_model is for PPO's value model",
        ),
        (
            ["--advantage_estimator=grpo", "--num_generations=2", "--critic_learning_rate=1e-4"],
            "--critic_learning_rate is for",
        ),
        (["--advantage_estimator=reinforce_pp", "--whiten_rewards=True"], "--whiten_rewards is for"),
        (["--num_generations=0"], "--num_generations must be at least 1"),
    ],
)
def test_estimator_contradictions_are_refused(word_policy, kind_rm, kind_data, tmp_path, flags, message):
    import re

    with pytest.raises(cmdline.UsageError, match=re.escape(message)):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path, *flags)


def test_groups_count_as_episodes_in_the_derived_sizes():
    args = ppo.PPOArguments(batch_size=16, mini_batch_size=8, num_generations=4, steps=100)
    s = ppo.derive_sizes(args, world=2)
    assert (s.global_batch, s.global_prompts, s.updates) == (32, 8, 4)  # 2 x 4 prompts x 4 responses
    assert ppo.group_index([5, 2], 3) == [5, 5, 5, 2, 2, 2]
