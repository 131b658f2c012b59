"""Side by side: the TRL peer and ours on the same work, alternating peer, ours, peer, ours ... (N pairs).

On a shared 2-core machine single timings mean little; what counts is the median of the per-pair
ratios ours / peer, with every run's noise indicator (CPU that other processes used while it ran).

    python bench/compare.py ppo                                   # preset small, 3 pairs
    python bench/compare.py ppo --preset tiny --ours_args=--bf16           # the peer then runs bf16 too
    python bench/compare.py rm                                    # MiniLM, batch 64, max_length 512 (2024 settings)
    python bench/compare.py rm --preset b16 --ours_args="--gradient_checkpointing=True --train_chunk_tokens=0"
    python bench/compare.py rm --json_out bench/results/rm-b64.jsonl
    python bench/compare.py rm --ours_args= --ours_args=--bf16=True   # two variants of ours, one peer

ppo: ../shared/peers/trl_ppo_peer.py (TRL 1.12 PPOTrainer, in .peer-venv, built here if missing with the
commands of ../shared/peers/README.md) against bench/ppo_bench.py; key metric episodes/s. Like against
like: when ours runs bf16 autocast (--ours_args=--bf16) the peer runs `--mixed_precision=bf16` (as
`accelerate launch --mixed_precision=bf16` runs TRL); variants of ours in different precisions are refused
(one peer run serves them all). `precision` in the JSON says what each side ran, from the runs' own JSON.
rm: ../shared/peers/trl_rm_peer.py (TRL 1.16 RewardTrainer, the 2024 settings; our venv has TRL 1.16)
against bench/rm_bench.py; key metrics real tokens/s and pairs/s. The matmul peak is measured before the
runs (../shared/peers/cpu_peak.py) and handed to every run of ours, and measured again after them; the
summary's fractions of peak use the higher of the two per dtype (one measurement on an otherwise idle
machine once gave bf16 at fp32 speed, 208 against 404-408 GFLOP/s).
Prints one JSON line; --json_out also appends every run's own line and the summary to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cpu_load import other_cores, snapshot

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
PEER_VENV = ROOT / ".peer-venv"
TINY_DIR = Path(tempfile.gettempdir()) / "rmpeer" / "tiny-distilbert-2x64"

# preset -> (peer flags, our flags): the same work on both sides.
PRESETS = {
    "ppo": {p: ([f"--preset={p}"], [f"--preset={p}"]) for p in ("tiny", "small", "medium")},
    "rm": {
        "b64": ([], []),  # MiniLM, rows 0:256, batch 64, max_length 512: the 2024 command
        "b16": (["--batch_size=16", "--max_length=256"], ["--batch_size=16", "--max_length=256"]),
        "tiny": (["--tiny_distilbert", f"--tiny_dir={TINY_DIR}"], [f"--model={TINY_DIR}"]),
    },
}
METRICS = {"ppo": ["episodes_per_s", "episodes_per_s_clean"], "rm": ["real_tokens_per_s", "pairs_per_s"]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=["ppo", "rm"], help="PPO (TRL 1.12 PPOTrainer) or reward-model training")
    p.add_argument(
        "--preset", default=None, help="ppo: tiny, small (default), medium; rm: b64 (default), b16, tiny"
    )
    p.add_argument("--pairs", type=int, default=3, help="peer/ours pairs to run, alternating")
    p.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    p.add_argument(
        "--ours_args",
        action="append",
        default=None,
        help='extra flags for ours, one string, written --ours_args="--a=1 --b" (with =); give it several '
        "times to time several variants of ours against the same peer runs (peer, ours1, ours2, peer, ...)",
    )
    p.add_argument("--peer_args", default="", help='extra flags for the peer, as --peer_args="..."')
    p.add_argument("--ours_first", action="store_true", help="alternate ours, peer, ... instead")
    p.add_argument(
        "--quiet_wait",
        type=float,
        default=300.0,
        help="before each run, wait up to this many seconds for other processes to use < --quiet_cores",
    )
    p.add_argument("--quiet_cores", type=float, default=0.1, help="CPU cores other processes may use (quiet)")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="run again, up to this many times, a run during which other processes used >= --quiet_cores",
    )
    p.add_argument("--peak_json", default=None, help="rm: a cpu_peak.py line to use instead of measuring")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds one run may take")
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="append every run's line and the summary here (jsonl)")
    args = p.parse_args(argv)
    args.preset = args.preset or {"ppo": "small", "rm": "b64"}[args.kind]
    args.ours_args = args.ours_args or [""]
    if args.preset not in PRESETS[args.kind]:
        p.error(f"--preset for {args.kind}: one of {', '.join(PRESETS[args.kind])}")
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    return args


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def wait_quiet(limit_s, cores, window_s=3.0):
    """Wait until two windows in a row see other processes use < `cores`; returns (seconds waited, last load)."""
    t0, calm, load = time.perf_counter(), 0, None
    while True:
        a = snapshot(children=True)
        time.sleep(window_s)
        load = other_cores(a, snapshot(children=True))
        calm = calm + 1 if load is not None and load < cores else 0
        waited = time.perf_counter() - t0
        if calm >= 2 or waited >= limit_s:
            return round(waited, 1), load


def our_python():
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def ensure_peer_venv():
    """.peer-venv with TRL 1.12, built exactly as ../shared/peers/README.md says (torch first: the CPU wheel)."""
    py = PEER_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import trl"], capture_output=True).returncode == 0:
        return str(py)
    log(f"building {PEER_VENV} (once; see ../shared/peers/README.md)")
    for cmd in (
        [sys.executable, "-m", "venv", str(PEER_VENV)],
        [str(PEER_VENV / "bin" / "pip"), "install", "torch==2.13.0"],
        [str(PEER_VENV / "bin" / "pip"), "install", "-r", str(PEERS / "trl-ppo-requirements.txt")],
    ):
        log(" ".join(cmd))
        subprocess.run(cmd, check=True, cwd=ROOT)
    return str(py)


def measure_peak(path, threads):
    log("measuring the matmul peak (../shared/peers/cpu_peak.py)")
    cmd = [our_python(), str(PEERS / "cpu_peak.py"), f"--threads={threads}", f"--json_out={path}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(path).read_text().splitlines()[-1])


def run_one(role, cmd, env, timeout):
    """Run one harness; its last stdout line is its JSON. Adds our own noise measurement."""
    log(f"{role}: {' '.join(cmd)}")
    a = snapshot(children=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    b = snapshot(children=True)
    if proc.returncode != 0:
        sys.exit(f"{role} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        sys.exit(f"{role} printed no JSON line:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["compare_other_procs_cpu_cores"] = other_cores(a, b)
    result["compare_wall_s"] = round(b[2] - a[2], 2)
    return result


def peer_precision_flags(ours_args: list[str]) -> list[str]:
    """The peer's flags for the precision of our PPO variants: `--mixed_precision=bf16` when ours runs
    bf16 autocast, none for float32 (the peer's default). Variants that differ in precision are refused."""
    import ppo_bench

    bf16 = {ppo_bench.parse_args(shlex.split(extra)).bf16 for extra in ours_args}
    if len(bf16) > 1:
        sys.exit("compare: --ours_args variants in bf16 and float32 share one peer run; compare them apart")
    return ["--mixed_precision=bf16"] if bf16.pop() else []


def run_precision(kind: str, role: str, result: dict) -> str:
    """What one run computed in, from its own JSON: bf16 (autocast / mixed precision) or fp32."""
    if role == "peer":
        settings = result.get("settings", {})
        bf16 = settings.get("mixed_precision") == "bf16" or settings.get("bf16")
    else:
        bf16 = result.get("bf16") if kind == "ppo" else result.get("bf16_autocast")
    return "bf16" if bf16 else "fp32"


def summarize(values):
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def compare_runs(args, peer_runs, our_runs, peak):
    """Per-pair values, ratios ours / peer and their median, memory, FLOP/s and noise of one variant."""
    out = {
        "precision": {
            "peer": [run_precision(args.kind, "peer", r) for r in peer_runs],
            "ours": [run_precision(args.kind, "ours", r) for r in our_runs],
        }
    }
    for key in METRICS[args.kind]:
        peer = [r.get(key) for r in peer_runs]
        ours = [r.get(key) for r in our_runs]
        ratios = [round(o / p, 4) for o, p in zip(ours, peer) if o and p]
        out[key] = {"peer": peer, "ours": ours, "ratio_ours_over_peer": ratios}
        if ratios:
            out[key]["median_ratio"] = round(statistics.median(ratios), 4)
            out[key]["min_ratio"], out[key]["max_ratio"] = min(ratios), max(ratios)
            out[key]["peer_summary"] = summarize([v for v in peer if v])
            out[key]["ours_summary"] = summarize([v for v in ours if v])
    rss_peer = [r.get("peak_rss_mib") for r in peer_runs]
    rss_ours = [r.get("peak_rss_mib") for r in our_runs]
    out["peak_rss_mib"] = {
        "peer": rss_peer,
        "ours": rss_ours,
        "median_ratio": round(statistics.median(o / p for o, p in zip(rss_ours, rss_peer)), 4),
    }
    if args.kind == "rm":
        same = [
            o.get("pairs_trained") == p.get("pairs_trained") and o.get("real_tokens") == p.get("real_tokens")
            for o, p in zip(our_runs, peer_runs)
        ]
        out["same_work"] = all(same)
        for key in ("padding_frac", "frac_of_peak", "gflops_model_real", "gflops_6ND_real_nonemb"):
            out[key] = {"peer": [r.get(key) for r in peer_runs], "ours": [r.get(key) for r in our_runs]}
        # Both sides train the same sequences, so the peer's useful (model) FLOPs equal ours: scale by time.
        peer_model = [
            round(o["gflops_model_real"] * o["train_s"] / p["train_s"], 2)
            for o, p, ok in zip(our_runs, peer_runs, same)
            if ok
        ]
        out["gflops_model_real"]["peer"] = peer_model
        if peak:
            dtype = our_runs[0].get("peak_dtype", "fp32")
            out["matmul_peak_gflops"] = peak
            out["frac_of_peak"] = {
                "peer": [round(g / peak["fp32"], 4) for g in peer_model],
                "ours": [round(r["gflops_model_real"] / peak[dtype], 4) for r in our_runs],
                "ours_as_measured_by_the_run": out["frac_of_peak"]["ours"],
                "peer_dtype": "fp32",
                "ours_dtype": dtype,
            }
            out["frac_of_peak"]["ours_median"] = statistics.median(out["frac_of_peak"]["ours"])
    noise = [r.get("other_procs_cpu_cores") for r in our_runs]
    out["other_procs_cpu_cores"] = {
        "peer": [r.get("other_procs_cpu_cores") for r in peer_runs],
        "ours": noise,
    }
    out["other_procs_cpu_cores_seen_by_compare"] = {
        "peer": [r.get("compare_other_procs_cpu_cores") for r in peer_runs],
        "ours": [r.get("compare_other_procs_cpu_cores") for r in our_runs],
    }
    out["clean_pairs"] = sum(
        all(v is not None and v < args.quiet_cores for v in (p.get("other_procs_cpu_cores"), o))
        for p, o in zip(peer_runs, noise)
    )
    return out


def main(argv=None):
    args = parse_args(argv)
    if not PEERS.is_dir():
        print(f"[compare] skipped: the peer harnesses are not there ({PEERS})", file=sys.stderr)
        print(json.dumps({"harness": "compare", "skipped": f"{PEERS} not found"}))
        return 0
    peer_flags, our_flags = PRESETS[args.kind][args.preset]
    threads = [f"--threads={args.threads}"]
    env = dict(os.environ, TRL_EXPERIMENTAL_SILENCE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if args.kind == "ppo":
        peer_cmd = [ensure_peer_venv(), str(PEERS / "trl_ppo_peer.py"), *peer_flags, *threads]
        ours_cmd = [our_python(), "bench/ppo_bench.py", *our_flags, *threads]
    else:
        peer_cmd = [our_python(), str(PEERS / "trl_rm_peer.py"), *peer_flags, *threads]
        ours_cmd = [our_python(), "bench/rm_bench.py", *our_flags, *threads]
    peer_cmd += shlex.split(args.peer_args)
    variants = [ours_cmd + shlex.split(extra) for extra in args.ours_args]
    if args.kind == "ppo":
        peer_cmd += peer_precision_flags(args.ours_args)

    compare_id = uuid.uuid4().hex[:8]
    peak, peaks = None, []
    if args.kind == "rm":
        peak_path = args.peak_json
        if not peak_path:
            peak_path = str(Path(tempfile.mkdtemp(prefix="compare_")) / "cpu-peak.jsonl")
            wait_quiet(args.quiet_wait, args.quiet_cores)
            peaks.append(measure_peak(peak_path, args.threads))
        else:
            peaks.append(
                next(json.loads(ln) for ln in Path(peak_path).read_text().splitlines() if '"cpu_peak"' in ln)
            )
        for cmd in variants:
            cmd.append(f"--peak_json={peak_path}")

    roles = ["peer"] + [f"ours{k}" if len(variants) > 1 else "ours" for k in range(1, len(variants) + 1)]
    commands = dict(zip(roles, [peer_cmd, *variants]))
    runs = {role: [] for role in roles}
    waits = []
    order = roles[1:] + roles[:1] if args.ours_first else roles
    discarded = []  # contended attempts that were run again
    for i in range(args.pairs):
        for role in order:
            for attempt in range(args.retries + 1):
                waited, load = wait_quiet(args.quiet_wait, args.quiet_cores)
                waits.append({"pair": i + 1, "role": role, "waited_s": waited, "other_cores_before": load})
                result = run_one(role, commands[role], env, args.timeout)
                result.update(
                    compare_id=compare_id, compare_role=role, compare_pair=i + 1, attempt=attempt + 1
                )
                keys = ", ".join(f"{k} {result.get(k)}" for k in METRICS[args.kind])
                noise = result.get("other_procs_cpu_cores")
                log(
                    f"pair {i + 1} {role} (attempt {attempt + 1}): {keys}; peak RSS "
                    f"{result.get('peak_rss_mib')} MiB; other procs {noise} cores"
                )
                if noise is not None and noise < args.quiet_cores or attempt == args.retries:
                    break
                discarded.append(result)
            runs[role].append(result)

    out = {
        "harness": "compare",
        "compare_id": compare_id,
        "label": args.label,
        "kind": args.kind,
        "preset": args.preset,
        "pairs": args.pairs,
        "order": order,
        "peer_cmd": " ".join(peer_cmd),
        "threads": args.threads,
    }
    if args.kind == "rm" and not args.peak_json:
        wait_quiet(args.quiet_wait, args.quiet_cores)
        peaks.append(
            measure_peak(str(Path(tempfile.mkdtemp(prefix="compare_")) / "cpu-peak.jsonl"), args.threads)
        )
    if peaks:
        peak = {dt: max(p["peak_gflops"][dt] for p in peaks) for dt in peaks[0]["peak_gflops"]}
        out["matmul_peaks_measured"] = [
            {"peak_gflops": p["peak_gflops"], "other_procs_cpu_cores": p.get("other_procs_cpu_cores")}
            for p in peaks
        ]
    summaries = [
        {"ours_cmd": " ".join(commands[role]), **compare_runs(args, runs["peer"], runs[role], peak)}
        for role in roles[1:]
    ]
    out.update(summaries[0])
    if len(summaries) > 1:
        out["variants"] = summaries
    out["quiet_waits"] = waits
    out["discarded_contended_runs"] = [
        {
            k: r.get(k)
            for k in ("compare_role", "compare_pair", "attempt", "other_procs_cpu_cores", *METRICS[args.kind])
        }
        for r in discarded
    ]
    out["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(out)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json_out, "a") as f:
            for r in [*discarded, *(r for role in roles for r in runs[role])]:
                f.write(json.dumps(r) + "\n")
            f.write(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
