"""The math of PPO for language models: small pure functions, each tested against a naive loop in
tests/test_ppo_math.py (`.venv/bin/python -m pytest tests/test_ppo_math.py -q`).

Layout. `responses` [B, T] hold token ids right-padded after the first stop token; `response_mask`
[B, T] (bool or float) is 1 for real response tokens, the stop token itself included, and 0 after it.
Prompts are left-padded separately and never appear here. Every average is over real tokens only.

Sources, cited per function:
- [OAI] OpenAI lm-human-preferences, `lm_human_preferences/train_policy.py` and `utils/core.py`
  (Ziegler et al. 2019, arXiv:1909.08593).
- [SFFD] vwxyzjn/summarize_from_feedback_details, `summarize_from_feedback_details/ppo.py`
  ("The N Implementation Details of RLHF with PPO", Huang et al. 2024).
- [PPO] Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv:1707.06347.
- [GAE] Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
  Estimation", arXiv:1506.02438.
- [KL] John Schulman, "Approximating KL Divergence" (2020), http://joschu.net/blog/kl-approx.html.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]


# Masked statistics ------------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over elements where `mask` is 1, over all elements (dim=None) or along `dim`.

    As `masked_mean` in [SFFD], except that an empty selection gives 0 instead of NaN (the count is
    clamped at 1), so a batch row with no real token cannot poison a logged average."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def token_mean(x: torch.Tensor, mask: torch.Tensor, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of `x` over real tokens divided by `n_tokens`, or by their own count (`masked_mean`) when
    None. A minibatch split into micro-batches whose gradients add up must pass the minibatch's count
    of real tokens: each token then weighs 1 / n_tokens, as in one pass over the whole minibatch. A
    mean per micro-batch would weigh the tokens of short-response micro-batches more (the gradient
    accumulation fix of transformers 4.46, `num_items_in_batch`; "Fixing Gradient Accumulation",
    huggingface.co/blog/gradient_accumulation, 2024)."""
    if n_tokens is None:
        return masked_mean(x, mask)
    return (x * mask.to(x.dtype)).sum() / n_tokens


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of `x` over all elements where `mask` is 1.

    With `unbiased`, Bessel's correction n / (n - 1) uses n = the number of real elements, not x.numel()
    (`masked_var` in [SFFD]). With n <= 1 the correction is skipped and the result is 0, where [SFFD]
    raises or returns NaN."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = torch.where(n > 1, var * n / (n - 1).clamp(min=1), var)
    return var


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    sum_across: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-8), mean and variance over real elements; padding is set to 0.

    The variance is the population one (no Bessel correction), as in [OAI] `utils.core.whiten`
    (`tf.nn.moments`) and `masked_whiten` in [SFFD]; TRL uses the unbiased one, which differs by a
    factor n / (n - 1). With shift_mean=False the mean is added back, so only the scale changes: that
    is reward whitening (`whiten(rewards, shift_mean=False)` in [OAI] `train_policy.py`).

    `sum_across` sums a tensor over processes (an all-reduce): the statistics are then those of every
    process's elements together, so N processes whiten a batch as one process holding all of it
    would (OpenRLHF's `masked_normalize` all-reduces the same sums and counts). Without it, only the
    local elements count, as `masked_mean` / `masked_var` compute them."""
    maskf = mask.to(x.dtype)
    local = torch.stack([(x * maskf).sum(), maskf.sum()])
    total, count = sum_across(local) if sum_across is not None else local
    count = count.clamp(min=1)
    mean = total / count
    # two passes (the mean first), as masked_var: sum(x^2) - n mean^2 cancels badly in float32
    squares = ((x - mean) ** 2 * maskf).sum()
    var = (sum_across(squares) if sum_across is not None else squares) / count
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * maskf


# Log-probabilities and entropy ------------------------------------------------------------------------


# Rows of [*, V] logits per log-softmax call: temporaries stay a few MiB whatever the batch and vocabulary.
_CHUNK_ELEMENTS = 1 << 20


def _row_chunks(logits: torch.Tensor, temperature: float):
    """Yield (rows, x): slices of the logits flattened to [N, V], as float32 divided by the temperature."""
    flat = logits.reshape(-1, logits.shape[-1])
    step = max(1, _CHUNK_ELEMENTS // flat.shape[-1])
    for start in range(0, flat.shape[0], step):
        x = flat[start : start + step].float()
        yield slice(start, start + step), (x / temperature if temperature != 1.0 else x)


class _LogProbsAtLabels(torch.autograd.Function):
    """log_softmax(logits / T) at the labels, with the gradient written in closed form:
    d logp_y / d logit_v = (1[v = y] - softmax_v) / T.

    Autograd through `log_softmax(...).gather(...)` keeps the scaled logits and, in the backward,
    allocates a zero [N, V] tensor for the gather, another for the division and adds them. Here the
    forward keeps one float32 [N, V] tensor (the log-softmax, filled chunk by chunk so no full-size
    temporary is made), and the backward turns it into the gradient in place. A second backward
    through the same graph (retain_graph) is refused by autograd, since the saved tensor has changed."""

    @staticmethod
    def forward(ctx, logits, labels, temperature):
        V = logits.shape[-1]
        log_probs = torch.empty((logits.numel() // V, V), dtype=torch.float32, device=logits.device)
        for rows, x in _row_chunks(logits, temperature):
            torch.log_softmax(x, dim=-1, out=log_probs[rows])
        index = labels.reshape(-1, 1).long()
        ctx.save_for_backward(log_probs, index)
        ctx.temperature, ctx.dtype, ctx.shape = temperature, logits.dtype, logits.shape
        return log_probs.gather(-1, index).view(labels.shape)

    @staticmethod
    def backward(ctx, grad_out):
        log_probs, index = ctx.saved_tensors
        scale = grad_out.reshape(-1, 1).float() / ctx.temperature  # [N, 1]
        grad = log_probs.exp_().mul_(-scale)  # -softmax * g / T, in the saved tensor
        grad.scatter_add_(-1, index, scale)  # + g / T at the label
        return grad.view(ctx.shape).to(ctx.dtype), None, None


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / temperature) taken at `labels`: [B, T, V], [B, T] -> [B, T], in float32.

    Policy and reference log-probs must use the sampling temperature, or the KL is biased ([SFFD]
    divides logits by `temperature + 1e-7`; TRL issues #925, #1161). Logits are upcast to float32
    (a log-softmax over a large vocabulary in bf16 loses precision), a few rows at a time.
    Differentiable in `logits` with a closed-form backward (`_LogProbsAtLabels`); the gradient has
    the logits' dtype. Without gradients no [B, T, V] tensor is allocated at all."""
    if torch.is_grad_enabled() and logits.requires_grad:
        return _LogProbsAtLabels.apply(logits, labels, float(temperature))
    return logprobs_and_entropy(logits, labels, temperature, entropy=False)[0]


def logprobs_and_entropy(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(`logprobs_from_logits`, the entropy of softmax(logits / temperature)) from one log-softmax, without gradients, a few
    rows at a time: the no-grad rollout pass needs both, and no [B, T, V] temporary is made."""
    flat_labels = labels.reshape(-1).long()
    logp = torch.empty(flat_labels.shape, dtype=torch.float32, device=logits.device)
    ent = torch.empty_like(logp) if entropy else None
    with torch.no_grad():
        for rows, x in _row_chunks(logits, temperature):
            log_probs = torch.log_softmax(x, dim=-1)
            logp[rows] = log_probs.gather(-1, flat_labels[rows, None]).squeeze(-1)
            if entropy:
                ent[rows] = -(torch.exp(log_probs) * log_probs).sum(-1)
    return logp.view(labels.shape), (ent.view(labels.shape) if entropy else None)


# Responses: stop tokens and where the score goes -------------------------------------------------------


def truncate_after_stop(
    responses: torch.Tensor, stop_token_ids: Iterable[int], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first stop token: returns (responses, response_mask, lengths, has_stop).

    The first token whose id is in `stop_token_ids` is kept as a real token; every later position is
    set to `pad_token_id` and masked out. The mask is built from positions, never by comparing ids
    with pad: with pad == eos (GPT-2, SmolLM2) the first EOS is real and later EOS ids are padding
    (TRL #3750, #1893, #2496). [OAI] `lm_tasks.postprocess_fn_from_hparams` and [SFFD]
    `truncate_response` do the same cut for one stop id. A response with no stop token (or an empty
    `stop_token_ids`) keeps all T tokens and has_stop False.

    Shapes: responses [B, T] -> responses [B, T], response_mask [B, T] bool, lengths [B] long,
    has_stop [B] bool."""
    ids = sorted({int(s) for s in stop_token_ids})
    if ids:
        stop = torch.tensor(ids, dtype=responses.dtype, device=responses.device)
        is_stop = torch.isin(responses, stop)
    else:
        is_stop = torch.zeros_like(responses, dtype=torch.bool)
    # stops strictly before t: 0 up to and including the first stop, >= 1 after it
    stops_before = is_stop.long().cumsum(dim=1) - is_stop.long()
    response_mask = stops_before == 0
    lengths = response_mask.long().sum(dim=1)
    has_stop = is_stop.any(dim=1)
    return responses.masked_fill(~response_mask, pad_token_id), response_mask, lengths, has_stop


def score_index(response_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real response token, where the score is added: [B, T] -> [B] long.

    lengths - 1, clamped at 0 for an empty response. Assumes the mask is a prefix (1s then 0s), as
    `truncate_after_stop` returns. [OAI] adds the score at the last position of a fixed-length response;
    OpenRLHF and DeepSpeed-Chat at the last real token, as here; [SFFD] and TRL at the first padding
    slot after it."""
    return (response_mask.long().sum(dim=1) - 1).clamp(min=0)


# KL penalty and rewards -------------------------------------------------------------------------------


def per_token_kl(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator = "k1"
) -> torch.Tensor:
    """Per-sample estimators of KL(policy || reference) from tokens sampled by the policy [KL].

    k1 = logp - ref_logp: unbiased, negative for some samples ([OAI] and [SFFD] penalise with it).
    k3 = (r - 1) - log r with r = exp(ref_logp - logp): unbiased too (E_p[r] = 1) and never negative.
    Not masked: the caller masks. Same shape as the inputs."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        # log r = -log_ratio; expm1 keeps (r - 1) accurate when r is close to 1
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use 'k1' or 'k3'")


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    kl_coef: float | torch.Tensor,
    estimator: KLEstimator = "k1",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token rewards: a KL penalty at every real token plus the sequence score at the last one.

    kl = per_token_kl(...) masked to 0 on padding; non_score_reward = -kl_coef * kl (kl_coef a number,
    or [B, 1] for a coefficient per response: ppo.py --risky_kl_coef); rewards =
    non_score_reward with scores[b] added at score_index (`compute_rewards` in [OAI] train_policy.py;
    [SFFD] step "compute rewards"). An empty response (no real token) gets no score: it has no
    position to carry it, and GAE ignores it anyway.

    Shapes: scores [B], logprobs / ref_logprobs / response_mask [B, T] -> three [B, T] tensors
    (rewards, non_score_reward, kl)."""
    maskf = response_mask.to(logprobs.dtype)
    kl = per_token_kl(logprobs, ref_logprobs, estimator) * maskf
    non_score_reward = -kl_coef * kl
    rewards = non_score_reward.clone()
    nonempty = maskf.sum(dim=1) > 0
    rows = torch.arange(rewards.shape[0], device=rewards.device)[nonempty]
    cols = score_index(response_mask)[nonempty]
    rewards[rows, cols] += scores[nonempty].to(rewards.dtype)
    return rewards, non_score_reward, kl


# Advantages and losses --------------------------------------------------------------------------------


def gae(
    rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation [GAE eq. 16], backwards over t, vectorised over the batch.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, where the value
    after a response's last real token is 0 (the episode ends at its stop token). Rewards and values
    on padding are ignored. Padding gets advantage 0 and return 0; on real tokens returns = advantages
    + values (the value target). This is the loop of [OAI] `PPOTrainer.loss` and [SFFD], with padding
    masked instead of fixed-length responses.

    Shapes: rewards, values, response_mask [B, T] -> advantages, returns [B, T]."""
    maskf = response_mask.to(values.dtype)
    values = values * maskf
    rewards = rewards * maskf
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        # the mask zeroes A_t on padding, so the last real token sees A_{t+1} = 0 and V_{t+1} = 0
        next_advantage = (delta + gamma * lam * next_advantage) * maskf[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * maskf


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    n_tokens: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate as a loss to minimise [PPO eq. 7]: the `token_mean` (over `n_tokens`
    when given) of max(-A * ratio, -A * clip(ratio, 1 - cliprange, 1 + cliprange)), ratio = exp(new - old).
    With `weights` [B, T] (`loss_weights`), the loss is sum(weights * per-token loss) instead.

    Stats (0-d, detached, means over this call's real tokens), as [OAI] `PPOTrainer.loss` and [SFFD]
    log them: `pg_loss`, the masked mean of the loss; `clipfrac`, the share of real tokens where the
    clipped term is chosen (strictly larger); `approxkl` = 0.5 * mean((new - old)^2); `ratio_mean`;
    `ratio_var` (unbiased)."""
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    per_token = torch.maximum(unclipped, clipped)
    loss = token_mean(per_token, mask, n_tokens) if weights is None else (per_token * weights).sum()
    with torch.no_grad():
        stats = {
            "pg_loss": masked_mean(per_token, mask),
            "clipfrac": masked_mean((clipped > unclipped).to(ratio.dtype), mask),
            "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_var": masked_var(ratio, mask),
        }
    return loss, stats


def value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
    n_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: 0.5 * `token_mean` (over `n_tokens` when given) of
    max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2).

    As in [OAI] `PPOTrainer.loss` and [SFFD] (from OpenAI baselines ppo2). Stats (0-d, detached,
    means over this call's real tokens): `vf_loss`, the loss as a masked mean; `vf_clipfrac`, the
    share of real tokens where the clipped term is strictly larger."""
    clipped_values = old_values + (new_values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped = (new_values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    per_token = torch.maximum(unclipped, clipped)
    loss = 0.5 * token_mean(per_token, mask, n_tokens)
    with torch.no_grad():
        stats = {
            "vf_loss": 0.5 * masked_mean(per_token, mask),
            "vf_clipfrac": masked_mean((clipped > unclipped).to(unclipped.dtype), mask),
        }
    return loss, stats


def kl_loss(
    new_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    estimator: KLEstimator = "k3",
    n_tokens: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    row_coef: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The KL to the reference as a loss term instead of a penalty in the reward, averaged as
    `policy_loss` averages (`token_mean` over `n_tokens`, or sum(weights * KL_t)): GRPO [GRPO eq.
    3-4] adds beta * k3 to the loss, k3 being unbiased and non-negative [KL]. (k1's expected
    gradient is 0 -- E_p[grad log p] = 0 -- so k1 as a loss only adds noise; it is accepted for
    comparison.) `row_coef` [B] multiplies each row's KL (ppo.py --risky_kl_coef). Stats: `kl_loss`,
    the masked mean of the KL."""
    per_token = per_token_kl(new_logprobs, ref_logprobs, estimator)
    scaled = per_token if row_coef is None else per_token * row_coef[:, None].to(per_token.dtype)
    loss = token_mean(scaled, mask, n_tokens) if weights is None else (scaled * weights).sum()
    with torch.no_grad():
        stats = {"kl_loss": masked_mean(per_token, mask)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns) over real tokens (`ppo/val/var_explained` in [OAI]).

    1 is a perfect critic, 0 one no better than a constant, negative worse. NaN when the returns do not
    vary (or fewer than two real tokens): the ratio is undefined there, and NaN shows up in a log where
    0 would pass for a plausible value. Returns a 0-d tensor on the inputs' device, without a sync."""
    with torch.no_grad():
        var_returns = masked_var(returns, mask)
        ratio = masked_var(returns - values, mask) / var_returns
        return torch.where(var_returns > 0, 1.0 - ratio, torch.full_like(ratio, float("nan")))


# KL coefficient controllers ---------------------------------------------------------------------------


class FixedKLController:
    """A constant KL coefficient (`FixedKLController` in [OAI] train_policy.py)."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op, so the training loop can call `update` whichever controller it holds."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional controller of the KL coefficient (Ziegler et al. 2019, sec. 2.2;
    `AdaptiveKLController` in [OAI] train_policy.py).

    update: e = clip(current_kl / target - 1, -0.2, 0.2); value *= 1 + e * n_steps / horizon, where
    n_steps is the number of episodes (responses) since the last update and `horizon` is in episodes
    ([OAI]: target 6 nats, horizon 10,000, called once per batch with n_steps = batch size)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value, self.target, self.horizon = (
            float(state["value"]),
            float(state["target"]),
            float(state["horizon"]),
        )


# Critic-free advantage estimators ---------------------------------------------------------------------
#
# Sources:
# - [RLOO] Kool, van Hoof, Welling 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!" (ICLR
#   workshop); Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
#   Learning from Human Feedback in LLMs", arXiv:2402.14740, eq. 7.
# - [GRPO] Shao et al. 2024, "DeepSeekMath", arXiv:2402.03300, sec. 4.1 (outcome supervision, eq. 3).
# - [DrGRPO] Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
#   arXiv:2503.20783, sec. 3.2.
# - [RPP] Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models",
#   arXiv:2501.03262, sec. 3.
#
# Layout: a batch holds groups of K = `num_generations` responses to one prompt, contiguous: rows
# [g*K, (g+1)*K) are group g. Sequence estimators return [B] advantages; `broadcast_to_tokens` gives
# every real token of a response its sequence's advantage (the whole response is one action).

AdvantageEstimator = Literal["gae", "rloo", "grpo", "dr_grpo", "reinforce_pp"]
CRITIC_FREE = ("rloo", "grpo", "dr_grpo", "reinforce_pp")


def _groups(x: torch.Tensor, k: int) -> torch.Tensor:
    """[B] -> [B / k, k]; refuses a batch that is not whole groups."""
    if k < 1 or x.shape[0] % k:
        raise ValueError(f"{x.shape[0]} responses are not whole groups of {k}")
    return x.view(-1, k)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Leave-one-out baseline [RLOO]: A_i = R_i - 1/(k-1) sum_{j != i} R_j over the k responses to
    one prompt, R the sequence reward (score minus the sequence KL penalty, Ahmadian et al. eq. 7).
    Equal to k/(k-1) (R_i - mean R). [B] -> [B]; needs k >= 2."""
    if k < 2:
        raise ValueError("the leave-one-out baseline needs at least 2 responses per prompt")
    g = _groups(rewards, k)
    baseline = (g.sum(dim=1, keepdim=True) - g) / (k - 1)
    return (g - baseline).reshape(-1)


def grpo_advantages(rewards: torch.Tensor, k: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantage [GRPO eq. 3, outcome supervision]: A_i = (r_i - mean(r)) / std(r)
    over the k responses to one prompt. The std is the unbiased one with `eps` added, as TRL's
    GRPOTrainer (a group of equal rewards gets 0, not NaN). With scale=False, no std: A_i = r_i -
    mean(r), Dr. GRPO [DrGRPO sec. 3.2], which finds the std biases updates toward prompts that are
    too easy or too hard. [B] -> [B]; the std needs k >= 2."""
    g = _groups(rewards, k)
    centred = g - g.mean(dim=1, keepdim=True)
    if scale:
        if k < 2:
            raise ValueError("a group's standard deviation needs at least 2 responses per prompt")
        centred = centred / (g.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def broadcast_to_tokens(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Every real token of response i gets advantages[i], padding 0: [B], [B, T] -> [B, T]."""
    return advantages[:, None].to(torch.float32) * response_mask.to(torch.float32)


def reinforce_pp_advantages(
    rewards: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float = 1.0,
    sum_across: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """REINFORCE++ [RPP sec. 3]: the return-to-go of the per-token rewards (the score at the last
    real token, the KL penalty -beta * KL_t at every token, as `compute_rewards` places them),
    A_t = sum_{s >= t} gamma^(s - t) r_s, then normalised over the whole global batch (every real
    token of every process: `masked_whiten` with `sum_across`), which replaces the critic and the
    per-prompt group of GRPO. [B, T] -> [B, T], padding 0."""
    returns, _ = gae(rewards, torch.zeros_like(rewards), response_mask, gamma, 1.0)
    return masked_whiten(returns, response_mask, sum_across=sum_across)


def sequence_advantages(
    estimator: AdvantageEstimator, rewards: torch.Tensor, response_mask: torch.Tensor, k: int
) -> torch.Tensor:
    """The token advantages [B, T] of a group estimator from per-token rewards [B, T]: each
    response's sequence reward is the sum of its token rewards (score plus the KL penalties)."""
    seq = (rewards * response_mask.to(rewards.dtype)).sum(dim=1)
    if estimator == "rloo":
        adv = rloo_advantages(seq, k)
    elif estimator in ("grpo", "dr_grpo"):
        adv = grpo_advantages(seq, k, scale=estimator == "grpo")
    else:
        raise ValueError(f"{estimator!r} is not a group estimator (rloo, grpo, dr_grpo)")
    return broadcast_to_tokens(adv, response_mask)


LossAggregation = Literal["token", "sequence", "constant"]


def loss_weights(
    response_mask: torch.Tensor,
    aggregation: LossAggregation,
    n_tokens: torch.Tensor,
    n_sequences: int,
    max_length: int,
) -> torch.Tensor:
    """Per-token weights w [B, T] (0 on padding) so that a loss is sum(w * per_token) over the
    micro-batches of one minibatch of `n_sequences` responses and `n_tokens` real tokens:
    - "token": 1 / n_tokens, every token alike (`token_mean`; PPO as [SFFD], REINFORCE++, RLOO);
    - "sequence": 1 / (len_i * n_sequences), each response's mean, then the mean over responses
      [GRPO eq. 3: 1/G sum_i 1/|o_i| sum_t], which weighs the tokens of short responses more;
    - "constant": 1 / (max_length * n_sequences), a constant that does not depend on the lengths
      [DrGRPO sec. 3.2, which drops GRPO's 1/|o_i|; their code divides by the generation budget]."""
    maskf = response_mask.to(torch.float32)
    if aggregation == "token":
        return maskf / n_tokens
    if aggregation == "sequence":
        return maskf / (maskf.sum(dim=1, keepdim=True).clamp(min=1) * n_sequences)
    if aggregation == "constant":
        return maskf / (max_length * n_sequences)
    raise ValueError(f"unknown loss aggregation {aggregation!r}")
