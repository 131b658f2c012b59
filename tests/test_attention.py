"""attention.py: the length-dispatched kernel against PyTorch's own attention, and the flag's effect on
the models ppo.py loads."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attention
import cmdline


class Layer(torch.nn.Module):
    """What transformers hands an attention function: the layer, with its key/value sharing."""

    def __init__(self, groups=1, causal=True):
        super().__init__()
        self.num_key_value_groups, self.is_causal = groups, causal


def reference(q, k, v, mask, groups, causal):
    """torch's scaled_dot_product_attention on repeated key/value heads: [B, Tq, H, D]."""
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal and mask is None and q.shape[2] > 1
    )
    return out.transpose(1, 2)


def padded_causal_mask(B, Tq, Tk, pads):
    """sdpa's boolean mask: causal, keys aligned to the end, the first pads[b] keys of row b masked."""
    offset = Tk - Tq
    mask = torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + offset
    mask = mask[None, None].repeat(B, 1, 1, 1)
    for b, p in enumerate(pads):
        mask[b, :, :, :p] = False
    return mask


@pytest.mark.parametrize(
    "Tq,Tk,groups,masked,causal",
    [
        (12, 12, 1, False, True),  # a training pass without padding: sdpa's is_causal (mask None)
        (12, 12, 2, True, True),  # left-padded rows, grouped key/value heads (Llama's GQA)
        (1, 17, 3, True, True),  # a decoding step against the cache
        (9, 9, 1, True, False),  # a bidirectional encoder with padding
        (300, 300, 2, True, True),  # past 256 x 256 positions: transformers' sdpa path
    ],
)
def test_matches_torch_attention_values_and_gradients(Tq, Tk, groups, masked, causal):
    gen = torch.Generator().manual_seed(Tq * 31 + Tk)
    B, Hkv, D = 3, 2, 8
    H = Hkv * groups
    q = torch.randn(B, H, Tq, D, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, Hkv, Tk, D, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, Hkv, Tk, D, generator=gen, dtype=torch.float64, requires_grad=True)
    pads = [0, 2, 4]  # no row fully masked on a query that is read
    if not masked:
        mask = None
    elif causal:
        mask = padded_causal_mask(B, Tq, Tk, pads)
    else:
        mask = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
        for b, p in enumerate(pads):
            mask[b, ..., Tk - p :] = False
    out, weights = attention.length_dispatched_attention(
        Layer(groups, causal), q, k, v, mask, scaling=D**-0.5
    )
    assert weights is None and out.shape == (B, Tq, H, D)
    want = reference(q, k, v, mask, groups, causal)
    # queries that are left pads (no key to read in a causal row) are nobody's input: compare the rest
    keep = torch.ones(B, Tq, dtype=torch.bool)
    if masked and causal:
        for b, p in enumerate(pads):
            keep[b, : max(0, p - (Tk - Tq))] = False
    assert_close(out[keep], want[keep], rtol=1e-10, atol=1e-10)
    grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64) * keep[:, :, None, None]
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    expected = torch.autograd.grad(want, (q, k, v), grad_out)
    for g, e in zip(got, expected):
        assert_close(g, e, rtol=1e-9, atol=1e-10)


def test_auto_on_a_cpu_runs_matrix_products_and_keeps_the_model_s_outputs(tiny_llama, tiny_gpt2):
    from transformers import AutoModelForCausalLM

    for path in (tiny_llama, tiny_gpt2):
        ids = torch.randint(0, 1000, (3, 20), generator=torch.Generator().manual_seed(0))
        mask = torch.ones_like(ids)
        mask[1, :5] = 0  # left padding
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        want = model(input_ids=ids, attention_mask=mask).logits
        assert model.config._attn_implementation == "sdpa"
        note = attention.apply([model], "auto", "cpu")
        assert model.config._attn_implementation == attention.REGISTERED and "sdpa beyond" in note
        got = model(input_ids=ids, attention_mask=mask).logits
        assert_close(got[mask.bool()], want[mask.bool()], rtol=1e-5, atol=1e-5)
        assert not torch.equal(got[mask.bool()], want[mask.bool()])  # another kernel really ran


def test_saved_models_do_not_name_the_kernel(tiny_gpt2, tmp_path):
    """A saved policy or reward model loads anywhere (pipeline("text-classification") included), without
    this repository's registration: the kernel is a run's choice, not the checkpoint's."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    attention.apply([model], "auto", "cpu")
    model.save_pretrained(tmp_path)
    assert attention.REGISTERED not in (tmp_path / "config.json").read_text()


def test_auto_on_a_gpu_and_explicit_names(tiny_gpt2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert attention.resolve("auto", "cuda") is None and attention.resolve(None, "cpu") is None
    assert attention.apply([model], "eager", "cpu") == "eager"
    assert model.config._attn_implementation == "eager"
    with pytest.raises(cmdline.UsageError, match="--attn_implementation=no_such_kernel"):
        attention.apply([model], "no_such_kernel", "cpu")
