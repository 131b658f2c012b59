"""User errors end in one line on stderr and exit status 2, in both scripts; bugs keep their traceback.

Run as a user runs them (`python reward_modeling.py ...` in a subprocess): a missing dataset file, a
missing model folder, a bad flag value and a config file that does not parse."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

import cmdline
import ppo
import reward_modeling


def run_script(script: str, argv: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str) -> None:
    """Exit status 2, no traceback, and the last stderr line (the only one saying `error:`) names
    what is wrong. Lines before it may be library warnings."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [line for line in lines if "error:" in line] == lines[-1:], proc.stderr[-3000:]
    assert lines[-1].startswith("error: ")
    for name in names:
        assert name in lines[-1], lines[-1]


@pytest.fixture
def bad_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 32\n  learning_rate: [1e-5\n")
    return path


def test_reward_modeling_user_errors(tiny_distilbert, pref_dir, bad_yaml, tmp_path):
    out = f"--output_dir={tmp_path / 'rm'}"
    missing = tmp_path / "no-such-file.jsonl"
    proc = run_script(
        "reward_modeling.py",
        [f"--model_name_or_path={tiny_distilbert}", f"--dataset_name={missing}", out],
        tmp_path,
    )
    assert_one_line_error(proc, "no-such-file.jsonl")
    proc = run_script(
        "reward_modeling.py",
        [f"--model_name_or_path={tmp_path / 'no-such-model'}", f"--dataset_name={pref_dir}", out],
        tmp_path,
    )
    assert_one_line_error(proc, "no-such-model")
    # A combination TrainingArguments.__post_init__ refuses (a ValueError inside the parser)
    proc = run_script(
        "reward_modeling.py",
        ["--load_best_model_at_end=True", "--eval_strategy=steps", "--save_strategy=epoch", out],
        tmp_path,
    )
    assert_one_line_error(proc, "--load_best_model_at_end")
    assert_one_line_error(
        run_script("reward_modeling.py", [str(bad_yaml)], tmp_path), str(bad_yaml), "line 2"
    )


def test_ppo_user_errors(word_policy, kind_rm, kind_data, bad_yaml, tmp_path):
    common = [
        f"--reward_model={kind_rm}",
        f"--output_dir={tmp_path / 'ppo'}",
        "--batch_size=4",
        "--mini_batch_size=4",
    ]
    missing = tmp_path / "no-such-prompts.jsonl"
    proc = run_script(
        "ppo.py", [f"--model_name={word_policy}", f"--query_dataset={missing}", *common], tmp_path
    )
    assert_one_line_error(proc, "no-such-prompts.jsonl")
    proc = run_script(
        "ppo.py",
        [f"--model_name={tmp_path / 'no-such-model'}", f"--query_dataset={kind_data}", *common],
        tmp_path,
    )
    assert_one_line_error(proc, "no-such-model")
    proc = run_script("ppo.py", ["--temperature=0", *common], tmp_path)
    assert_one_line_error(proc, "--temperature")
    assert_one_line_error(run_script("ppo.py", [str(bad_yaml)], tmp_path), str(bad_yaml), "line 2")


@pytest.mark.parametrize("script", [ppo, reward_modeling], ids=["ppo", "reward_modeling"])
def test_internal_errors_keep_their_traceback(script, monkeypatch, capsys):
    """run_script turns a UsageError into `error: ...` and exit 2, and lets anything else through."""

    def bug(*args):
        raise KeyError("a bug")

    monkeypatch.setattr(sys, "argv", [script.__file__])
    monkeypatch.setattr(script, "main", bug)
    with pytest.raises(KeyError, match="a bug"):
        cmdline.run_script(script.cli)

    def user_error(*args):
        raise cmdline.MissingInputError("data file not found: x.jsonl")

    monkeypatch.setattr(script, "main", user_error)
    with pytest.raises(SystemExit) as exit_info:
        cmdline.run_script(script.cli)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: data file not found: x.jsonl\n"


@pytest.mark.parametrize("script", ["reward_modeling.py", "router.py"])
def test_scripts_start_without_bitsandbytes_kernel_warning(script, tmp_path):
    # bitsandbytes is installed for QLoRA; its import-time "Failed to load CPU gemm_4bit_forward" warning
    # (an optional hub kernel, lora.py) must not open every run
    proc = run_script(script, ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gemm_4bit" not in proc.stderr and "kernels-community" not in proc.stderr, proc.stderr[-3000:]
