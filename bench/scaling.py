"""How the cost of one PPO update grows with the work: ours (bench/ppo_bench.py) and the TRL 1.12 peer
(../shared/peers/trl_ppo_peer.py) over model size x response length x episodes per update.

At each point both run the same work (compare.py's pairing: same presets, prompts of 48 tokens, 2
minibatches, 4 epochs, no early stop, same precision) for --updates updates; one JSON line per point
goes to --json_out: seconds per update (median), episodes/s, peak RSS, the ratios ours / peer, our
phase breakdown (generate, score, phase-2 log-prob forwards, train: ppo.py's time/* metrics) and
each run's noise indicator. --plot draws the file (bench/results/scaling.png).

    python bench/scaling.py --presets tiny --response_lengths 48 --episodes 16   # one point, ~1 min
    python bench/scaling.py                                 # the whole grid: 3 x 3 x 2 points, hours
    python bench/scaling.py --bf16                          # bf16 autocast, the peer --mixed_precision=bf16
    python bench/scaling.py --plot                          # only the figure, from --json_out
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import compare

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # plots.py
RESULTS = ROOT / "bench" / "results" / "scaling.jsonl"
PHASES = ("generate", "score", "logprob_forwards", "train")


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="tiny,small,medium", help="model sizes, comma-separated (peer's)")
    p.add_argument("--response_lengths", type=int_list, default=[48, 128, 256], help="tokens per response")
    p.add_argument("--episodes", type=int_list, default=[16, 64], help="episodes per update")
    p.add_argument("--updates", type=int, default=3, help="PPO updates per run (the median is reported)")
    p.add_argument("--side", choices=["both", "ours", "peer"], default="both", help="which to run")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (ours), --mixed_precision=bf16 (peer)")
    p.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    p.add_argument("--quiet_wait", type=float, default=300.0, help="as compare.py: wait for a quiet machine")
    p.add_argument("--quiet_cores", type=float, default=0.1, help="as compare.py")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds one run may take")
    p.add_argument("--json_out", default=str(RESULTS), help="append one line per point here (jsonl)")
    p.add_argument("--plot", action="store_true", help="draw --json_out into --plot_out and stop")
    p.add_argument("--plot_out", default=str(RESULTS.with_suffix(".png")), help="the figure (PNG)")
    p.add_argument("--label", default=None, help="free text copied into every line")
    args = p.parse_args(argv)
    args.presets = args.presets.split(",")
    unknown = set(args.presets) - set(compare.PRESETS["ppo"])
    if unknown:
        p.error(
            f"--presets: {', '.join(sorted(unknown))} unknown; known: {', '.join(compare.PRESETS['ppo'])}"
        )
    if args.updates < 1 or min(args.episodes) < 2 or any(e % 2 for e in args.episodes):
        p.error("--updates must be >= 1 and --episodes even (two minibatches per update, as the peer)")
    return args


def commands(args, preset: str, length: int, episodes: int) -> dict[str, list[str]]:
    """The peer's and our command lines for one point: the same work on both sides."""
    common = [f"--preset={preset}", f"--response_length={length}", f"--threads={args.threads}"]
    total = [f"--total_episodes={episodes * args.updates}"]
    peer = [compare.ensure_peer_venv(), str(compare.PEERS / "trl_ppo_peer.py"), *common, *total]
    peer.append(f"--per_device_train_batch_size={episodes}")
    ours = [compare.our_python(), "bench/ppo_bench.py", *common, *total, f"--batch_size={episodes}"]
    if args.bf16:
        peer.append("--mixed_precision=bf16")
        ours.append("--bf16")
    sides = {"peer": peer, "ours": ours}
    return sides if args.side == "both" else {args.side: sides[args.side]}


