"""PPO-GAE against the critic-free estimators at the same episodes per update: episodes/s and peak
RSS of each, side by side. Each estimator runs bench/ppo_bench.py in a process of its own (peak RSS
is a per-process high-water mark), with the same flags, the same --num_generations for every
estimator (gae included, so every run rolls out the same prompts and shapes), one after another.
Prints one JSON line: per estimator, its ppo_bench fields and the ratios to gae (issue 12's target:
critic-free >= 1.3x gae's episodes/s and <= 0.8x its peak RSS).

    python bench/estimators.py                                   # the peer's small preset
    python bench/estimators.py --model pypi:SmolLM2-135M-Instruct --lora
    python bench/estimators.py --preset tiny --total_episodes 32 --response_length 8   # a smoke run

Flags not listed below go to every ppo_bench.py run unchanged (--preset, --model, --lora, --batch_size,
--total_episodes, --threads, ...).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from jsonline import emit

HERE = Path(__file__).resolve().parent
ESTIMATORS = ["gae", "rloo", "grpo", "dr_grpo", "reinforce_pp"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated, gae first")
    p.add_argument("--num_generations", type=int, default=4, help="responses per prompt, every estimator")
    p.add_argument("--json_out", default=None)
    return p.parse_known_args(argv)


def run_one(estimator: str, k: int, passthrough: list[str]) -> dict:
    """One ppo_bench.py run in its own process; its JSON line."""
    cmd = [sys.executable, str(HERE / "ppo_bench.py"), "--advantage_estimator", estimator]
    cmd += ["--num_generations", str(k), *passthrough]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main(argv=None):
    args, passthrough = parse_args(argv)
    names = args.estimators.split(",")
    if names[0] != "gae":
        sys.exit("--estimators must start with gae: the ratios are to PPO-GAE")
    runs = {name: run_one(name, args.num_generations, passthrough) for name in names}
    gae = runs["gae"]
    table = {}
    for name, r in runs.items():
        table[name] = {
            "episodes_per_s": r["episodes_per_s"],
            "episodes_per_s_clean": r["episodes_per_s_clean"],
            "peak_rss_mib": r["peak_rss_mib"],
            "value_model": r["settings"]["value_model"],
            "phases_median_s": r["phases_median_s"],
            "episodes_per_s_vs_gae": ratio(r["episodes_per_s"], gae["episodes_per_s"]),
            "peak_rss_vs_gae": ratio(r["peak_rss_mib"], gae["peak_rss_mib"]),
            "other_procs_cpu_cores": r["other_procs_cpu_cores"],
        }
    settings = {k: v for k, v in gae["settings"].items() if k not in ("value_model", "advantage_estimator")}
    emit(
        {
            "harness": "estimators (ours)",
            "lora": gae["lora"],
            "bf16": gae["bf16"],
            "settings": settings,
            "runs": table,
        },
        args.json_out,
    )


if __name__ == "__main__":
    main()
