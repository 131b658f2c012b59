"""Crash safety: a run killed after a checkpoint and resumed ends bit-identical to a straight run."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT

import ppo
import ppo_checkpoint


def ppo_argv(policy, rm, data, out, *extra):
    return [
        f"--model_name={policy}",
        f"--reward_model={rm}",
        f"--query_dataset={data}",
        f"--output_dir={out}",
        "--batch_size=8",
        "--mini_batch_size=4",
        "--ppo_epochs=2",
        "--steps=48",
        "--response_length=6",
        "--temperature=1.0",
        "--learning_rate=3e-3",
        "--critic_learning_rate=1e-3",  # two optimizer groups, two learning rates, one resume
        "--eval_samples=8",
        "--sample_every=0",
        "--seed=3",
        "--save_steps=2",
        "--num_threads=1",
        *extra,
    ]


def comparable(out):
    """Logged metrics without wall-clock fields."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in rows]


def weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def wait_for(path, proc, timeout=120):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path.name} appeared"
        assert time.time() - start < timeout, f"no {path} after {timeout} s"
        time.sleep(0.05)


def start(argv):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "ppo.py"), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(
    "precision", [[], ["--bf16=False"], ["--fp16=True"]], ids=["default", "float32", "float16"]
)
def test_sigkill_then_resume_is_bit_identical(word_policy, kind_rm, kind_data, tmp_path, precision):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    ppo.cli(ppo_argv(word_policy, kind_rm, kind_data, straight, *precision))
    proc = start(ppo_argv(word_policy, kind_rm, kind_data, crashed, *precision))
    wait_for(crashed / "checkpoint-2" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "eval.json").exists()
    ppo.cli(ppo_argv(word_policy, kind_rm, kind_data, crashed, "--resume_from_checkpoint=auto", *precision))
    assert comparable(crashed) == comparable(straight)
    a, b = weights(straight), weights(crashed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((crashed / "eval.json").read_text()) == json.loads((straight / "eval.json").read_text())
    # save_total_limit=2 keeps the newest two
    assert sorted(p.name for p in crashed.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]


def test_fp16_resume_restores_the_loss_scale(word_policy, kind_rm, kind_data, tmp_path, monkeypatch):
    """The loss scale is part of the state: started at 2^24, the first updates overflow and halve it;
    resumed from checkpoint-2 with the scale as saved, the run ends as the straight one does."""
    import shutil

    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device: real(device, init_scale=2.0**24))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    ppo.cli(ppo_argv(word_policy, kind_rm, kind_data, straight, "--fp16=True", "--save_total_limit=3"))
    history = comparable(straight)
    assert history[0]["fp16/overflow_steps"] > 0 and history[1]["fp16/loss_scale"] < 2.0**24
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    ppo.cli(
        ppo_argv(word_policy, kind_rm, kind_data, resumed, "--fp16=True", "--resume_from_checkpoint=auto")
    )
    assert comparable(resumed) == history[2:]  # updates 3-6
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(word_policy, kind_rm, kind_data, tmp_path):
    out = tmp_path / "run"
    proc = start(ppo_argv(word_policy, kind_rm, kind_data, out, "--save_steps=0", "--steps=400"))
    wait_for(out / "metrics.jsonl", proc)
    while not (out / "metrics.jsonl").read_text().strip():  # at least one update done
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "--resume_from_checkpoint=auto" in output
    done = len(comparable(out))
    assert (out / f"checkpoint-{done}" / "trainer_state.pt").exists()


def test_auto_skips_a_checkpoint_cut_short(tmp_path, capsys):
    good, cut = tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"
    for path in (good, cut):
        path.mkdir()
    for name in ppo_checkpoint.CHECKPOINT_FILES:
        (good / name).write_text("{}")
    (cut / "trainer_state.json").write_text("{}")  # killed before trainer_state.pt was written
    (tmp_path / ".checkpoint-6.tmp").mkdir()  # killed before the rename
    assert ppo_checkpoint.find_checkpoint("auto", tmp_path) == good
    assert "skipping" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ppo_checkpoint.find_checkpoint(str(cut), tmp_path)


def test_same_seed_same_metrics_other_seed_differs(word_policy, kind_rm, kind_data, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / name
        ppo.cli(
            ppo_argv(word_policy, kind_rm, kind_data, out, "--steps=16", "--save_steps=0", f"--seed={seed}")
        )
        runs[name] = (comparable(out), weights(out))
    assert runs["a"][0] == runs["b"][0]
    assert all(torch.equal(runs["a"][1][k], runs["b"][1][k]) for k in runs["a"][1])
    assert runs["a"][0] != runs["c"][0]


def test_too_little_disk_fails_before_training(word_policy, kind_rm, kind_data, tmp_path, monkeypatch):
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(2**30, 2**30 - 2**16, 2**16))
    out = tmp_path / "run"
    with pytest.raises(OSError, match=r"MiB free on its disk.*3 checkpoints of") as err:
        ppo.cli(ppo_argv(word_policy, kind_rm, kind_data, out))
    assert "--save_total_limit" in str(err.value)
    assert not (out / "metrics.jsonl").exists()  # refused before anything was trained or logged


