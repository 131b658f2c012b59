"""Both scripts under `accelerate launch` with 2 CPU processes (gloo), bounded in time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--config_file",
    str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
]


def launch(script, argv, tmp_path, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_DIR": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [*LAUNCH, "--main_process_port", str(29500 + os.getpid() % 1000), str(ROOT / script), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-12000:]
    return proc.stdout + proc.stderr


def ppo_argv(policy, rm, data, out, *extra):
    """The tiny PPO run of these tests: 8 episodes per process and update, 8 tokens each."""
    return [
        f"--model_name={policy}",
        f"--reward_model={rm}",
        f"--query_dataset={data}",
        f"--output_dir={out}",
        "--batch_size=8",
        "--mini_batch_size=4",
        "--response_length=8",
        "--temperature=1.0",
        "--learning_rate=3e-3",
        "--init_kl_coef=0.01",
        "--eval_samples=7",
        "--sample_every=0",
        "--num_threads=1",
        *extra,
    ]


def test_ppo_two_processes(word_policy, kind_rm, kind_data, tmp_path):
    out = tmp_path / "ppo"
    log = launch(
        "ppo.py",
        ppo_argv(word_policy, kind_rm, kind_data, out, "--steps=128", "--save_steps=4", "--log_with=wandb"),
        tmp_path,
    )
    assert "8 updates x 16 episodes (2 process(es))" in log
    assert log.count("[ppo] saved policy") == 1  # one writer
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["update"] for m in history] == list(range(1, 9))
    assert history[-1]["episodes"] == 128
    first = sum(m["objective/scores"] for m in history[:2]) / 2
    last = sum(m["objective/scores"] for m in history[-2:]) / 2
    assert last > first + 0.3, (first, last)
    result = json.loads((out / "eval.json").read_text())
    assert result["prompts"] == 7  # 4 + 3 prompts on the two processes, gathered
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    assert len(list((out / "checkpoint-8").glob("rng_state_*.pt"))) == 2
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


def test_ppo_two_processes_seq2seq(word_t5, kind_rm, kind_data, tmp_path):
    """An encoder-decoder policy under DDP: the same update loop, gathered evaluation, one writer."""
    out = tmp_path / "ppo"
    argv = ppo_argv(word_t5, kind_rm, kind_data, out, "--steps=64", "--use_seq2seq=True", "--save_steps=4")
    log = launch("ppo.py", argv, tmp_path)
    assert "4 updates x 16 episodes (2 process(es))" in log
    assert log.count("[ppo] saved policy") == 1
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["update"] for m in history] == [1, 2, 3, 4] and history[0]["objective/kl"] == 0.0
    assert json.loads((out / "eval.json").read_text())["prompts"] == 7
    assert len(list((out / "checkpoint-4").glob("rng_state_*.pt"))) == 2
    assert json.loads((out / "config.json").read_text())["is_encoder_decoder"] is True


# ppo.py with every training rollout's prompt indices written per process (evaluation passes its own
# prompt list, and is not recorded).
RECORD_ROLLOUTS = """
import json, os, sys
sys.path.insert(0, {root!r})
import ppo

rollout = ppo.Trainer.rollout


def recorded(self, index, prompts_src=None, *args, **kwargs):
    if prompts_src is None:
        with open(os.path.join(self.args.output_dir, f"rollouts_{{self.acc.process_index}}.jsonl"), "a") as f:
            f.write(json.dumps(index) + "\\n")
    return rollout(self, index, prompts_src, *args, **kwargs)


ppo.Trainer.rollout = recorded
ppo.cmdline.run_script(ppo.cli)
"""


@pytest.mark.slow  # ~50 s: two processes of six GRPO updates
def test_ppo_two_processes_keep_groups_whole(word_policy, kind_rm, kind_data, tmp_path):
    """GRPO, 4 responses per prompt, 2 processes: each process rolls out whole groups (a prompt's 4
    responses side by side), the two hold different prompts, and the reward rises."""
    script = tmp_path / "ppo_recorded.py"
    script.write_text(RECORD_ROLLOUTS.format(root=str(ROOT)))
    out = tmp_path / "ppo"
    log = launch(
        str(script),
        ppo_argv(
            word_policy,
            kind_rm,
            kind_data,
            out,
            "--steps=96",
            "--advantage_estimator=grpo",
            "--num_generations=4",
        ),
        tmp_path,
    )
    assert "6 updates x 16 episodes (2 process(es))" in log
    ranks = [
        [json.loads(line) for line in (out / f"rollouts_{r}.jsonl").read_text().splitlines()] for r in (0, 1)
    ]
    assert [len(r) for r in ranks] == [6, 6]
    for a, b in zip(*ranks):
        for index in (a, b):
            assert len(index) == 8 and all(index[g] == index[g + i] for g in (0, 4) for i in range(4))
        assert not set(a) & set(b) and len(set(a) | set(b)) == 4  # 4 prompts per update, split 2 + 2
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first = sum(m["objective/scores"] for m in history[:2]) / 2
    last = sum(m["objective/scores"] for m in history[-2:]) / 2
    assert last > first + 0.3, (first, last)
    assert not [k for m in history for k in m if k.startswith("val/")]


def test_reward_modeling_two_processes(tiny_distilbert, pref_dir, tmp_path):
    out = tmp_path / "rm"
    launch(
        "reward_modeling.py",
        [
            f"--model_name_or_path={tiny_distilbert}",
            f"--dataset_name={pref_dir}",
            f"--output_dir={out}",
            "--per_device_train_batch_size=8",
            "--num_train_epochs=4",
            "--learning_rate=3e-3",
            "--max_length=64",
            "--report_to=none",
            "--save_strategy=no",
            "--disable_tqdm=True",
            "--seed=0",
        ],
        tmp_path,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["accuracy"] >= 0.95 and metrics["eval"]["pairs"] == 48
    assert (out / "model.safetensors").exists()


def launch_env(config: Path) -> dict[str, str]:
    """The environment `accelerate launch --config_file config` gives the script, from accelerate's own
    builders (no process is started; DeepSpeed need not be installed)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "ppo.py"])
    args, _, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ""  # launch_command sets it before this call
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_ppo_runs_under_the_ddp_configs_and_refuses_the_others(config: Path):
    """Each shipped config, as accelerate launch reads it: ppo.py accepts the DDP ones (cpu_2proc,
    multi_gpu_ddp) and refuses DeepSpeed and FSDP with one line naming the DDP config."""
    import cmdline
    import ppo

    env = launch_env(config)
    if config.stem.startswith(("deepspeed", "fsdp")):
        with pytest.raises(cmdline.UsageError, match="multi_gpu_ddp.yaml"):
            ppo.refuse_unsupported_launch(env)
    else:
        ppo.refuse_unsupported_launch(env)
