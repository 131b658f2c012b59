"""ppo_math.py against naive references: plain Python loops over batch and time on lists of floats.

Inputs are random, with random right-padded masks whose lengths always include 0 (empty) and T (no
stop token), over several seeds. Hand-made cases pin the details a loop could share with the code
under test: where the score goes, pad == eos, the clip fractions, the adaptive KL clip at +-0.2."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import ppo_math

SEEDS = [0, 1, 2, 3]
DT = torch.float64


def random_lengths(gen: torch.Generator, B: int, T: int) -> list[int]:
    """B lengths in [0, T], the first two being 0 and T."""
    return [0, T] + torch.randint(0, T + 1, (B - 2,), generator=gen).tolist()


def prefix_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.tensor([[t < n for t in range(T)] for n in lengths])


def rand(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=DT) * scale


def real(x: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """The real elements of x as a flat Python list, row by row."""
    return [float(v) for v, m in zip(x.flatten().tolist(), mask.flatten().tolist()) if m]


def naive_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def naive_var(xs: list[float], unbiased: bool) -> float:
    n = len(xs)
    if n == 0:
        return 0.0
    m = naive_mean(xs)
    ss = sum((v - m) ** 2 for v in xs)
    return ss / (n - 1) if unbiased and n > 1 else ss / n


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=DT)


# Masked statistics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_masked_mean_and_var_match_loops(seed):
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 9
    x = rand(gen, B, T, scale=3.0) + 1.5
    # an arbitrary (not prefix) mask, with an empty row and a full row
    mask = torch.rand(B, T, generator=gen) < 0.5
    mask[0], mask[1] = False, True
    for m in (mask, mask.to(DT)):
        xs = real(x, mask)
        assert_close(ppo_math.masked_mean(x, m), t(naive_mean(xs)))
        assert_close(ppo_math.masked_var(x, m), t(naive_var(xs, unbiased=True)))
        assert_close(ppo_math.masked_var(x, m, unbiased=False), t(naive_var(xs, unbiased=False)))
        rows = [naive_mean([x[b, j].item() for j in range(T) if mask[b, j]]) for b in range(B)]
        assert_close(ppo_math.masked_mean(x, m, dim=1), t(rows))
        cols = [naive_mean([x[i, j].item() for i in range(B) if mask[i, j]]) for j in range(T)]
        assert_close(ppo_math.masked_mean(x, m, dim=0), t(cols))
    assert ppo_math.masked_mean(x, mask, dim=1)[0].item() == 0.0  # empty row: 0, not NaN


def test_masked_var_hand_values():
    x = t([[1.0, 2.0, 3.0, 100.0], [4.0, 50.0, 60.0, 70.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # real elements 1, 2, 3, 4: mean 2.5, squared deviations sum to 5
    assert_close(ppo_math.masked_mean(x, mask), t(2.5))
    assert_close(ppo_math.masked_var(x, mask), t(5.0 / 3.0))
    assert_close(ppo_math.masked_var(x, mask, unbiased=False), t(5.0 / 4.0))
    one = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]])
    assert ppo_math.masked_var(x, one).item() == 0.0  # one element: no Bessel correction, no NaN
    assert ppo_math.masked_var(x, torch.zeros_like(one)).item() == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shift_mean", [True, False])
def test_masked_whiten_matches_loop(seed, shift_mean):
    gen = torch.Generator().manual_seed(seed)
    B, T = 5, 7
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    x = rand(gen, B, T, scale=4.0) + 2.0
    xs = real(x, mask)
    m, v = naive_mean(xs), naive_var(xs, unbiased=False)
    expected = [
        [
            ((x[b, j].item() - m) / math.sqrt(v + 1e-8) + (0.0 if shift_mean else m)) if mask[b, j] else 0.0
            for j in range(T)
        ]
        for b in range(B)
    ]
    got = ppo_math.masked_whiten(x, mask, shift_mean=shift_mean)
    assert_close(got, t(expected))
    assert (got[~mask] == 0).all()
    w = real(got, mask)
    target_mean = 0.0 if shift_mean else m
    assert abs(naive_mean(w) - target_mean) < 1e-9
    assert abs(naive_var(w, unbiased=False) - 1.0) < 1e-6


def _whiten_on_rank(rank: int, world: int, init_file: str, x, mask, rows: list[slice], out: str) -> None:
    """One of `world` gloo processes: whiten its rows of the batch with statistics summed over all."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)

    def sum_across(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    mine = rows[rank]
    result = {
        shift: ppo_math.masked_whiten(x[mine], mask[mine], shift_mean=shift, sum_across=sum_across)
        for shift in (True, False)
    }
    torch.save(result, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_masked_whiten_on_two_processes_equals_one_process(tmp_path):
    """Two processes holding parts of a batch (of different sizes and lengths) whiten it exactly as
    one process holding all of it: the statistics are global, not each process's own."""
    gen = torch.Generator().manual_seed(0)
    B, T = 6, 7
    mask = prefix_mask([1, 2, 7, 5, 6, 7], T)
    x = rand(gen, B, T, scale=3.0)
    x[:2] += 5.0  # the first process's tokens have another mean than the second's
    rows = [slice(0, 2), slice(2, B)]
    torch.multiprocessing.spawn(
        _whiten_on_rank, args=(2, str(tmp_path / "init"), x, mask, rows, str(tmp_path)), nprocs=2
    )
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for shift in (True, False):
        expected = ppo_math.masked_whiten(x, mask, shift_mean=shift)
        assert_close(torch.cat([part[shift] for part in parts]), expected, rtol=1e-12, atol=1e-12)
        # what each process would get from its own statistics is far from it
        local = ppo_math.masked_whiten(x[rows[0]], mask[rows[0]], shift_mean=shift)
        assert (local - expected[rows[0]]).abs().max() > 0.5


# Log-probabilities and entropy ------------------------------------------------------------------------


def naive_log_softmax(row: list[float], temperature: float) -> list[float]:
    z = [v / temperature for v in row]
    top = max(z)
    log_norm = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - log_norm for v in z]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.5])
