"""Time our reward_modeling.py training on exactly the work of ../shared/peers/trl_rm_peer.py.

The peer times TRL 1.16's RewardTrainer set up as the 2024 project did (see ../shared/peers/RM-README.md).
This runs our own path on the same work: the same rows of the hh-rlhf file, the same tokens (our
prompt/reply split and `tokenize_pairs`, checked token for token against the peer's `tokenizer(text)`),
the peer's length filter (drop a pair with a side over max_length, where ours would cut from the left),
the same model and seeded head, batch size, epochs, learning rate, optimizer and torch threads. Training
goes through `reward_modeling.build_trainer` with reward_modeling.py's own flag parsing and defaults.
Prints one JSON line with the peer's fields (pairs/s, real and padded tokens/s, padding, peak RSS,
6ND FLOP/s, noise indicators, versions, settings) plus the achieved FLOP/s as a fraction of this CPU's
matmul peak, measured in the same process with the peer's `cpu_peak.py` (or read with --peak_json).

    python bench/rm_bench.py                                   # MiniLM, rows 0:256, batch 64, max_length 512
    python bench/rm_bench.py --batch_size 16 --max_length 256
    python bench/rm_bench.py --gradient_checkpointing=True     # any reward_modeling.py flag passes through
    python bench/rm_bench.py --train_chunk_tokens=0            # TRL's one padded pass per batch
    python bench/rm_bench.py --bf16=True                       # bf16 autocast
    python bench/rm_bench.py --model /tmp/rmpeer/tiny-distilbert-2x64   # the peer's --tiny_distilbert model
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from cpu_load import other_cores, own_cores, snapshot  # noqa: E402
from jsonline import emit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Unknown flags go to reward_modeling.py's parser (e.g. --train_chunk_tokens=0, --bf16=True).",
    )
    p.add_argument(
        "--model", default="pypi:all-MiniLM-L6-v2", help="reward_modeling.py's --model_name_or_path"
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="gzip jsonl with chosen/rejected (the peer's)")
    p.add_argument("--rows", default="0:256", help="START:END rows of --data, before the length filter")
    p.add_argument("--batch_size", type=int, default=64, help="pairs per optimizer step (peer: 64)")
    p.add_argument(
        "--max_length", type=int, default=512, help="drop pairs with a side longer than this (tokens)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (peer: 2)")
    p.add_argument(
        "--max_steps", type=int, default=-1, help="stop after this many optimizer steps (-1: 1 epoch)"
    )
    p.add_argument("--epochs", type=float, default=1.0, help="epochs over the kept pairs")
    p.add_argument("--learning_rate", type=float, default=1.41e-5, help="peak learning rate (peer: 1.41e-5)")
    p.add_argument(
        "--seed", type=int, default=42, help="seed of the head's initialisation and of the sampler"
    )
    p.add_argument("--peak_json", default=None, help="read the matmul peak from this cpu_peak.py line")
    p.add_argument("--peak_seconds", type=float, default=3.0, help="cpu_peak: seconds per matrix size")
    p.add_argument("--no_peak", action="store_true", help="skip the matmul peak measurement")
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    args, ours = p.parse_known_args(argv)
    start, _, end = args.rows.partition(":")
    args.row_range = (int(start or 0), int(end))
    return args, ours


def rss_mib(peak=True):
    if peak:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    return None


def matmul_peak(args, torch):
    """fp32 and bf16 GEMM peak with the peer's own `cpu_peak.bench`, or an earlier line of its output."""
    if args.peak_json:
        with open(args.peak_json) as f:
            for line in f:
                row = json.loads(line)
                if row.get("harness") == "cpu_peak":
                    return {**row, "source": args.peak_json}
        raise ValueError(f"{args.peak_json}: no cpu_peak line")
    sys.path.insert(0, str(PEERS))
    import cpu_peak

    a = snapshot()
    per = {
        name: [cpu_peak.bench(torch, n, dt, 5, 50, args.peak_seconds, 2) for n in (1024, 2048, 4096)]
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    return {
        "harness": "cpu_peak",
        "peak_gflops": {k: max(r["gflops_best"] for r in v) for k, v in per.items()},
        "results": per,
        "other_procs_cpu_cores": other_cores(a, snapshot()),
        "source": "measured in this run (../shared/peers/cpu_peak.py bench())",
    }


def load_peer_pairs(path, start, end):
    """Rows [start, end) of the file, read as the peer reads them (no cleaning: it trains every row)."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= end:
                break
            if i >= start:
                r = json.loads(line)
                rows.append({"chosen": r["chosen"], "rejected": r["rejected"]})
    return rows


def main(argv=None):
    args, ours_argv = parse_args(argv)
    if not Path(args.data).exists():
        sys.exit(f"data file not found: {args.data} (../shared/data is needed for the peer's work)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import ModelConfig, RewardConfig

    import cmdline
    import hh_data
    import reward_format
    import reward_modeling

    datasets.disable_progress_bars()
    t_imports = time.perf_counter()
    loadavg_before = os.getloadavg()[0]
    peak = None if args.no_peak else matmul_peak(args, torch)

    # ---- arguments: the 2024 command's settings, parsed by reward_modeling.py with its defaults ----------
    out_dir = tempfile.mkdtemp(prefix="rm_bench_")
    flags = [
        f"--model_name_or_path={args.model}",
        f"--output_dir={out_dir}",
        f"--per_device_train_batch_size={args.batch_size}",
        f"--num_train_epochs={args.epochs}",
        f"--max_steps={args.max_steps}",
        f"--learning_rate={args.learning_rate}",
        "--optim=adamw_torch",
        "--logging_steps=10",
        f"--max_length={args.max_length}",
        "--remove_unused_columns=False",
        f"--seed={args.seed}",
        "--report_to=none",
        "--save_strategy=no",
        "--disable_tqdm=True",
        *ours_argv,
    ]
    script_args, training_args, model_args = cmdline.parse_args(
        (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
        flags,
        reward_modeling.RENAMED_FLAGS,
        reward_modeling.default_flags(),
    )

    # ---- the peer's pairs, through our tokenization ---------------------------------------------------
    t_setup0 = time.perf_counter()
    start, end = args.row_range
    raw = load_peer_pairs(args.data, start, end)
    set_seed(args.seed)  # as the peer: the seeded RNG initialises the new reward head
    path, tokenizer, model, info = reward_modeling.load_backbone(model_args, training_args)
    pairs = []
    for r in raw:
        prompt, chosen, rejected = hh_data.split_prompt(r["chosen"], r["rejected"])
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    fmt = reward_format.reward_format_for(tokenizer, model, pairs, args.max_length)
    t_tok0 = time.perf_counter()
    full, _ = reward_modeling.tokenize_pairs(pairs, tokenizer, {**fmt, "max_length": None})
    tokenize_s = time.perf_counter() - t_tok0
    peer_chosen = tokenizer([r["chosen"] for r in raw])["input_ids"]
    peer_rejected = tokenizer([r["rejected"] for r in raw])["input_ids"]
    same = sum(
        a == b and c == d
        for a, b, c, d in zip(full["chosen_ids"], peer_chosen, full["rejected_ids"], peer_rejected)
    )
    keep = [
        i
        for i in range(len(pairs))
        if len(full["chosen_ids"][i]) <= args.max_length and len(full["rejected_ids"][i]) <= args.max_length
    ]
    train_rows = {k: [v[i] for i in keep] for k, v in full.items()}
    train_dataset = Dataset.from_dict(train_rows)

    # ---- trainer: reward_modeling.py's, plus token accounting and step timing -------------------------
    trainer = reward_modeling.build_trainer(
        script_args, training_args, model_args, model, tokenizer, info, train_dataset, None
    )
    for cb in (PrinterCallback, ProgressCallback):  # keep stdout for the JSON line
        trainer.remove_callback(cb)
    stats = {"step_rows": [], "step_padded_len": [], "step_computed": [], "step_real": [], "step_loss": []}
    shapes = []  # (rows, padded length) of every forward pass, for the executed-FLOP estimate
    seq_lengths = []  # real length of every trained sequence, for the model-FLOP count
    chunk_tokens = script_args.train_chunk_tokens
    inner_step = trainer.training_step

    def counted_step(model, inputs, num_items_in_batch=None):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        lengths = mask.sum(dim=1)
        n = ids.shape[0] // 2
        if chunk_tokens:  # the passes training_step_in_chunks will run
            pair_len = torch.maximum(lengths[:n], lengths[n:]).tolist()
            passes = [
                (2 * len(c), max(pair_len[i] for i in c))
                for c in reward_modeling.plan_chunks(
                    pair_len, chunk_tokens, reward_modeling.CHUNK_COST_TOKENS
                )
            ]
        else:
            passes = [tuple(ids.shape)]
        shapes.extend(passes)
        seq_lengths.extend(lengths.tolist())
        stats["step_rows"].append(ids.shape[0])
        stats["step_padded_len"].append(ids.shape[1])
        stats["step_computed"].append(sum(r * w for r, w in passes))
        stats["step_real"].append(int(lengths.sum()))
        loss = inner_step(model, inputs, num_items_in_batch)
        stats["step_loss"].append(round(float(loss), 6))
        return loss

    trainer.training_step = counted_step

    class StepTimer(TrainerCallback):
        snaps: list = []

        def on_train_begin(self, a, state, control, **kw):
            self.snaps = [snapshot()]

        def on_step_end(self, a, state, control, **kw):
            self.snaps.append(snapshot())

    timer = StepTimer()
    trainer.add_callback(timer)
    t_setup1 = time.perf_counter()
    rss_before = rss_mib(peak=False)

    # ---- train ---------------------------------------------------------------------------------------
    snap0 = snapshot()
    t0 = time.perf_counter()
    try:
        result = trainer.train()
        train_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    snap1 = snapshot()

    # ---- figures -------------------------------------------------------------------------------------
    step_s = [round(b[2] - a[2], 3) for a, b in zip(timer.snaps, timer.snaps[1:])]
    step_other = [other_cores(a, b) for a, b in zip(timer.snaps, timer.snaps[1:])]
    clean = [s for s, o in zip(step_s, step_other) if o is not None and o < 0.1]
    real, computed = sum(stats["step_real"]), sum(stats["step_computed"])
    trl_padded = sum(r * w for r, w in zip(stats["step_rows"], stats["step_padded_len"]))
    pairs_trained = sum(stats["step_rows"]) // 2
    n_steps = len(stats["step_rows"])

    net = trainer.model
    cfg = net.config
    params_total = sum(p.numel() for p in net.parameters())
    params_emb = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Embedding))
    nonemb = params_total - params_emb
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)
    d_model = getattr(cfg, "hidden_size", None) or getattr(cfg, "dim", None)
    block_params = 0
    for name, mod in net.named_modules():
        if name.endswith(("encoder.layer", "transformer.layer", "transformer.h", "model.layers")):
            block_params = sum(p.numel() for p in mod.parameters())
    gc_on = bool(getattr(net, "is_gradient_checkpointing", False))

    def gflops(n_params, tokens):
        return round(6.0 * n_params * tokens / train_s / 1e9, 2)

    # The peer's executed-FLOP estimate, on the shapes we really ran: per layer and padded token
    # 2 x block params (dense) + 4 x L x d (Q.K^T and attention x V); head once per row; x3 for
    # forward + backward, x4 when gradient checkpointing recomputes the forward.
    fwd = sum(
        2.0 * block_params * r * w + n_layers * 4.0 * w * d_model * r * w + 2.0 * (nonemb - block_params) * r
        for r, w in shapes
    )
    executed = fwd * (4.0 if gc_on else 3.0)
    # Model FLOPs: the same count on the real tokens only, without recompute: the useful work of training
    # (PaLM's MFU numerator for a bidirectional encoder: 6 N per token + 12 x layers x d x L per token).
    model_flops = 3.0 * sum(
        2.0 * block_params * n + 4.0 * n_layers * d_model * n * n + 2.0 * (nonemb - block_params)
        for n in seq_lengths
    )
    autocast_bf16 = bool(training_args.bf16)
    out = {
        "harness": "rm_bench (ours: reward_modeling.py)",
        "label": args.label,
        "model": args.model,
        "wall_s": round(time.perf_counter() - T_START, 3),
        "import_s": round(t_imports - T_START, 3),
        "setup_s": round(t_setup1 - t_setup0, 3),
        "tokenize_s": round(tokenize_s, 3),
        "train_s": round(train_s, 3),
        "num_steps": n_steps,
        "s_per_step": round(train_s / n_steps, 3),
        "pairs_trained": pairs_trained,
        "pairs_per_s": round(pairs_trained / train_s, 3),
        "real_tokens": real,
        "padded_tokens": computed,
        "padded_tokens_trl_batching": trl_padded,
        "real_tokens_per_s": round(real / train_s, 1),
        "padded_tokens_per_s": round(computed / train_s, 1),
        "padding_frac": round(1.0 - real / computed, 4),
        "padding_frac_trl_batching": round(1.0 - real / trl_padded, 4),
        "forward_passes": len(shapes),
        "peak_rss_mib": rss_mib(),
        "rss_before_train_mib": rss_before,
        "pairs_in": len(raw),
        "pairs_kept": len(keep),
        "pairs_dropped_for_length": len(raw) - len(keep),
        "pairs_tokenized_as_peer": same,
        "final_step_loss": stats["step_loss"][-1] if stats["step_loss"] else None,
        "mean_train_loss": round(result.training_loss, 6),
        "step_loss": stats["step_loss"],
        "params_total": params_total,
        "params_embedding": params_emb,
        "params_non_embedding": nonemb,
        "params_in_blocks": block_params,
        "gflops_6ND_real": gflops(params_total, real),
        "gflops_6ND_padded": gflops(params_total, computed),
        "gflops_6ND_real_nonemb": gflops(nonemb, real),
        "gflops_6ND_padded_nonemb": gflops(nonemb, computed),
        "gflops_executed_est": round(executed / train_s / 1e9, 2),
        "gflops_model_real": round(model_flops / train_s / 1e9, 2),
        "per_step_s": step_s,
        "per_step_other_procs_cpu_cores": step_other,
        "per_step_rows": stats["step_rows"],
        "per_step_padded_len": stats["step_padded_len"],
        "per_step_computed_tokens": stats["step_computed"],
        "per_step_real_tokens": stats["step_real"],
        "s_per_step_median": round(statistics.median(step_s), 3) if step_s else None,
        "s_first_step": step_s[0] if step_s else None,
        "s_per_step_clean_median": round(statistics.median(clean), 3) if clean else None,
        "num_clean_steps": len(clean),
        "other_procs_cpu_cores": other_cores(snap0, snap1),
        "train_cpu_cores_used": own_cores(snap0, snap1),
        "loadavg_1m_before": round(loadavg_before, 2),
    }
    if peak:
        ref = "bf16" if autocast_bf16 else "fp32"
        out["matmul_peak_gflops"] = peak["peak_gflops"]
        out["matmul_peak_other_procs_cpu_cores"] = peak.get("other_procs_cpu_cores")
        out["matmul_peak_source"] = peak.get("source")
        out["peak_dtype"] = ref
        for key in ("gflops_model_real", "gflops_6ND_real_nonemb", "gflops_6ND_real", "gflops_executed_est"):
            for dt, g in peak["peak_gflops"].items():
                out[f"{key}_frac_of_{dt}_peak"] = round(out[key] / g, 4)
        out["frac_of_peak"] = out[f"gflops_model_real_frac_of_{ref}_peak"]
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    out["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
    }
    out["settings"] = {
        "data": os.path.relpath(args.data, ROOT.parent),
        "rows": args.rows,
        "model_path": path,
        "model_arch": type(net).__name__,
        "n_layers": n_layers,
        "d_model": d_model,
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "max_length": args.max_length,
        "length_rule": "drop a pair with a side over max_length (the peer's rule; nothing is truncated)",
        "learning_rate": training_args.learning_rate,
        "optim": str(getattr(training_args.optim, "value", training_args.optim)),
        "optimizer_class": type(opt).__name__,
        "gradient_checkpointing_active": gc_on,
        "bf16_autocast": autocast_bf16,
        "dtype": str(next(net.parameters()).dtype),
        "train_chunk_tokens": chunk_tokens,
        "train_sampling_strategy": training_args.train_sampling_strategy,
        "reward_format": fmt,
        "ours_flags": ours_argv,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "nproc": os.cpu_count(),
    }
    emit(out, args.json_out)


if __name__ == "__main__":
    main()
