"""Where one training pass's time goes: matrix products, fused attention, casts, the rest. One JSON line.

One forward and backward of a real model at one batch shape under bf16 autocast (the default of both
scripts on a CPU with native bf16), timed over --repeats (median), then once under torch's profiler,
whose self-CPU times are summed by kind of operator. Two tasks, the two training passes of this project:

  - reward: a 1-label sequence classifier with every weight training and dropout off (as TRL's
    RewardTrainer trains it), right-padded rows (--padded: lengths spread over the last quarter),
    transformers' default attention (reward_modeling.py's default; --attn_implementation to change);
  - lora: a causal LM with LoRA adapters (r 16 on q_proj and v_proj, the quickstart's), its frozen
    weights cast once (`ppo_models.frozen_weights_in`), the log-probs of the last --response tokens
    (`ppo_math.logprobs_from_logits`) as the loss: a PPO minibatch's pass (ppo.py's default attention,
    auto).

It also reports the matrix products' FLOPs (from the profiler's shapes) over their time: how close they
run to the CPU's matmul peak (../shared/peers/cpu_peak.py).

    .venv/bin/python bench/op_shares.py --task reward --rows 20 --length 345 --padded
    .venv/bin/python bench/op_shares.py --task lora --rows 8 --length 95 --response 48
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonline import emit  # noqa: E402

MODELS = {"reward": "pypi:all-MiniLM-L6-v2", "lora": "pypi:SmolLM2-135M-Instruct"}
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation"}
CASTS = {"aten::copy_"}  # under autocast, nearly all of them are dtype casts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=sorted(MODELS), default="reward")
    p.add_argument("--model", default=None, help="default: MiniLM-L6 (reward), SmolLM2-135M-Instruct (lora)")
    p.add_argument("--rows", type=int, default=20, help="sequences in the pass")
    p.add_argument("--length", type=int, default=345, help="tokens per row (padded width)")
    p.add_argument("--padded", action="store_true", help="reward: rows of varying length, right-padded")
    p.add_argument("--response", type=int, default=48, help="lora: positions whose log-probs are the loss")
    p.add_argument("--attn_implementation", default=None, help="default: the script's own (see above)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes after two warm-up ones")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    if min(args.rows, args.length, args.repeats, args.response) < 1:
        p.error("--rows, --length, --repeats and --response must be at least 1")
    if args.task == "lora" and args.response >= args.length:
        p.error(f"--response {args.response}: the lora task needs it below --length ({args.length})")
    if args.attn_implementation is None and args.task == "lora":
        args.attn_implementation = "auto"  # ppo.py's default; None: transformers' own, reward_modeling.py's
    return args


def build(args):
    """(model, one training pass under bf16 autocast as a closure)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    import attention
    import offline
    import ppo_math
    import ppo_models

    path = offline.resolve_model_path(args.model or MODELS[args.task])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (args.rows, args.length), generator=g)
    mask = torch.ones_like(ids)
    if args.task == "reward":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        ppo_models.disable_dropout(model)
        if args.padded:  # lengths from the full width down to three quarters of it
            for r in range(args.rows):
                mask[r, args.length - r * args.length // (4 * args.rows) :] = 0
        attention.apply([model], args.attn_implementation, torch.device("cpu"))
        model.train()

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(input_ids=ids, attention_mask=mask)
            out.logits.float().sum().backward()

        return model, step
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    attention.apply([model], args.attn_implementation, torch.device("cpu"))
    model.train()
    labels = ids[:, -args.response :]

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, logits_to_keep=args.response + 1).logits[:, :-1]
        ppo_math.logprobs_from_logits(logits, labels).sum().backward()

    return model, step


def matmul_flops(event) -> float:
    """FLOPs of one profiled matrix-product call from its input shapes (2 m n k, batched)."""
    shapes = [s for s in event.input_shapes if s]
    if event.key == "aten::mm":
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2.0 * m * n * k
    if event.key in ("aten::addmm", "aten::_addmm_activation"):
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2.0 * m * n * k
    if event.key == "aten::bmm":
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return 2.0 * b * m * n * k
    (b, m, k), (_, _, n) = shapes[1], shapes[2]  # baddbmm
    return 2.0 * b * m * n * k


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    import ppo_models

    torch.set_num_threads(args.threads)
    model, step = build(args)
    with ppo_models.frozen_weights_in(model, torch.bfloat16):  # only the lora task has frozen weights
        for _ in range(2):
            step()
            model.zero_grad(set_to_none=True)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
            model.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            step()
    kinds, flops, total = Counter(), 0.0, 0.0
    for e in prof.key_averages(group_by_input_shape=True):
        t = e.self_cpu_time_total / 1e6
        total += t
        if e.key in MATMULS:
            kinds["matrix products"] += t
            flops += matmul_flops(e) * e.count
        elif "scaled_dot_product" in e.key or "flash_attention" in e.key:
            kinds["fused attention"] += t
        elif e.key in CASTS:
            kinds["casts"] += t
        else:
            kinds["other"] += t
    result = {
        "harness": "op_shares",
        "task": args.task,
        "model": args.model or MODELS[args.task],
        "rows": args.rows,
        "length": args.length,
        "padded": args.padded,
        "attn_implementation": args.attn_implementation or "default",
        "s_per_pass_median": round(statistics.median(times), 4),
        "s_per_pass": [round(t, 4) for t in times],
        "profiled_self_cpu_s": round(total, 4),
        "shares": {k: round(v / total, 3) for k, v in sorted(kinds.items())},
        "matmul_flop": int(flops),
        "matmul_gflop_per_s": round(flops / kinds["matrix products"] / 1e9, 1),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    emit(result, args.json_out)
    return result


if __name__ == "__main__":
    main()