def test_logprobs_and_entropy_match_loops(seed, temperature):
    gen = torch.Generator().manual_seed(seed)
    B, T, V = 3, 4, 11
    logits = rand(gen, B, T, V, scale=3.0)
    labels = torch.randint(0, V, (B, T), generator=gen)
    logp_exp, ent_exp = [], []
    for b in range(B):
        logp_row, ent_row = [], []
        for j in range(T):
            ls = naive_log_softmax(logits[b, j].tolist(), temperature)
            logp_row.append(ls[labels[b, j].item()])
            ent_row.append(-sum(math.exp(v) * v for v in ls))
        logp_exp.append(logp_row)
        ent_exp.append(ent_row)
    logp = ppo_math.logprobs_from_logits(logits, labels, temperature)
    logp_both, ent = ppo_math.logprobs_and_entropy(logits, labels, temperature)
    assert logp.dtype == torch.float32 and logp_both.dtype == torch.float32 and ent.dtype == torch.float32
    assert_close(logp, torch.tensor(logp_exp, dtype=torch.float32))
    assert_close(logp_both, torch.tensor(logp_exp, dtype=torch.float32))
    assert_close(ent, torch.tensor(ent_exp, dtype=torch.float32))
    assert (logp <= 0).all() and (ent >= 0).all() and (ent <= math.log(V) + 1e-5).all()


def test_logprobs_gradient_matches_log_softmax_gather():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 13, generator=gen, requires_grad=True)
    labels = torch.randint(0, 13, (2, 5), generator=gen)
    weights = torch.randn(2, 5, generator=gen)
    (ppo_math.logprobs_from_logits(logits, labels, 0.8) * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    ref = torch.log_softmax(logits / 0.8, -1).gather(-1, labels[..., None]).squeeze(-1)
    (ref * weights).sum().backward()
    assert_close(ours, logits.grad)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_in_row_chunks_match_one_log_softmax(monkeypatch, temperature):
    """With chunks of 2 rows (the batch is 3 x 5 rows), values, entropy and gradient equal one
    log_softmax over the whole tensor."""
    monkeypatch.setattr(ppo_math, "_CHUNK_ELEMENTS", 2 * 13)
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(3, 5, 13, generator=gen) * 4).requires_grad_()
    labels = torch.randint(0, 13, (3, 5), generator=gen)
    weights = torch.randn(3, 5, generator=gen)
    ref = torch.log_softmax(logits / temperature, -1)
    ref_logp = ref.gather(-1, labels[..., None]).squeeze(-1)
    (ref_logp * weights).sum().backward()
    ref_grad, logits.grad = logits.grad.clone(), None
    logp = ppo_math.logprobs_from_logits(logits, labels, temperature)
    (logp * weights).sum().backward()
    assert_close(logp, ref_logp)
    assert_close(logits.grad, ref_grad)
    nograd_logp, ent = ppo_math.logprobs_and_entropy(logits.detach(), labels, temperature)
    assert_close(nograd_logp, ref_logp.detach())
    assert_close(ent, -(ref.exp() * ref).sum(-1).detach())


def test_logprobs_second_backward_through_the_same_graph_is_refused():
    """The backward turns the saved log-softmax into the gradient in place; autograd must then
    refuse a second backward (retain_graph) rather than compute it from the overwritten tensor."""
    logits = torch.randn(2, 3, 7, requires_grad=True)
    logp = ppo_math.logprobs_from_logits(logits, torch.zeros(2, 3, dtype=torch.long))
    logp.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        logp.sum().backward()


def test_logprobs_bf16_logits_computed_in_float32():
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 3, 50, generator=gen) * 5).to(torch.bfloat16)
    labels = torch.randint(0, 50, (2, 3), generator=gen)
    expected = torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None]).squeeze(-1)
    assert_close(ppo_math.logprobs_from_logits(logits, labels), expected)


