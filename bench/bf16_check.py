"""How far bf16 autocast moves PPO's numbers from fp32, on a real policy: prints one JSON line.

Samples responses with the fp32 policy (exactly as ppo.py: chat template, KV cache, temperature),
then recomputes the response log-probs and values in fp32 and under `--bf16` autocast, and reports
  - the log-prob error of the sampled tokens (per token and summed per response, in nats),
  - KL(fp32 || bf16) of the next-token distributions (per token and per response),
  - the policy's own entropy per token, for scale,
  - whether bf16 is self-consistent: the training forward (autograd on) must reproduce the
    no-grad phase-2 forward bit for bit, or PPO's first ratio is not 1,
  - the value error.
With --reference (the starting policy of a PPO run, --model then being the trained one) it also
reports the KL penalty's own input, sum_t (logp - ref_logp) per response, computed both ways: the
error that matters is the one in that difference, once policy and reference have moved apart.
The KL that PPO's penalty controls is a few nats per response (quickstart: 3.5 after 6 updates);
an autocast error far below that, and identical between policy and reference, is harmless.

    .venv/bin/python bench/bf16_check.py                       # SmolLM2-135M-Instruct, 16 prompts
    .venv/bin/python bench/bf16_check.py --model gpt2 --n 32   # any causal LM (hub id, folder)
    .venv/bin/python bench/bf16_check.py --model outputs/ppo-quickstart --reference pypi:SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonline import emit  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pypi:SmolLM2-135M-Instruct")
    p.add_argument("--prompts", default=str(ROOT / "data" / "quickstart" / "prompts.jsonl"))
    p.add_argument("--reference", default=None, help="the reference policy, for the KL term (optional)")
    p.add_argument("--n", type=int, default=16, help="prompts (one response each)")
    p.add_argument("--response_length", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import hh_data
    import offline
    import ppo_math
    import scoring
    from ppo_data import PromptEncoder, stop_token_ids
    from ppo_models import (
        PolicyAndValue,
        disable_dropout,
        fuse_gelu,
        generate,
        response_logits,
        split_trunk_and_head,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    path = offline.resolve_model_path(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # as ppo.py loads it
    scoring.ensure_pad_token(tok, policy)
    trunk, head = split_trunk_and_head(
        AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    )
    model = PolicyAndValue(policy, torch.nn.ModuleDict({"trunk": trunk, "head": head}), "critic")
    disable_dropout(model)
    fuse_gelu(model)
    model.eval()

    rows = hh_data.read_records(Path(args.prompts))[: args.n]
    encode = PromptEncoder(tok, 256)
    prompts = [{"turns": [{"role": "user", "content": r["prompt"]}]} for r in rows]
    stops = stop_token_ids(tok, None)
    gen = torch.Generator().manual_seed(args.seed)
    ro = generate(
        policy,
        prompts,
        [encode(p) for p in prompts],
        args.response_length,
        args.temperature,
        stops,
        tok.pad_token_id,
        gen,
    )
    resp, rmask, batch = ro.responses, ro.response_mask, ro.model_inputs(slice(None))

    def forward(bf16: bool, grad: bool):
        ctx = torch.enable_grad() if grad else torch.inference_mode()
        t0 = time.perf_counter()
        with ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, values = model(*batch)
        dt = time.perf_counter() - t0
        logits = logits.detach()
        logp = torch.log_softmax(logits.float() / args.temperature, -1)
        picked = ppo_math.logprobs_from_logits(logits, resp, args.temperature)
        return logp, picked, values.detach().float(), dt

    kl_terms = {}
    if args.reference:
        ref = AutoModelForCausalLM.from_pretrained(
            offline.resolve_model_path(args.reference), dtype=torch.float32
        )
        disable_dropout(ref)
        fuse_gelu(ref)
        ref.eval()
        for name, bf16 in (("fp32", False), ("bf16", True)):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                lp = ppo_math.logprobs_from_logits(response_logits(policy, *batch)[0], resp, args.temperature)
                rp = ppo_math.logprobs_from_logits(response_logits(ref, *batch)[0], resp, args.temperature)
            kl_terms[name] = ((lp - rp) * rmask.float()).sum(1)
    lp32_all, lp32, v32, t32 = forward(False, False)
    lp16_all, lp16, v16, t16 = forward(True, False)
    _, lp16_grad, v16_grad, _ = forward(True, True)
    m = rmask.float()
    n_tok = m.sum()

    def per_token(x):
        return (x * m).sum() / n_tok

    err = (lp16 - lp32).abs()
    kl = (lp32_all.exp() * (lp32_all - lp16_all)).sum(-1)
    entropy = -(lp32_all.exp() * lp32_all).sum(-1)
    seq_err = ((lp16 - lp32) * m).sum(1).abs()
    result = {
        "harness": "bf16_check",
        "label": args.label,
        "model": args.model,
        "episodes": len(prompts),
        "response_tokens": int(n_tok),
        "logprob_abs_err_per_token_mean": round(per_token(err).item(), 5),
        "logprob_abs_err_per_token_max": round(err[rmask].max().item(), 5),
        "logprob_err_per_response_abs_mean": round(seq_err.mean().item(), 5),
        "kl_fp32_bf16_per_token_mean": round(per_token(kl).item(), 6),
        "kl_fp32_bf16_per_response_mean": round((kl * m).sum(1).mean().item(), 5),
        "policy_entropy_per_token_mean": round(per_token(entropy).item(), 4),
        "value_abs_err_mean": round(per_token((v16 - v32).abs()).item(), 5),
        "value_scale_mean_abs": round(per_token(v32.abs()).item(), 5),
        "bf16_train_forward_equals_phase2": bool(torch.equal(lp16_grad, lp16) and torch.equal(v16_grad, v16)),
        "bf16_first_ratio_max_abs_log": round((lp16_grad - lp16)[rmask].abs().max().item(), 8),
        "forward_s": {"fp32": round(t32, 3), "bf16": round(t16, 3)},
        **(
            {
                "reference": args.reference,
                "kl_k1_per_response_mean": {k: round(v.mean().item(), 4) for k, v in kl_terms.items()},
                "kl_k1_per_response_abs_err_mean": round(
                    (kl_terms["bf16"] - kl_terms["fp32"]).abs().mean().item(), 4
                ),
                "kl_k1_per_response_err_mean": round((kl_terms["bf16"] - kl_terms["fp32"]).mean().item(), 4),
            }
            if kl_terms
            else {}
        ),
        "settings": {
            "response_length": args.response_length,
            "temperature": args.temperature,
            "threads": args.threads,
            "seed": args.seed,
            "value": "critic from the policy backbone, new zero-mean head",
        },
        "torch": torch.__version__,
    }
    emit(result, args.json_out)
    return result


if __name__ == "__main__":
    main()
