"""ppo.py --use_seq2seq=True: encoder-decoder policies (T5 with Flan-T5's gated GELU, and BART) trained
with the same PPO as causal ones. The policies are tiny random models with the GPT-2 vocabulary whose
decoders sample almost only the kind and curt words of tests/test_ppo.py (`conftest.save_word_seq2seq`);
the reward model is the same tiny DistilBERT."""

import json

import pytest
import torch
from test_ppo import read_metrics, record_first_log_ratio, run_ppo
from test_resume import assert_resumed_from_checkpoint_2_ends_as, comparable, ppo_argv

import cmdline
import ppo
import ppo_models

ARCHS = ["word_t5", "word_bart"]


@pytest.mark.parametrize("fixture", ARCHS)
def test_sampler_draws_from_the_full_forward_distribution_with_one_encoder_pass(
    fixture, request, monkeypatch
):
    """Every token `sample` draws comes from softmax(logits / T) of one full encoder-decoder forward
    (`response_logits`, what PPO recomputes), for left-padded prompts of three lengths; the encoder
    runs once for the whole batch, the decoder once per token (its KV cache)."""
    from transformers import AutoModelForSeq2SeqLM

    lm = AutoModelForSeq2SeqLM.from_pretrained(str(request.getfixturevalue(fixture))).eval()
    seen, calls = [], {"encoder": 0, "decoder": 0}
    draw = ppo_models.sample_categorical

    def recording_draw(probs, generator=None):
        seen.append(probs.clone())
        return draw(probs, generator)

    monkeypatch.setattr(ppo_models, "sample_categorical", recording_draw)
    for part in ("encoder", "decoder"):
        getattr(lm, f"get_{part}")().register_forward_hook(
            lambda *_, part=part: calls.__setitem__(part, calls[part] + 1)
        )
    eos, T = lm.config.eos_token_id, 0.7
    query, qmask = ppo_models.left_pad([[31373, 612, 318, 257, 1332], [31373], [40, 588]], eos, "cpu")
    g = torch.Generator().manual_seed(0)
    responses = ppo_models.sample(lm, query, qmask, 12, T, set(), eos, g)
    assert len(seen) == responses.shape[1] == 12
    assert calls == {"encoder": 1, "decoder": 12}
    with torch.no_grad():
        logits, _ = ppo_models.response_logits(lm, query, qmask, responses, torch.ones_like(responses))
    full = torch.softmax(logits.float() / T, dim=-1)
    torch.testing.assert_close(torch.stack(seen, 1), full, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("kind", ["critic", "head"])
@pytest.mark.parametrize("fixture", ARCHS)
def test_left_padded_prompts_give_the_logits_and_values_of_each_alone(fixture, kind, request):
    """A prompt batched with longer ones (left-padded in the Rollout) reads as it reads alone: BART's
    encoder counts absolute positions from its first slot, so the encoder gets the prompts right-aligned."""
    path = str(request.getfixturevalue(fixture))
    model, _, _ = ppo_models.build_policy_and_value(path, kind, seq2seq=True)
    model.eval()
    torch.manual_seed(1)
    head = model.value if kind == "head" else model.value["head"]
    torch.nn.init.normal_(head.weight)  # a new value head starts at zero: any position would read 0
    prompts = [[5, 6, 7, 8, 9], [11, 12]]
    responses = torch.randint(0, 1000, (2, 4))
    query, qmask = ppo_models.left_pad(prompts, 50256, "cpu")
    rmask = torch.ones_like(responses)
    with torch.no_grad():
        logits, values = model(query, qmask, responses, rmask)
        for i, p in enumerate(prompts):
            alone = torch.tensor([p])
            alone_logits, alone_values = model(
                alone, torch.ones_like(alone), responses[i : i + 1], rmask[i : i + 1]
            )
            torch.testing.assert_close(logits[i], alone_logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(values[i], alone_values[0], atol=1e-5, rtol=1e-5)


def generate_text(out, prompt: str) -> str:
    """The saved policy loaded as transformers' seq2seq class, answering a prompt. (This is what
    pipeline("text2text-generation") did; transformers 5 removed that task.)"""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    lm = AutoModelForSeq2SeqLM.from_pretrained(str(out))
    ids = lm.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=4, do_sample=False)
    return tok.decode(ids[0], skip_special_tokens=True)


@pytest.mark.parametrize("fixture", ARCHS)
def test_seq2seq_ppo_raises_the_reward(fixture, request, kind_rm, kind_data, tmp_path, monkeypatch):
    first_log_ratio = record_first_log_ratio(monkeypatch)
    out = tmp_path / "ppo"
    policy = request.getfixturevalue(fixture)
    result = run_ppo(policy, kind_rm, kind_data, out, "--use_seq2seq=True", "--bf16=False")
    history = read_metrics(out)
    first = sum(m["objective/scores"] for m in history[:2]) / 2
    last = sum(m["objective/scores"] for m in history[-2:]) / 2
    assert last > first + 0.5, (first, last)
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.5
    assert first_log_ratio[0].abs().max().item() < 1e-5  # the first PPO ratio is 1
    assert history[0]["objective/kl"] == 0.0  # the reference is the starting policy (a frozen copy)
    assert all(m["policy/grad_norm"] > 0 and m["val/grad_norm"] > 0 for m in history)
    assert isinstance(generate_text(out, "\n\nHuman: hi\n\nAssistant:"), str)
    assert (out / "value_model.safetensors").exists()


def test_seq2seq_lora_reference_is_the_adapters_off_and_saves_merged(word_t5, kind_rm, kind_data, tmp_path):
    """LoRA on peft's default modules for T5 (q, v) with a value head on the decoder's states: the
    first update's KL is 0 (the reference is the policy with adapters off), and the saved policy is
    the base with the adapters merged into q and v alone."""
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    run_ppo(
        word_t5, kind_rm, kind_data, out, "--use_seq2seq=True", "--use_peft=True", "--lora_r=8", "--steps=48"
    )
    history = read_metrics(out)
    assert history[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)
    assert history[-1]["objective/kl"] > 1e-4  # the adapters moved the policy away from the reference
    saved = json.loads((out / "args.json").read_text())
    assert saved["lora_target_modules"] == ["q", "v"] and saved["value_model"] == "auto"
    merged, base = load_file(str(out / "model.safetensors")), load_file(str(word_t5 / "model.safetensors"))
    changed = {k for k in base if not torch.equal(merged[k], base[k])}
    assert changed and all(k.endswith((".q.weight", ".v.weight")) for k in changed), sorted(changed)
    assert generate_text(out, "hello") is not None


def test_seq2seq_resume_is_bit_identical(word_t5, kind_rm, kind_data, tmp_path):
    def argv(out, *extra):
        return ppo_argv(
            word_t5, kind_rm, kind_data, out, "--use_seq2seq=True", "--save_total_limit=3", *extra
        )

    straight = tmp_path / "straight"
    ppo.cli(argv(straight))
    assert len(comparable(straight)) == 6
    assert_resumed_from_checkpoint_2_ends_as(straight, tmp_path / "resumed", argv)


def test_seq2seq_critic_free_rloo_raises_the_reward(word_bart, kind_rm, kind_data, tmp_path):
    out = tmp_path / "rloo"
    flags = [
        "--use_seq2seq=True",
        "--advantage_estimator=rloo",
        "--num_generations=4",
        "--steps=96",
        "--bf16=False",
    ]
    result = run_ppo(word_bart, kind_rm, kind_data, out, *flags)
    history = read_metrics(out)
    assert (
        sum(m["objective/scores"] for m in history[-2:])
        > sum(m["objective/scores"] for m in history[:2]) + 1.0
    )
    assert result["policy_score_mean"] > result["reference_score_mean"] + 0.5
    assert not [k for m in history for k in m if k.startswith("val/")]
    assert not (out / "value_model.safetensors").exists()


def test_use_seq2seq_must_match_the_model(word_policy, word_t5, kind_rm, kind_data, tmp_path):
    with pytest.raises(
        cmdline.UsageError, match=r"--use_seq2seq=True, but .* \(gpt2\) is not an encoder-decoder"
    ):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "a", "--use_seq2seq=True")
    with pytest.raises(
        cmdline.UsageError, match=r"encoder-decoder model \(t5\); train it with --use_seq2seq=True"
    ):
        run_ppo(word_t5, kind_rm, kind_data, tmp_path / "b")