def test_logprobs_gradient_of_bf16_logits_is_bf16_and_matches_float32():
    gen = torch.Generator().manual_seed(1)
    base = (torch.randn(2, 3, 50, generator=gen) * 3).to(torch.bfloat16)
    labels = torch.randint(0, 50, (2, 3), generator=gen)
    weights = torch.randn(2, 3, generator=gen)
    half = base.clone().requires_grad_()
    full = base.float().requires_grad_()
    (ppo_math.logprobs_from_logits(half, labels, 0.7) * weights).sum().backward()
    (torch.log_softmax(full / 0.7, -1).gather(-1, labels[..., None]).squeeze(-1) * weights).sum().backward()
    assert half.grad.dtype == torch.bfloat16
    assert_close(half.grad.float(), full.grad.to(torch.bfloat16).float())


# Stop tokens and the score index ----------------------------------------------------------------------

EOS = PAD = 50256  # GPT-2: pad == eos


def test_truncate_pad_equal_to_eos_masks_by_position():
    responses = torch.tensor(
        [
            [11, 12, EOS, EOS, EOS, EOS],  # EOS at 2, then more EOS ids: padding, not real tokens
            [EOS, 7, 8, 9, 10, 11],  # EOS first: one real token
            [5, 6, 7, 8, 9, 10],  # no EOS: all real
            [5, 6, 7, 8, 9, EOS],  # EOS last
        ]
    )
    out, mask, lengths, has_stop = ppo_math.truncate_after_stop(responses, [EOS], PAD)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [True, True, True, False, False, False],
        [True, False, False, False, False, False],
        [True] * 6,
        [True] * 6,
    ]
    assert lengths.tolist() == [3, 1, 6, 6]
    assert has_stop.tolist() == [True, True, False, True]
    assert out.tolist() == [
        [11, 12, EOS, PAD, PAD, PAD],
        [EOS, PAD, PAD, PAD, PAD, PAD],
        [5, 6, 7, 8, 9, 10],
        [5, 6, 7, 8, 9, EOS],
    ]
    assert ppo_math.score_index(mask).tolist() == [2, 0, 5, 5]


def test_truncate_multiple_stop_ids_and_distinct_pad():
    responses = torch.tensor(
        [
            [3, 4, 99, 5, 98, 6],  # 99 first
            [3, 98, 4, 99, 5, 6],  # 98 first
            [3, 4, 5, 6, 7, 8],  # neither
        ]
    )
    out, mask, lengths, has_stop = ppo_math.truncate_after_stop(responses, {98, 99}, 0)
    assert lengths.tolist() == [3, 2, 6]
    assert has_stop.tolist() == [True, True, False]
    assert out.tolist() == [[3, 4, 99, 0, 0, 0], [3, 98, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8]]
    assert mask.sum(1).tolist() == lengths.tolist()
    assert ppo_math.score_index(mask).tolist() == [2, 1, 5]


def test_truncate_without_stop_ids_keeps_everything():
    responses = torch.tensor([[1, 2, 3], [EOS, EOS, EOS]])
    for empty in ([], set()):
        out, mask, lengths, has_stop = ppo_math.truncate_after_stop(responses, empty, PAD)
        assert out.equal(responses) and mask.all()
        assert lengths.tolist() == [3, 3] and has_stop.tolist() == [False, False]
    # no positions at all
    out, mask, lengths, has_stop = ppo_math.truncate_after_stop(
        torch.zeros(2, 0, dtype=torch.long), [EOS], PAD
    )
    assert out.shape == mask.shape == (2, 0)
    assert lengths.tolist() == [0, 0] and has_stop.tolist() == [False, False]


@pytest.mark.parametrize("seed", SEEDS)
def test_truncate_and_score_index_match_loops(seed):
    gen = torch.Generator().manual_seed(seed)
    B, T, stops, pad = 16, 10, [1, 2], 0  # small vocab: stops are frequent, some rows have none
    responses = torch.randint(0, 8, (B, T), generator=gen)
    responses[0] = torch.arange(3, 3 + T) % 5 + 3  # no stop id
    out, mask, lengths, has_stop = ppo_math.truncate_after_stop(responses, stops, pad)
    for b in range(B):
        row = responses[b].tolist()
        n, stopped = T, False
        for j, tok in enumerate(row):
            if tok in stops:
                n, stopped = j + 1, True
                break
        assert lengths[b].item() == n and has_stop[b].item() == stopped
        assert mask[b].tolist() == [j < n for j in range(T)]
        assert out[b].tolist() == row[:n] + [pad] * (T - n)
        assert ppo_math.score_index(mask)[b].item() == n - 1
    assert ppo_math.score_index(torch.zeros(3, 4)).tolist() == [0, 0, 0]  # empty: clamped at 0


# KL penalty and rewards -------------------------------------------------------------------------------


