"""What each advantage estimator buys at equal settings: ppo.py runs of every estimator x seed from one
config, with the same --num_generations for every estimator (gae included, so each rolls out the same
prompts, episodes and shapes), judged by the run's final evaluation: the proxy's and each gold reward
model's paired gain over the starting policy, KL, and what the run cost (seconds in training updates,
the process's CPU minutes). Runs one after another, each in a process of its own.

Prints one JSON line per run and a summary line: per estimator, means over seeds with standard errors
over seeds (the training seed is the unit here; each run's own gain_se is over prompts), the first
gold model's gain per nat of KL and per CPU minute (issue 12).

    python bench/estimator_quality.py configs/quickstart/ppo.yaml \\
        --gold_reward_model=outputs/rm-quickstart-gold --out_root outputs/estimators-quickstart

Flags not listed below go to every ppo.py run unchanged (--eval_seeds, --steps, --gold_reward_model ...).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from jsonline import emit

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    # no abbreviations: --seed (ppo.py's, refused here) must not be read as --seeds
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("config", help="a ppo.py YAML config (configs/quickstart/ppo.yaml)")
    p.add_argument("--estimators", default="gae,rloo,grpo", help="comma-separated")
    p.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    p.add_argument("--num_generations", type=int, default=4, help="responses per prompt, every estimator")
    p.add_argument("--out_root", required=True, help="each run writes OUT_ROOT/ESTIMATOR-sSEED")
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append every line to this file")
    args, passthrough = p.parse_known_args(argv)
    if any(flag.split("=")[0] in ("--seed", "--output_dir", "--advantage_estimator") for flag in passthrough):
        p.error("--seed, --output_dir and --advantage_estimator are set per run by this script")
    return args, passthrough


def cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(config: str, estimator: str, seed: int, args, passthrough: list[str]) -> dict:
    """One ppo.py run; its final evaluation and its cost."""
    out = Path(args.out_root) / f"{estimator}-s{seed}"
    cmd = [sys.executable, str(ROOT / "ppo.py"), config, f"--advantage_estimator={estimator}"]
    cmd += [
        f"--num_generations={args.num_generations}",
        f"--seed={seed}",
        f"--output_dir={out}",
        *passthrough,
    ]
    cpu0, t0 = cpu_seconds_of_children(), time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    cpu, wall = cpu_seconds_of_children() - cpu0, time.time() - t0
    result = json.loads((out / "eval.json").read_text())
    updates = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]

    def figures(f: dict) -> dict:
        keys = (
            "gain_mean",
            "gain_se",
            "win_rate",
            "length_controlled_gain_mean",
            "length_controlled_gain_se",
        )
        return {k: f.get(k) for k in keys}

    return {
        "harness": "estimator_quality (run)",
        "label": args.label,
        "estimator": estimator,
        "seed": seed,
        "output_dir": str(out),
        "cmd": " ".join(cmd[1:]),
        "updates": len(updates),
        "episodes": updates[-1]["episodes"] if updates else 0,
        "kl_mean": result["kl_mean"],
        "proxy": figures(result["proxy"]),
        "gold": {name: figures(f) for name, f in result["gold"].items()},
        "diagnostics": result["diagnostics"]["policy"],
        "train_s": sum(m["time/update_s"] for m in updates),
        "cpu_min": cpu / 60,
        "wall_s": wall,
    }


def mean_se(xs: list[float]) -> tuple[float, float | None]:
    """Mean, and its standard error over the values (None for one value)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


def summarize(runs: list[dict]) -> dict:
    """Per estimator: means over seeds (standard error over seeds) and the first gold's gain per KL and
    per CPU minute."""
    out = {}
    for estimator in dict.fromkeys(r["estimator"] for r in runs):
        rs = [r for r in runs if r["estimator"] == estimator]
        row = {"seeds": [r["seed"] for r in rs]}
        series = {
            "kl": [r["kl_mean"] for r in rs],
            "proxy_gain": [r["proxy"]["gain_mean"] for r in rs],
            "train_s": [r["train_s"] for r in rs],
            "cpu_min": [r["cpu_min"] for r in rs],
        }
        gold = next(iter(rs[0]["gold"]), None)
        if gold is not None:
            series["gold_gain"] = [r["gold"][gold]["gain_mean"] for r in rs]
            lc = [r["gold"][gold]["length_controlled_gain_mean"] for r in rs]
            if all(x is not None for x in lc):
                series["gold_gain_length_controlled"] = lc
            row["gold"] = gold
        for name, xs in series.items():
            row[name], row[f"{name}_se"] = mean_se(xs)
        if gold is not None:
            row["gold_gain_per_kl"] = row["gold_gain"] / row["kl"] if row["kl"] > 0 else None
            row["gold_gain_per_cpu_min"] = row["gold_gain"] / row["cpu_min"]
        out[estimator] = row
    return out


def main(argv=None) -> dict:
    args, passthrough = parse_args(argv)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:  # seeds outermost: a partial sweep stays balanced
        for estimator in args.estimators.split(","):
            run = run_one(args.config, estimator, seed, args, passthrough)
            emit(run, args.json_out)
            runs.append(run)
    summary = {
        "harness": "estimator_quality",
        "label": args.label,
        "config": args.config,
        "num_generations": args.num_generations,
        "passthrough": passthrough,
        "estimators": summarize(runs),
    }
    emit(summary, args.json_out)
    return summary


if __name__ == "__main__":
    main()