def side_summary(side: str, result: dict) -> dict:
    """What the point keeps of one run's JSON."""
    keys = ("s_per_update_median", "s_per_update_clean_median", "episodes_per_s", "episodes_per_s_clean")
    out = {k: result.get(k) for k in keys}
    out["peak_rss_mib"] = result.get("peak_rss_mib")
    out["other_procs_cpu_cores"] = result.get("other_procs_cpu_cores")
    out["precision"] = compare.run_precision("ppo", side, result)
    if "phases_median_s" in result:
        out["phases_median_s"] = result["phases_median_s"]
    return out


def point(preset: str, length: int, episodes: int, runs: dict[str, dict]) -> dict:
    """One grid point: both sides' figures and the ratios ours / peer."""
    row = {"harness": "scaling", "preset": preset, "response_length": length, "episodes_per_update": episodes}
    row.update({side: side_summary(side, r) for side, r in runs.items()})
    if "ours" in row and "peer" in row:
        ours, peer = row["ours"], row["peer"]
        row["ratio_ours_over_peer"] = {
            "episodes_per_s": round(ours["episodes_per_s"] / peer["episodes_per_s"], 4),
            "s_per_update_median": round(ours["s_per_update_median"] / peer["s_per_update_median"], 4),
            "peak_rss_mib": round(ours["peak_rss_mib"] / peer["peak_rss_mib"], 4),
        }
    return row


def scaling_figure(rows: list[dict]):
    """Seconds per update against response length, one panel per preset, a line per side and
    episodes-per-update; our phases stacked in a second row of panels (the largest episodes setting)."""
    from plots import _figure

    presets = [p for p in compare.PRESETS["ppo"] if any(r["preset"] == p for r in rows)]
    fig, axes = _figure(2 * len(presets), cols=len(presets))
    for ax, preset in zip(axes, presets):
        mine = [r for r in rows if r["preset"] == preset]
        for side, episodes in itertools.product(
            ("ours", "peer"), sorted({r["episodes_per_update"] for r in mine})
        ):
            pts = sorted(
                (r["response_length"], r[side]["s_per_update_median"])
                for r in mine
                if r["episodes_per_update"] == episodes and side in r
            )
            if pts:
                style = "-" if side == "ours" else "--"
                ax.plot(*zip(*pts), style, marker="o", label=f"{side}, {episodes} episodes")
        ax.set_title(f"{preset}: seconds per update")
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("s / update (median)")
        ax.legend(fontsize="small")
    for ax, preset in zip(axes[len(presets) :], presets):
        ours = [r for r in rows if r["preset"] == preset and "ours" in r]
        if not ours:
            continue
        episodes = max(r["episodes_per_update"] for r in ours)
        ours = sorted(
            (r for r in ours if r["episodes_per_update"] == episodes), key=lambda r: r["response_length"]
        )
        x = [r["response_length"] for r in ours]
        ax.stackplot(x, *[[r["ours"]["phases_median_s"][k] for r in ours] for k in PHASES], labels=PHASES)
        ax.set_title(f"{preset}: our phases, {episodes} episodes")
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("s / update (median)")
        ax.legend(fontsize="small", loc="upper left")
    return fig


def main(argv=None):
    args = parse_args(argv)
    if args.plot:
        from plots import read_jsonl

        rows = [r for r in read_jsonl(Path(args.json_out)) if r.get("harness") == "scaling"]
        scaling_figure(rows).savefig(args.plot_out, dpi=110)
        print(f"[scaling] {len(rows)} points -> {args.plot_out}", file=sys.stderr)
        return 0
    if not compare.PEERS.is_dir() and args.side != "ours":
        sys.exit(f"scaling: the peer harness is not there ({compare.PEERS}); --side=ours runs ours alone")
    env = dict(os.environ, TRL_EXPERIMENTAL_SILENCE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    for preset, length, episodes in itertools.product(args.presets, args.response_lengths, args.episodes):
        runs = {}
        for side, cmd in commands(args, preset, length, episodes).items():
            compare.wait_quiet(args.quiet_wait, args.quiet_cores)
            runs[side] = compare.run_one(side, cmd, env, args.timeout)
        row = point(preset, length, episodes, runs)
        row.update(label=args.label, threads=args.threads, updates=args.updates)
        row["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(args.json_out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