def naive_kl(lp: float, ref: float, estimator: str) -> float:
    if estimator == "k1":
        return lp - ref
    r = math.exp(ref - lp)
    return (r - 1) - math.log(r)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_per_token_kl_matches_formula(seed, estimator):
    gen = torch.Generator().manual_seed(seed)
    lp, ref = -rand(gen, 4, 6).abs(), -rand(gen, 4, 6).abs()
    expected = [
        [naive_kl(a, c, estimator) for a, c in zip(ra, rc)] for ra, rc in zip(lp.tolist(), ref.tolist())
    ]
    kl = ppo_math.per_token_kl(lp, ref, estimator)
    assert_close(kl, t(expected))
    if estimator == "k3":
        assert (kl >= 0).all()
    else:
        assert (kl < 0).any()  # k1 is negative for some samples


def test_k1_and_k3_agree():
    # per sample, k3 = d^2 / 2 + O(d^3) where d = k1 = logp - ref_logp
    d = torch.tensor([-1e-2, -1e-3, 1e-4, 1e-3, 1e-2], dtype=DT)
    k1 = ppo_math.per_token_kl(d, torch.zeros_like(d), "k1")
    k3 = ppo_math.per_token_kl(d, torch.zeros_like(d), "k3")
    assert_close(k1, d)
    assert ((k3 - d**2 / 2).abs() <= d.abs() ** 3 / 6 * 1.1).all()
    # in expectation under the policy both equal KL(p || q) exactly: sum_x p(x) k(x)
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(rand(gen, 20), 0)
    q = torch.softmax(torch.log(p) + rand(gen, 20, scale=0.1), 0)
    exact = sum(pi * math.log(pi / qi) for pi, qi in zip(p.tolist(), q.tolist()))
    for estimator in ("k1", "k3"):
        expectation = (p * ppo_math.per_token_kl(p.log(), q.log(), estimator)).sum()
        assert_close(expectation, t(exact))
    with pytest.raises(ValueError, match="k2"):
        ppo_math.per_token_kl(d, d, "k2")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", ["k1", "k3"])
@pytest.mark.parametrize("per_row", [False, True])
def test_compute_rewards_matches_loop(seed, estimator, per_row):
    gen = torch.Generator().manual_seed(seed)
    B, T, kl_coef = 6, 8, 0.07
    # per_row: a coefficient per response (--risky_kl_coef), [B, 1]
    coefs = [kl_coef * (1 + 3 * b / B) if per_row else kl_coef for b in range(B)]
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    lp, ref, scores = -rand(gen, B, T).abs(), -rand(gen, B, T).abs(), rand(gen, B, scale=2.0)
    exp_r, exp_nsr, exp_kl = [], [], []
    for b in range(B):
        r_row, nsr_row, kl_row = [], [], []
        for j in range(T):
            kl = naive_kl(lp[b, j].item(), ref[b, j].item(), estimator) if j < lengths[b] else 0.0
            nsr = -coefs[b] * kl
            r = nsr + (scores[b].item() if j == lengths[b] - 1 else 0.0)
            r_row.append(r)
            nsr_row.append(nsr)
            kl_row.append(kl)
        exp_r.append(r_row)
        exp_nsr.append(nsr_row)
        exp_kl.append(kl_row)
    coef = t(coefs)[:, None] if per_row else kl_coef
    rewards, non_score, kl = ppo_math.compute_rewards(scores, lp, ref, mask, coef, estimator)
    assert_close(rewards, t(exp_r))
    assert_close(non_score, t(exp_nsr))
    assert_close(kl, t(exp_kl))


def test_compute_rewards_score_lands_on_last_real_token():
    lp = torch.zeros(3, 5, dtype=DT)
    mask = prefix_mask([2, 5, 0], 5)
    rewards, _, _ = ppo_math.compute_rewards(t([10.0, 20.0, 30.0]), lp, lp, mask, 0.1)
    assert rewards.tolist() == [[0, 10, 0, 0, 0], [0, 0, 0, 0, 20], [0, 0, 0, 0, 0]]


# GAE --------------------------------------------------------------------------------------------------


def naive_gae(rewards, values, lengths, gamma, lam):
    advantages, returns = [], []
    for r, v, n in zip(rewards, values, lengths):
        adv = [0.0] * len(r)
        last = 0.0
        for j in reversed(range(n)):
            next_value = v[j + 1] if j + 1 < n else 0.0
            delta = r[j] + gamma * next_value - v[j]
            last = delta + gamma * lam * last
            adv[j] = last
        advantages.append(adv)
        returns.append([adv[j] + v[j] if j < n else 0.0 for j in range(len(r))])
    return advantages, returns


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("gamma", "lam"), [(0.9, 0.8), (1.0, 0.95), (0.99, 0.0), (1.0, 1.0)])
def test_gae_matches_loop(seed, gamma, lam):
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 9
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    # padding holds garbage that must be ignored
    rewards, values = rand(gen, B, T), rand(gen, B, T)
    adv_exp, ret_exp = naive_gae(rewards.tolist(), values.tolist(), lengths, gamma, lam)
    advantages, returns = ppo_math.gae(rewards, values, mask, gamma, lam)
    assert_close(advantages, t(adv_exp))
    assert_close(returns, t(ret_exp))
    assert (advantages[~mask] == 0).all() and (returns[~mask] == 0).all()