def test_reward_model_resumes_to_the_same_weights(tiny_distilbert, pref_dir, tmp_path, capsys):
    """The Trainer's own resume: a run continued from its step-4 checkpoint (what a kill after that
    save leaves on disk) ends with the weights of the run that was never interrupted; `auto` passes
    over a newer checkpoint cut short; a flag that shapes training, changed, is refused."""
    import shutil

    from safetensors.torch import load_file

    import reward_modeling

    def train(out, *extra):
        return reward_modeling.cli(
            [
                f"--model_name_or_path={tiny_distilbert}",
                f"--dataset_name={pref_dir}",
                f"--output_dir={out}",
                "--per_device_train_batch_size=16",
                "--max_steps=8",
                "--learning_rate=3e-3",
                "--max_length=64",
                "--report_to=none",
                "--seed=0",
                "--save_strategy=steps",
                "--save_steps=4",
                "--disable_tqdm=True",
                *extra,
            ]
        )

    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    train(straight)
    train(crashed)
    for path in crashed.iterdir():  # back to the state a kill right after the step-4 save leaves
        if path.name not in ("checkpoint-4", reward_modeling.RUN_FLAGS_FILE):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    cut = crashed / "checkpoint-6"  # and a later save killed before its trainer_state.json
    shutil.copytree(crashed / "checkpoint-4", cut)
    (cut / "trainer_state.json").unlink()
    # another learning rate would continue another run: refused before anything loads, naming it
    with pytest.raises(
        ValueError, match=r"--learning_rate=0.003 \(now 0.001\); resume with the checkpoint's"
    ):
        train(crashed, "--resume_from_checkpoint=auto", "--learning_rate=1e-3")
    assert (crashed / "checkpoint-4" / "trainer_state.json").exists()
    # killed between the Trainer's save and the checkpoint's flags: the run folder's copy still holds
    (crashed / "checkpoint-4" / reward_modeling.RUN_FLAGS_FILE).unlink()
    with pytest.raises(ValueError, match=r"--seed=0 \(now 1\)"):
        train(crashed, "--resume_from_checkpoint=auto", "--seed=1")
    resumed = train(crashed, "--resume_from_checkpoint=auto", "--logging_steps=3")  # logging may change
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(crashed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "skipping" in capsys.readouterr().err
    assert resumed["accuracy"] == json.loads((straight / "metrics.json").read_text())["eval"]["accuracy"]


def test_reward_model_refuses_a_too_small_disk_before_training(
    tiny_distilbert, pref_dir, tmp_path, monkeypatch
):
    import collections
    import shutil

    import reward_modeling

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(2**30, 2**30 - 2**16, 2**16))
    out = tmp_path / "rm"
    argv = [
        f"--model_name_or_path={tiny_distilbert}",
        f"--dataset_name={pref_dir}",
        f"--output_dir={out}",
        "--per_device_train_batch_size=16",
        "--num_train_epochs=2",
        "--save_steps=5",
        "--save_total_limit=3",
        "--report_to=none",
        "--disable_tqdm=True",
    ]
    with pytest.raises(OSError, match=r"MiB free on its disk.*3 checkpoints of"):
        reward_modeling.cli(argv)
    assert not list(out.glob("checkpoint-*")) and not (out / "metrics.json").exists()


class OneProcess:
    """What save_checkpoint asks of an Accelerator, for one process."""

    is_main_process, process_index, num_processes = True, 0, 1

    def wait_for_everyone(self):
        pass


def test_checkpoint_files_round_trip_state_and_rng_and_refuse_another_world(tmp_path):
    """The checkpoint module alone, on plain values: the state comes back as saved, the process's
    random generators continue where they were at the save, older checkpoints beyond the limit go,
    and a checkpoint of another process count is refused (its per-rank streams would not match)."""
    state = {"update": 0, "episodes": 0, "weights": torch.arange(4.0)}
    for update in (2, 4, 6):
        state = {**state, "update": update, "episodes": 8 * update}
        path = ppo_checkpoint.save_checkpoint(OneProcess(), tmp_path, state, {"lr": 1.0}, save_total_limit=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]
    after_save = torch.rand(3)
    loaded = ppo_checkpoint.load_checkpoint(path, world=1, rank=0, args={"lr": 1.0})
    assert (
        loaded["update"] == 6
        and loaded["episodes"] == 48
        and torch.equal(loaded["weights"], state["weights"])
    )
    assert torch.equal(torch.rand(3), after_save)
    assert json.loads((path / "trainer_state.json").read_text())["world"] == 1
    with pytest.raises(
        ValueError, match=r"written by 1 process\(es\); resume with the same number \(now 2\)"
    ):
        ppo_checkpoint.load_checkpoint(path, world=2, rank=0, args={"lr": 1.0})


