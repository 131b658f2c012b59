"""The attention kernel of the policy, its reference and the value model (ppo.py --attn_implementation).

On a CPU, PyTorch's fused attention (`scaled_dot_product_attention`, transformers' default "sdpa") is slow
at the shapes PPO on a CPU runs: a one-token decoding step against the cache, and training passes of a
few hundred tokens. There plain matrix products, as transformers' "eager" attention computes them, are
faster (the README's "Benchmarks": 5-16% per PPO update at sequences up to 256 tokens), at the price of
keeping each layer's attention probabilities for the backward pass, a [rows, heads, T, T] tensor
that grows with the square of the sequence. "auto" takes each kernel where it wins: on a CPU, the
matrix products where the attention matrix has at most `MATH_MAX_POSITIONS` entries per head (every
decoding step, and training or scoring sequences up to 256 tokens), the fused kernel beyond, so that
long sequences keep its memory; on a GPU, transformers' own default (sdpa).
"""

from __future__ import annotations

import torch

import cmdline

AUTO = "auto"
# The name "auto" registers with transformers' attention and mask registries.
REGISTERED = "ppo_auto"
# query positions x key positions per head up to which "auto" runs the plain matrix products (256 x 256)
MATH_MAX_POSITIONS = 256 * 256


def resolve(requested: str | None, device: torch.device | str) -> str | None:
    """The attn_implementation to set: None (keep transformers' default) for None and for "auto" on a
    GPU, the length-dispatched kernel below for "auto" on a CPU, any other name as given."""
    if requested is None or requested == AUTO and torch.device(device).type != "cpu":
        return None
    if requested == AUTO:
        register()
        return REGISTERED
    return requested


def apply(models, requested: str | None, device) -> str:
    """Load-time choice made after loading: set the kernel of `requested` on each of `models` (peft
    models through their base model). "auto" leaves transformers' default on a model that does not
    dispatch its attention through transformers' registry (T5, BART: `_supports_attention_backend`
    false). Returns what the models run, for the run's log."""
    name = resolve(requested, device)
    if name is None:
        return "transformers' default (sdpa where the model has it)"
    kept = []
    for model in models:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if name == REGISTERED and not getattr(base, "_supports_attention_backend", False):
            kept.append(type(base).__name__)
            continue
        try:
            base.set_attn_implementation(name)
        except (ImportError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise cmdline.UsageError(f"--attn_implementation={requested}: {first}") from None
    if name != REGISTERED:
        return name
    note = f"matrix products up to {MATH_MAX_POSITIONS:,} query x key positions per head, sdpa beyond"
    return note + (f" (transformers' default for {', '.join(sorted(set(kept)))})" if kept else "")


def register() -> None:
    """Register the length-dispatched kernel, and sdpa's mask format for it (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(REGISTERED, length_dispatched_attention)
    AttentionMaskInterface.register(REGISTERED, sdpa_mask)


def length_dispatched_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """transformers' attention interface: query [B, H, Tq, D], key and value [B, H_kv, Tk, D], the mask in
    sdpa's format (boolean, True = attend, or None for plain causal attention). Returns ([B, Tq, H, D],
    None). Below the threshold, softmax(q k^T s + mask) v as transformers' eager attention computes it
    (products in the autocast dtype, the softmax in float32); past it, transformers' sdpa path."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    q_len, kv_len = query.shape[2], key.shape[2]
    unsupported = kwargs.get("position_bias") is not None or kwargs.get("cache") is not None
    if q_len * kv_len > MATH_MAX_POSITIONS or unsupported:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    if kwargs.get("softcap") is not None:
        raise ValueError("attention softcapping is not supported by --attn_implementation=auto: use eager")
    groups = getattr(module, "num_key_value_groups", 1)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    decoding = q_len == 1
    if decoding:
        # One query against the cache, whose length grows by one each step: products summed over the
        # head dimension, not a matmul. In bf16 a matmul goes through oneDNN, which builds and keeps a
        # kernel for every new shape: 256 decoding steps added 0.3 GiB of peak RSS (README "Benchmarks");
        # element-wise products build nothing. Query heads sharing a key/value head (GQA) broadcast
        # against it, so the cache is not copied once per group at every step.
        B, H_kv, _, D = key.shape
        grouped_query = query.reshape(B, H_kv, groups, 1, D)  # head h reads key/value head h // groups
        scores = (grouped_query * key[:, :, None]).sum(-1).reshape(B, H_kv * groups, 1, kv_len) * scaling
    else:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # [B, H, Tq, Tk]
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    if attention_mask is None and causal and q_len > 1:
        # sdpa's is_causal: query i sees keys 0..i (queries and keys start together, as transformers
        # uses it: a mask is built whenever a cache puts keys before the queries)
        attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril()
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            # a finite minimum, as eager's additive mask: a row with no key (a left pad's query, whose
            # output nothing reads) averages instead of turning into NaN
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    # the softmax in float32 at least (bf16 scores under autocast), as eager attention
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
    probs = probs.to(value.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    if decoding:
        grouped_probs = probs.reshape(B, H_kv, groups, kv_len, 1)
        out = (grouped_probs * value[:, :, None]).sum(-2).reshape(B, H_kv * groups, 1, D)  # [B, H, 1, D]
    else:
        out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None