def test_gae_hand_values_and_reward_to_go():
    # one response of 2 real tokens in T = 3: r = (1, 2), V = (0.5, 0.25), gamma 0.9, lam 0.5
    rewards, values = t([[1.0, 2.0, 7.0]]), t([[0.5, 0.25, 9.0]])
    mask = prefix_mask([2], 3)
    advantages, returns = ppo_math.gae(rewards, values, mask, 0.9, 0.5)
    a1 = 2.0 + 0.9 * 0.0 - 0.25  # the value after the last real token is 0
    a0 = (1.0 + 0.9 * 0.25 - 0.5) + 0.9 * 0.5 * a1
    assert_close(advantages, t([[a0, a1, 0.0]]))
    assert_close(returns, t([[a0 + 0.5, a1 + 0.25, 0.0]]))
    # gamma = lam = 1: returns are the undiscounted reward-to-go whatever the values
    gen = torch.Generator().manual_seed(0)
    rewards, values = rand(gen, 4, 6), rand(gen, 4, 6)
    lengths = [0, 6, 3, 1]
    _, returns = ppo_math.gae(rewards, values, prefix_mask(lengths, 6), 1.0, 1.0)
    to_go = [
        [sum(rewards[b, k].item() for k in range(j, n)) if j < n else 0.0 for j in range(6)]
        for b, n in enumerate(lengths)
    ]
    assert_close(returns, t(to_go))


# Losses -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_policy_loss_matches_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    B, T, clip = 5, 7, 0.2
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    old = -rand(gen, B, T).abs()
    new = old + rand(gen, B, T, scale=0.3)
    adv = rand(gen, B, T)
    losses, clipped_flags, log_ratios, ratios = [], [], [], []
    for b in range(B):
        for j in range(lengths[b]):
            lr = new[b, j].item() - old[b, j].item()
            ratio = math.exp(lr)
            a = adv[b, j].item()
            unclipped, clipped = -a * ratio, -a * min(max(ratio, 1 - clip), 1 + clip)
            losses.append(max(unclipped, clipped))
            clipped_flags.append(1.0 if clipped > unclipped else 0.0)
            log_ratios.append(lr)
            ratios.append(ratio)
    loss, stats = ppo_math.policy_loss(new, old, adv, mask, clip)
    assert_close(loss, t(naive_mean(losses)))
    assert_close(stats["clipfrac"], t(naive_mean(clipped_flags)))
    assert_close(stats["approxkl"], t(0.5 * naive_mean([v * v for v in log_ratios])))
    assert_close(stats["ratio_mean"], t(naive_mean(ratios)))
    assert_close(stats["ratio_var"], t(naive_var(ratios, unbiased=True)))
    assert 0 < stats["clipfrac"] < 1


def test_policy_loss_at_ratio_one_is_minus_advantage():
    gen = torch.Generator().manual_seed(0)
    lp = -rand(gen, 3, 5).abs()
    adv = rand(gen, 3, 5)
    mask = prefix_mask([5, 2, 0], 5)
    new = lp.clone().requires_grad_(True)
    loss, stats = ppo_math.policy_loss(new, lp, adv, mask, 0.2)
    assert_close(loss, -t(naive_mean(real(adv, mask))))
    assert stats["clipfrac"].item() == 0.0 and stats["approxkl"].item() == 0.0
    assert stats["ratio_mean"].item() == 1.0 and stats["ratio_var"].item() == 0.0
    assert all(not v.requires_grad for v in stats.values())
    loss.backward()  # d loss / d new_logprob = -A / n_real on real tokens, 0 on padding
    assert_close(new.grad, -adv * mask / mask.sum())


def test_policy_clipfrac_counts_clipped_tokens():
    clip = 0.2
    ratio = t([[1.5, 0.5, 0.5, 1.5, 1.1, 5.0]])
    adv = t([[1.0, 1.0, -1.0, -1.0, 1.0, 1.0]])
    # A > 0, ratio 1.5: clipped (counted). A > 0, ratio 0.5: the unclipped term is larger (not
    # counted). A < 0, ratio 0.5: clipped (counted). A < 0, ratio 1.5: not counted. Ratio 1.1: inside
    # the range. Ratio 5: padding, ignored.
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    old = torch.zeros_like(ratio)
    new = ratio.log().requires_grad_(True)
    loss, stats = ppo_math.policy_loss(new, old, adv, mask, clip)
    assert_close(stats["clipfrac"], t(2 / 5))
    expected = [-1.2, -0.5, 0.8, 1.5, -1.1]
    assert_close(loss, t(sum(expected) / 5))
    loss.backward()
    # clipped tokens get no gradient; the others get -A * ratio / 5
    assert_close(new.grad, t([[0.0, -0.5 / 5, 0.0, 1.5 / 5, -1.1 / 5, 0.0]]))


