"""Score several policies like for like: the same held-out prompts, the same sampling seeds, float32
sampling, one reward model. Prints one JSON line: each policy's mean score (and per seed), and each
policy's paired difference from the first one (mean, standard error over prompts, win rate).

ppo.py's own evaluation samples the trained policy and its reference each in the run's precision;
this tells apart two runs (bf16 against float32 training, two learning rates, ...) on equal terms.

    .venv/bin/python bench/score_policies.py --reward_model outputs/rm-quickstart \\
        start=pypi:SmolLM2-135M-Instruct trained=outputs/ppo-quickstart
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonline import emit  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "policies", nargs="+", help="NAME=PATH (hub id, folder or offline name); the first is the baseline"
    )
    p.add_argument("--reward_model", required=True, help="a folder written by reward_modeling.py")
    p.add_argument("--prompts", default=str(ROOT / "data" / "quickstart" / "prompts.jsonl"))
    p.add_argument("--n", type=int, default=64, help="prompts")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per prompt")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--response_length", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    if any("=" not in spec for spec in args.policies):
        p.error("each policy is NAME=PATH")
    return args


def score_policy(path: str, prompts: list[dict], scorer_parts, args):
    """Reward-model scores [seeds, prompts] of one policy's float32 samples."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import offline
    import scoring
    from ppo_data import PromptEncoder, stop_token_ids
    from ppo_models import RewardScorer, generate

    path = offline.resolve_model_path(path)
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    scoring.ensure_pad_token(tok, lm)
    encode = PromptEncoder(tok, 256)
    ids = [encode(p) for p in prompts]
    scorer = RewardScorer(*scorer_parts, tok)
    stops = stop_token_ids(tok, None)
    rows = []
    for seed in range(args.seeds):
        gen = torch.Generator().manual_seed(seed)
        scores = []
        for start in range(0, len(ids), args.batch_size):
            part = slice(start, start + args.batch_size)
            ro = generate(
                lm,
                prompts[part],
                ids[part],
                args.response_length,
                args.temperature,
                stops,
                tok.pad_token_id,
                gen,
            )
            with torch.inference_mode():
                scores.append(scorer(ro.prompts, ro.responses, ro.lengths))
        rows.append(torch.cat(scores))
    return torch.stack(rows)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import hh_data
    from ppo_models import load_reward_model

    torch.set_num_threads(args.threads)
    prompts = [
        {"turns": [{"role": "user", "content": r["prompt"]}], "text": None}
        for r in hh_data.read_records(Path(args.prompts))[: args.n]
    ]
    rm, rm_tok, fmt = load_reward_model(args.reward_model, torch.device("cpu"), False)
    specs = [spec.split("=", 1) for spec in args.policies]
    scores = {name: score_policy(path, prompts, (rm, rm_tok, fmt), args) for name, path in specs}
    base = specs[0][0]
    result = {
        "harness": "score_policies",
        "label": args.label,
        "reward_model": args.reward_model,
        "prompts": len(prompts),
        "seeds": args.seeds,
        "policies": dict(specs),
        "score_mean": {k: round(v.mean().item(), 4) for k, v in scores.items()},
        "score_mean_per_seed": {k: [round(x, 4) for x in v.mean(1).tolist()] for k, v in scores.items()},
        "vs_" + base: {},
        "settings": {
            "response_length": args.response_length,
            "temperature": args.temperature,
            "precision": "fp32",
        },
    }
    for name, s in scores.items():
        if name == base:
            continue
        diff = (s - scores[base]).mean(0)  # per prompt, averaged over seeds
        result["vs_" + base][name] = {
            "mean": round(diff.mean().item(), 4),
            "standard_error": round((diff.std() / len(diff) ** 0.5).item(), 4),
            "win_rate": round(
                ((s > scores[base]).float() + 0.5 * (s == scores[base]).float()).mean().item(), 4
            ),
        }
    emit(result, args.json_out)
    return result


if __name__ == "__main__":
    main()