def test_a_checkpoint_with_one_optimizer_group_is_refused_in_one_line(tmp_path):
    """A checkpoint from before the optimizer's group per model (no "initial_lr") fails with what to
    do, not with torch's group-count error; one written since loads."""
    weights = torch.nn.Parameter(torch.zeros(2))
    old = torch.optim.AdamW([weights], lr=1e-3).state_dict()
    new = torch.optim.AdamW([{"params": [weights], "initial_lr": 1e-3}], lr=1e-3).state_dict()
    for name, optimizer in (("old", old), ("new", new)):
        state = {"update": 2, "episodes": 16, "optimizer": optimizer}
        ppo_checkpoint.save_checkpoint(OneProcess(), tmp_path / name, state, {})
    with pytest.raises(ValueError, match=r"older ppo\.py .* start a new --output_dir"):
        ppo_checkpoint.load_checkpoint(tmp_path / "old" / "checkpoint-2", world=1, rank=0, args={})
    assert (
        ppo_checkpoint.load_checkpoint(tmp_path / "new" / "checkpoint-2", world=1, rank=0, args={})["update"]
        == 2
    )


def test_a_checkpoint_resumes_only_with_the_flags_that_shape_its_updates(tmp_path):
    """Flags that change the updates must match the checkpoint's, each one that differs named with both
    values; logging, saving, evaluation and thread flags may change; a flag the checkpoint predates
    passes; --steps may change only where the learning rate does not decay over it."""
    saved = {"learning_rate": 1e-3, "seed": 0, "steps": 48, "lr_decay": True, "eval_every": 5}
    path = ppo_checkpoint.save_checkpoint(OneProcess(), tmp_path, {"update": 2, "episodes": 16}, saved)

    def load(**changes):
        return ppo_checkpoint.load_checkpoint(path, world=1, rank=0, args={**saved, **changes})

    with pytest.raises(
        ValueError, match=r"other settings: --learning_rate=0.001 \(now 0.002\), --seed=0 \(now 1\);"
    ):
        load(learning_rate=2e-3, seed=1, eval_every=10)
    with pytest.raises(ValueError, match=r"--steps=48 \(now 96\)"):
        load(steps=96)
    assert load(eval_every=10, num_threads=4, output_dir="elsewhere", share_prompts=True)["update"] == 2
    saved["lr_decay"] = False
    path = ppo_checkpoint.save_checkpoint(
        OneProcess(), tmp_path / "flat", {"update": 2, "episodes": 16}, saved
    )
    assert load(steps=96)["update"] == 2


def test_critic_free_resume_with_groups_is_bit_identical(word_policy, kind_rm, kind_data, tmp_path):
    """GRPO with 4 responses per prompt: resumed from checkpoint-2, the run ends as the straight one
    (the prompt stream counts prompts, not episodes), and no checkpoint holds a value model."""
    flags = ["--advantage_estimator=grpo", "--num_generations=4", "--save_total_limit=3", "--bf16=False"]

    def argv(out, *extra):  # the two-group optimizer of ppo_argv has no place here: no value model
        base = ppo_argv(word_policy, kind_rm, kind_data, out, *flags, *extra)
        return [a for a in base if not a.startswith("--critic_learning_rate")]

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    ppo.cli(argv(straight))
    history = comparable(straight)
    assert len(history) == 6 and "loss/kl" in history[0]
    state = torch.load(straight / "checkpoint-2" / "trainer_state.pt", weights_only=False)
    assert not [k for k in state["model"] if k.startswith("value.")]
    assert len(state["optimizer"]["param_groups"]) == 1
    assert_resumed_from_checkpoint_2_ends_as(straight, resumed, argv)


def assert_resumed_from_checkpoint_2_ends_as(straight, resumed, argv) -> None:
    """A run started in `resumed` from a copy of `straight`'s checkpoint-2 (`argv(out, *extra)`: the
    command line) logs updates 3-6 as `straight` did and ends with its weights and evaluation."""
    import shutil

    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    # another seed would continue another run: refused before a step, and the checkpoint stays
    with pytest.raises(ValueError, match=r"--seed=3 \(now 4\); resume with the checkpoint's values"):
        ppo.cli(argv(resumed, "--resume_from_checkpoint=auto", "--seed=4"))
    assert (
        not (resumed / "metrics.jsonl").exists() and (resumed / "checkpoint-2" / "trainer_state.pt").exists()
    )
    ppo.cli(argv(resumed, "--resume_from_checkpoint=auto"))
    assert comparable(resumed) == comparable(straight)[2:]  # updates 3-6
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (
        json.loads((resumed / "eval.json").read_text())["policy_score_mean"]
        == (json.loads((straight / "eval.json").read_text())["policy_score_mean"])
    )
