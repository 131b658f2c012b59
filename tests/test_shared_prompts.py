"""The rows of one prompt read it once (`--share_prompts`, ppo_models.causal_states / causal_steps): the same
log-probs, values, gradients and sampling distributions as every row reading its own copy, from fewer
tokens; and ppo.py's minibatches then hold whole groups."""

from __future__ import annotations

import pytest
import torch

import ppo
import ppo_models


def test_prompt_runs_finds_each_run_of_identical_rows():
    query = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9], [7, 8, 9], [0, 5, 6]])
    mask = torch.ones_like(query)
    mask[:2, 0] = 0
    first, run = ppo_models.prompt_runs(query, mask)
    assert first.tolist() == [0, 2, 5]  # the last row repeats the first, but not the row before it
    assert run.tolist() == [0, 0, 1, 1, 1, 2]
    assert ppo_models.prompt_runs(query[1:3], mask[1:3]) is None  # no row repeats the one before
    assert ppo_models.prompt_runs(query[:1], mask[:1]) is None
    other_mask = mask.clone()
    other_mask[1, 0] = 1  # same ids, another mask: another prompt
    assert ppo_models.prompt_runs(query[:2], other_mask[:2]) is None


def groups_batch(pad: int):
    """Left-padded prompts of three lengths in runs of 3, 1 and 2 rows, responses with a stop and pads."""
    torch.manual_seed(3)
    prompts = [[5, 6, 7, 8, 9]] * 3 + [[11, 12]] + [[13, 14, 15]] * 2
    query, qmask = ppo_models.left_pad(prompts, pad, "cpu")
    responses = torch.randint(0, 1000, (6, 4))
    rmask = torch.ones_like(responses, dtype=torch.bool)
    rmask[1, 2:] = False  # a response that stopped after 2 tokens
    responses[1, 2:] = pad
    return query, qmask, responses, rmask


def embedding_tokens(model) -> list[int]:
    """Counts the tokens each forward of `model`'s input embedding reads (a hook)."""
    seen: list[int] = []
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].numel()))
    return seen


@pytest.mark.parametrize(
    "fixture, kind, lora",
    [("word_policy", "critic", False), ("tiny_llama", "head", False), ("tiny_llama", "none", True)],
)
def test_shared_prompts_give_the_unshared_logits_values_and_gradients(request, fixture, kind, lora):
    path = str(request.getfixturevalue(fixture))
    spec = ppo_models.LoraSpec(4, 8, None) if lora else None
    model, _, _ = ppo_models.build_policy_and_value(path, kind, lora_spec=spec)
    if kind == "head":
        torch.nn.init.normal_(model.value.weight)  # a new head reads 0 everywhere
    batch = groups_batch(50256)
    responses, rmask = batch[2], batch[3]
    seen = embedding_tokens(model.policy)
    results = {}
    for share in (False, True):
        model.share_prompts = share
        model.train()
        model.zero_grad()
        logits, values = model(*batch)
        logp = torch.log_softmax(logits, -1).gather(-1, responses[..., None]).squeeze(-1)
        loss = (logp * rmask).sum() + (0 if values is None else (values * rmask).sum())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[share] = (logp.detach(), None if values is None else values.detach(), grads)
    (lp0, v0, g0), (lp1, v1, g1) = results[False], results[True]
    torch.testing.assert_close(lp1[rmask], lp0[rmask], atol=1e-5, rtol=1e-5)
    if kind != "none":
        torch.testing.assert_close(v1[rmask], v0[rmask], atol=1e-5, rtol=1e-5)
    assert g0.keys() == g1.keys() and len(g0) > 0
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], atol=1e-5, rtol=1e-4, msg=name)
    P, (B, T) = batch[0].shape[1], responses.shape
    # unshared: every row reads prompt + response; shared: one prompt per run (3), then the responses
    assert seen == [B * (P + T - 1), 3 * P, B * (T - 1)]


def test_shared_prompts_with_gradient_checkpointing_read_every_row(tiny_llama):
    """Recomputing a layer in backward would write the KV cache twice: training then reads every row."""
    model, _, _ = ppo_models.build_policy_and_value(str(tiny_llama), "none", gradient_checkpointing=True)
    model.share_prompts = True
    batch = groups_batch(50256)
    seen = embedding_tokens(model.policy)
    model.train()
    logits, _ = model(*batch)
    logits.sum().backward()
    model.eval()
    with torch.no_grad():
        model(*batch)
    P, (B, T) = batch[0].shape[1], batch[2].shape
    assert seen == [B * (P + T - 1), 3 * P, B * (T - 1)]


@pytest.mark.parametrize("fixture", ["word_policy", "tiny_llama"])
def test_shared_prompt_sampling_has_the_unshared_distribution(request, fixture):
    """causal_steps with the prompt read once per run: the same next-token logits at every step."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(request.getfixturevalue(fixture))).eval()
    query, qmask, responses, _ = groups_batch(50256)
    seen = embedding_tokens(lm)
    with torch.no_grad():
        steps = [
            ppo_models.causal_steps(lm, query, qmask, responses.shape[1], share) for share in (False, True)
        ]
        for t in range(responses.shape[1]):
            torch.testing.assert_close(steps[1][0], steps[0][0], atol=1e-5, rtol=1e-5)
            steps = [(advance(responses[:, t]), advance) for _, advance in steps]
    assert seen[:2] == [query.numel(), 3 * query.shape[1]]  # the two prompt passes: 6 rows, then 3


def test_grpo_minibatches_hold_whole_groups(word_policy, kind_rm, kind_data, tmp_path, monkeypatch):
    """With --share_prompts each minibatch is whole groups, so training reads each prompt once per
    minibatch; without it, episodes are shuffled one by one (as before)."""
    sizes: dict[bool, list[list[int]]] = {True: [], False: []}  # rows per run of one prompt, per pass
    forward = ppo_models.PolicyAndValue.forward

    def recording(self, query, query_mask, responses, response_mask):
        if self.training:
            runs = ppo_models.prompt_runs(query, query_mask)
            run = torch.arange(len(query)) if runs is None else runs[1]
            sizes[self.share_prompts].append(torch.bincount(run).tolist())
        return forward(self, query, query_mask, responses, response_mask)

    monkeypatch.setattr(ppo_models.PolicyAndValue, "forward", recording)
    base = [
        f"--model_name={word_policy}",
        f"--reward_model={kind_rm}",
        f"--query_dataset={kind_data}",
        "--advantage_estimator=grpo",
        "--num_generations=4",
        "--batch_size=16",
        "--mini_batch_size=8",
        "--ppo_epochs=2",
        "--steps=32",
        "--response_length=4",
        "--bf16=False",
        "--log_with=none",
        "--sample_every=0",
        "--eval_samples=8",
    ]
    for share in (True, False):
        ppo.cli(base + [f"--share_prompts={share}", f"--output_dir={tmp_path / str(share)}"])
    # 2 updates x 2 epochs x 2 minibatches of 8 rows: whole groups of 4 (two groups of one prompt make a run of 8)
    assert len(sizes[True]) == 8 and all(n % 4 == 0 for runs in sizes[True] for n in runs), sizes[True]
    assert len(sizes[False]) == 8 and any(n % 4 for runs in sizes[False] for n in runs), sizes[False]
