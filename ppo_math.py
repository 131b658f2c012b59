"""The math of PPO for language models: small pure functions, each tested against a naive loop
(tests/test_ppo_math.py).

Layout: `responses` [B, T] are right-padded after the first stop token; `mask` [B, T] is 1 for real
response tokens, the stop token included, and 0 after it. Every average is over real tokens only.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over real elements; Bessel's correction uses their count (as in OpenAI's lm-human-preferences)."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over real elements; padding stays 0. With shift_mean=False the mean is kept
    (reward whitening in lm-human-preferences scales without shifting)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / T) at `labels`: [B, T, V], [B, T] -> [B, T].

    Gathers first and subtracts logsumexp, so no [B, T, V] log-softmax tensor is kept for backward
    beyond the logits themselves."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / T) per position: [B, T, V] -> [B, T]."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def truncate_after_stop(
    responses: torch.Tensor, stop_token_ids, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first stop token; return (responses, mask, lengths, has_stop).

    Masking is by position, never by comparing with pad: with pad == eos (GPT-2, SmolLM2) the first
    EOS is a real token and everything after it is padding (TRL #3750, #1893, #2496)."""
    B, T = responses.shape
    stop = torch.tensor(sorted(set(stop_token_ids)), dtype=responses.dtype, device=responses.device)
    is_stop = torch.isin(responses, stop) if stop.numel() else torch.zeros_like(responses, dtype=torch.bool)
    has_stop = is_stop.any(dim=1)
    first = torch.where(has_stop, is_stop.int().argmax(dim=1), torch.full_like(has_stop, T, dtype=torch.long))
    lengths = torch.where(has_stop, first + 1, first)
    positions = torch.arange(T, device=responses.device).expand(B, T)
    mask = positions < lengths[:, None]
    return responses.masked_fill(~mask, pad_token_id), mask, lengths, has_stop


def score_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real response token (where the score goes); 0 for an empty response."""
    return (mask.long().sum(1) - 1).clamp(min=0)


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Estimators of KL(policy || reference) from samples of the policy (Schulman, "Approximating KL
    divergence", 2020): k1 = log p - log q (unbiased, can be negative per sample); k3 = (r - 1) - log r
    with r = q / p (unbiased, never negative)."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use 'k1' or 'k3'")


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * KL at every real token, plus the score at the last real token
    (Ziegler et al. 2019; OpenRLHF and DeepSpeed-Chat place it there). Returns (rewards,
    non_score_reward, kl), all 0 on padding."""
    maskf = mask.to(logprobs.dtype)
    kl = per_token_kl(logprobs, ref_logprobs, estimator) * maskf
    non_score = -kl_coef * kl
    rewards = non_score.clone()
    has_tokens = maskf.sum(1) > 0
    rows = torch.arange(len(scores), device=scores.device)[has_tokens]
    rewards[rows, score_index(mask)[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards, non_score, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438), backwards in time.

    The value after the last real token is 0 (the episode ends there); padding gets advantage 0 and
    return 0. returns = advantages + values on real tokens."""
    maskf = mask.to(values.dtype)
    values = values * maskf
    rewards = rewards * maskf
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * maskf[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * maskf


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise."""
    log_ratio = new_logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
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
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss, 0.5 * max((v - R)^2, (clip(v, v_old +- c) - R)^2) (OpenAI baselines ppo2)."""
    clipped_values = old_values + (new_values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped = (new_values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((clipped > unclipped).float(), mask)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns) over real tokens; NaN when the returns do not vary."""
    var_returns = masked_var(returns, mask)
    if var_returns <= 0:
        return torch.tensor(float("nan"))
    return 1.0 - masked_var(returns - values, mask) / var_returns


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class AdaptiveKLController:
    """Proportional controller of the KL coefficient (Ziegler et al. 2019, sec. 2.2; lm-human-preferences
    `AdaptiveKLController`): the error is clipped to +-0.2 and scaled by the episodes seen / horizon."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.target, self.horizon = state["value"], state["target"], state["horizon"]