@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_matches_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    B, T, c = 5, 7, 0.2
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    old, returns = rand(gen, B, T), rand(gen, B, T)
    new = old + rand(gen, B, T, scale=0.4)
    losses, flags = [], []
    for b in range(B):
        for j in range(lengths[b]):
            v, vo, ret = new[b, j].item(), old[b, j].item(), returns[b, j].item()
            v_clipped = min(max(v, vo - c), vo + c)
            unclipped, clipped = (v - ret) ** 2, (v_clipped - ret) ** 2
            losses.append(max(unclipped, clipped))
            flags.append(1.0 if clipped > unclipped else 0.0)
    loss, stats = ppo_math.value_loss(new, old, returns, mask, c)
    assert_close(loss, t(0.5 * naive_mean(losses)))
    assert_close(stats["vf_clipfrac"], t(naive_mean(flags)))
    assert 0 < stats["vf_clipfrac"] < 1


def test_value_loss_clipping_by_hand():
    c = 0.2
    old = t([[0.0, 0.0, 0.0, 0.0]])
    new = t([[1.0, 1.0, 0.1, 9.0]])
    returns = t([[2.0, -1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # token 0: moving toward R = 2, clipped v = 0.2 is further: max(1, 3.24) = 3.24, clipped.
    # token 1: moving away from R = -1, clipped v = 0.2: max(4, 1.44) = 4, unclipped.
    # token 2: inside the range: (0.1 - 1)^2 = 0.81 either way, not counted. Token 3: padding.
    loss, stats = ppo_math.value_loss(new, old, returns, mask, c)
    assert_close(loss, t(0.5 * (3.24 + 4.0 + 0.81) / 3))
    assert_close(stats["vf_clipfrac"], t(1 / 3))


def test_losses_of_micro_batches_add_up_to_the_minibatch_loss():
    """Micro-batches of unequal lengths, each dividing by the minibatch's token count: their losses
    and gradients sum to those of the whole minibatch in one call; the stats stay per micro-batch."""
    gen = torch.Generator().manual_seed(0)
    T = 6
    mask = prefix_mask([1, 1, 6, 5, 6], T)
    old_lp, adv = -rand(gen, 5, T).abs(), rand(gen, 5, T)
    old_v, returns = rand(gen, 5, T), rand(gen, 5, T)
    new_lp = (old_lp + rand(gen, 5, T, scale=0.3)).requires_grad_(True)
    new_v = (old_v + rand(gen, 5, T, scale=0.4)).requires_grad_(True)

    def losses(rows, n_tokens=None):
        pg, pg_stats = ppo_math.policy_loss(new_lp[rows], old_lp[rows], adv[rows], mask[rows], 0.2, n_tokens)
        vf, vf_stats = ppo_math.value_loss(new_v[rows], old_v[rows], returns[rows], mask[rows], 0.2, n_tokens)
        return pg, vf, pg_stats, vf_stats

    pg, vf, _, _ = losses(slice(None))
    whole = torch.autograd.grad(pg + vf, (new_lp, new_v))
    n = mask.sum()
    parts = [losses(rows, n) for rows in (slice(0, 2), slice(2, 5))]
    assert_close(sum(part[0] for part in parts), pg)
    assert_close(sum(part[1] for part in parts), vf)
    split = torch.autograd.grad(sum(part[0] + part[1] for part in parts), (new_lp, new_v))
    for a, b in zip(split, whole):
        assert_close(a, b)
    for rows, (_, _, pg_stats, vf_stats) in zip((slice(0, 2), slice(2, 5)), parts):
        alone = losses(rows)
        assert_close(pg_stats["pg_loss"], alone[0].detach())
        assert_close(vf_stats["vf_loss"], alone[1].detach())
    # a mean per micro-batch, weighted equally, is another (wrong) gradient here
    equal = torch.autograd.grad(
        0.5 * sum(sum(losses(rows)[:2]) for rows in (slice(0, 2), slice(2, 5))), new_lp
    )
    assert (equal[0] - whole[0]).abs().max() > 1e-2


@pytest.mark.parametrize("seed", SEEDS)
def test_explained_variance_matches_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    B, T = 5, 7
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    returns = rand(gen, B, T)
    values = returns + rand(gen, B, T, scale=0.5)
    rs, vs = real(returns, mask), real(values, mask)
    expected = 1 - naive_var([r - v for r, v in zip(rs, vs)], True) / naive_var(rs, True)
    assert_close(ppo_math.explained_variance(values, returns, mask), t(expected))
    assert_close(ppo_math.explained_variance(returns, returns, mask), t(1.0))
    constant = torch.full((B, T), 3.0, dtype=DT)
    assert math.isnan(ppo_math.explained_variance(values, constant, mask).item())


# KL controllers ---------------------------------------------------------------------------------------


def test_adaptive_kl_controller_matches_hand_computation():
    ctl = ppo_math.AdaptiveKLController(init_kl_coef=0.15, target=6.0, horizon=10_000)
    value = 0.15
    # KL far above target (error clipped to +0.2), slightly above, on target, far below (clipped to -0.2)
    for kl, n_steps, error in [
        (12.0, 512, 0.2),
        (6.6, 512, 0.1),
        (6.0, 256, 0.0),
        (1.0, 512, -0.2),
        (3.0, 64, -0.2),
    ]:
        ctl.update(kl, n_steps)
        value *= 1 + error * n_steps / 10_000
        assert ctl.value == pytest.approx(value, rel=1e-12)
    assert value == pytest.approx(0.15 * 1.01024 * 1.00512 * 0.98976 * 0.99872, rel=1e-12)
    # the KL may arrive as a 0-d tensor
    ctl.update(torch.tensor(9.0), 100)
    value *= 1 + 0.2 * 100 / 10_000
    assert ctl.value == pytest.approx(value, rel=1e-6)
    # resume: a fresh controller loaded from the state continues identically
    resumed = ppo_math.AdaptiveKLController(1.0, 1.0, 1.0)
    resumed.load_state_dict(ctl.state_dict())
    ctl.update(9.0, 512)
    resumed.update(9.0, 512)
    assert resumed.value == ctl.value and resumed.state_dict() == ctl.state_dict()


def test_fixed_kl_controller():
    ctl = ppo_math.FixedKLController(0.05)
    ctl.update(100.0, 512)
    assert ctl.value == 0.05
    other = ppo_math.FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05


# Critic-free estimators -------------------------------------------------------------------------------


def naive_group_stats(xs: list[float]) -> tuple[float, float]:
    """Mean and unbiased standard deviation of a list."""
    mu = sum(xs) / len(xs)
    return mu, math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_rloo_matches_leave_one_out_loop(seed, k):
    gen = torch.Generator().manual_seed(seed)
    rewards = rand(gen, 5 * k)
    r = rewards.tolist()
    expected = []
    for g in range(5):
        group = r[g * k : (g + 1) * k]
        for i in range(k):
            others = [group[j] for j in range(k) if j != i]
            expected.append(group[i] - sum(others) / len(others))
    assert_close(ppo_math.rloo_advantages(rewards, k), torch.tensor(expected, dtype=DT))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [True, False], ids=["grpo", "dr_grpo"])
def test_grpo_and_dr_grpo_match_group_loop(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    k = 4
    rewards = rand(gen, 6 * k)
    r = rewards.tolist()
    expected = []
    for g in range(6):
        group = r[g * k : (g + 1) * k]
        mu, sd = naive_group_stats(group)
        expected += [(x - mu) / (sd + 1e-4) if scale else x - mu for x in group]
    assert_close(ppo_math.grpo_advantages(rewards, k, scale=scale), torch.tensor(expected, dtype=DT))


def test_group_estimators_by_hand_and_refusals():
    # one group of equal rewards: no signal, not NaN
    assert ppo_math.grpo_advantages(torch.full((4,), 2.0), 4).abs().max() == 0
    assert_close(ppo_math.rloo_advantages(torch.tensor([1.0, 3.0]), 2), torch.tensor([-2.0, 2.0]))
    assert_close(
        ppo_math.grpo_advantages(torch.tensor([0.0, 2.0]), 2, scale=False), torch.tensor([-1.0, 1.0])
    )
    with pytest.raises(ValueError, match="not whole groups of 4"):
        ppo_math.grpo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="at least 2"):
        ppo_math.rloo_advantages(torch.zeros(3), 1)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", ["rloo", "grpo", "dr_grpo"])
def test_sequence_advantages_sum_token_rewards_and_broadcast(seed, estimator):
    """The sequence reward is the sum of a response's token rewards (score + KL penalties); every
    real token carries its response's advantage, padding 0."""
    gen = torch.Generator().manual_seed(seed)
    B, T, k = 8, 5, 4
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    rewards = rand(gen, B, T)
    seq = [sum(rewards[b, t].item() for t in range(lengths[b])) for b in range(B)]
    expected_seq = []
    for g in range(B // k):
        group = seq[g * k : (g + 1) * k]
        mu, sd = naive_group_stats(group)
        for x in group:
            if estimator == "rloo":
                expected_seq.append(x - (sum(group) - x) / (k - 1))
            else:
                expected_seq.append((x - mu) / (sd + 1e-4) if estimator == "grpo" else x - mu)
    expected = [[expected_seq[b] if t < lengths[b] else 0.0 for t in range(T)] for b in range(B)]
    got = ppo_math.sequence_advantages(estimator, rewards, mask, k)
    assert_close(got, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_is_return_to_go_normalised_over_the_batch(seed, gamma):
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 7
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    rewards = rand(gen, B, T)
    returns = [[0.0] * T for _ in range(B)]
    for b in range(B):
        running = 0.0
        for t in reversed(range(lengths[b])):
            running = rewards[b, t].item() + gamma * running
            returns[b][t] = running
    flat = [returns[b][t] for b in range(B) for t in range(lengths[b])]
    mu = sum(flat) / len(flat)
    sd = math.sqrt(sum((x - mu) ** 2 for x in flat) / len(flat))
    expected = [
        [(returns[b][t] - mu) / math.sqrt(sd**2 + 1e-8) if t < lengths[b] else 0.0 for t in range(T)]
        for b in range(B)
    ]
    got = ppo_math.reinforce_pp_advantages(rewards, mask, gamma)
    assert_close(got, torch.tensor(expected, dtype=DT))


def test_reinforce_pp_normalises_over_every_process():
    """Two halves of a batch, as two processes: `sum_across` adds the other half's sums (of returns
    and counts, then of squares about the global mean), and each half gets the advantages of the whole
    batch normalised on one process."""
    gen = torch.Generator().manual_seed(0)
    B, T = 8, 5
    mask = prefix_mask(random_lengths(gen, B, T), T)
    maskf = mask.to(DT)
    rewards = rand(gen, B, T)
    whole = ppo_math.reinforce_pp_advantages(rewards, mask)
    returns, _ = ppo_math.gae(rewards, torch.zeros_like(rewards), mask, 1.0, 1.0)
    mean = (returns * maskf).sum() / maskf.sum()
    halves = [slice(0, 4), slice(4, 8)]
    for mine, other in (halves, halves[::-1]):
        sums = torch.stack([(returns[other] * maskf[other]).sum(), maskf[other].sum()])
        squares = ((returns[other] - mean) ** 2 * maskf[other]).sum()

        def sum_across(x, sums=sums, squares=squares):
            return x + (sums if x.dim() == 1 else squares)

        got = ppo_math.reinforce_pp_advantages(rewards[mine], mask[mine], sum_across=sum_across)
        assert_close(got, whole[mine])


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_weights_match_each_papers_average(seed):
    """sum(w * x) over a minibatch split in micro-batches equals the loop's token mean (PPO), mean of
    per-response means (GRPO) and sum / (responses x max length) (Dr. GRPO)."""
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 5
    lengths = random_lengths(gen, B, T)
    mask = prefix_mask(lengths, T)
    x = rand(gen, B, T)
    rows = [[x[b, t].item() for t in range(lengths[b])] for b in range(B)]
    n_tokens = mask.sum().clamp(min=1).to(DT)
    expected = {
        "token": sum(sum(r) for r in rows) / max(sum(lengths), 1),
        "sequence": sum(sum(r) / len(r) for r in rows if r) / B,
        "constant": sum(sum(r) for r in rows) / (B * T),
    }
    for aggregation, value in expected.items():
        total = sum(
            (ppo_math.loss_weights(mask[s], aggregation, n_tokens, B, T) * x[s]).sum().item()
            for s in (slice(0, 2), slice(2, 6))
        )
        assert total == pytest.approx(value, rel=1e-6), aggregation


@pytest.mark.parametrize("estimator", ["k1", "k3"])
@pytest.mark.parametrize("aggregation", ["sequence", "token"])
@pytest.mark.parametrize("per_row", [False, True])
def test_kl_loss_gradient_matches_the_estimator(estimator, aggregation, per_row):
    """The KL loss term's value is the weighted KL; its gradient d/d logp is 1 for k1 and 1 - r
    (r = exp(ref - logp)) for k3, per unit weight, times the row's coefficient (--risky_kl_coef)."""
    gen = torch.Generator().manual_seed(0)
    B, T = 3, 4
    mask = prefix_mask([0, 4, 2], T)
    logp = rand(gen, B, T, scale=0.3).requires_grad_(True)
    ref = rand(gen, B, T, scale=0.3)
    n_tokens = mask.sum().to(DT)
    if aggregation == "token":  # the default token mean: every real token weighs 1 / n_tokens
        weights, w = None, mask.to(DT) / n_tokens
    else:
        weights = w = ppo_math.loss_weights(mask, "sequence", n_tokens, B, T).to(DT)
    coef = t([1.0, 2.5, 4.0]) if per_row else None
    loss, stats = ppo_math.kl_loss(logp, ref, mask, estimator, n_tokens, weights, coef)
    loss.backward()
    for b in range(B):
        for j in range(T):
            d = logp[b, j].item() - ref[b, j].item()
            r = math.exp(-d)
            grad = (1.0 if estimator == "k1" else 1.0 - r) * (coef[b].item() if per_row else 1.0)
            assert logp.grad[b, j].item() == pytest.approx(grad * w[b, j].item(), abs=1e-12)
    kls = [(d if estimator == "k1" else math.exp(-d) - 1 + d) for d in real(logp.detach() - ref, mask)]
    assert stats["kl_loss"].item() == pytest.approx(sum(kls) / len(kls))
