"""No flag is accepted and then ignored: every field of both scripts' parsers is on the "used" or the
"refused" list kept next to the parser, and each refused one stops the run, naming itself and why.

A field that a new transformers or TRL adds to RewardConfig / TrainingArguments / ModelConfig fails
`test_every_flag_is_used_or_refused` until someone decides which list it belongs on."""

import dataclasses

import pytest
from test_cli_errors import assert_one_line_error, run_script
from trl import ModelConfig, RewardConfig

import cmdline
import ppo
import reward_modeling

PARSERS = {
    "reward_modeling.py": (
        (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
        reward_modeling.USED_FLAGS,
        set(reward_modeling.REFUSED_FLAGS),
    ),
    "ppo.py": ((ppo.PPOArguments,), ppo.USED_FLAGS, set(ppo.REFUSED_FLAGS)),
}


def other_value(value):
    """A value unlike `value`, of a kind the field could hold."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, (list, dict)):
        return ["x"] if isinstance(value, list) else {"x": 1}
    return "x" if value is None else str(value) + "x"


@pytest.mark.parametrize("script", PARSERS)
def test_every_flag_is_used_or_refused(script):
    types, used, refused = PARSERS[script]
    names = {f.name for t in types for f in dataclasses.fields(t)}
    assert not names - used - refused, f"{script}: flags on neither list"
    assert not used & refused
    assert not (used | refused) - names, f"{script}: listed flags that no parser has"


def test_reward_modeling_refuses_each_refused_flag_set_to_anything_but_its_default():
    parsed = cmdline.parse_args(
        (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
        [],
        defaults=reward_modeling.default_flags(),
    )
    reward_modeling.refuse_ignored_flags(*parsed)  # the defaults pass
    for name in reward_modeling.REFUSED_FLAGS:
        (obj,) = [o for o in parsed if hasattr(o, name)]
        default = getattr(obj, name)
        setattr(obj, name, other_value(default))
        with pytest.raises(cmdline.UsageError, match=f"^--{name}="):
            reward_modeling.refuse_ignored_flags(*parsed)
        setattr(obj, name, default)


def test_ppo_refuses_each_refused_flag_set_to_anything_but_its_default(tmp_path):
    ppo.validate(ppo.PPOArguments(reward_model=str(tmp_path)))
    for name in ppo.REFUSED_FLAGS:
        args = ppo.PPOArguments(reward_model=str(tmp_path))
        setattr(args, name, other_value(getattr(args, name)))
        with pytest.raises(cmdline.UsageError, match=f"--{name}"):
            ppo.validate(args)


def test_refused_flags_end_in_one_line_before_anything_loads(tmp_path):
    # The 2024 command's --remove_unused_columns=False and --evaluation_strategy=steps (do_eval) still pass:
    # tests/test_reward_modeling.py::test_seed_command_line_runs_with_wandb_offline.
    for flag, why in [("--push_to_hub=True", "hf upload"), ("--lora_task_type=CAUSAL_LM", "SEQ_CLS")]:
        proc = run_script(
            "reward_modeling.py",
            [flag, f"--dataset_name={tmp_path / 'none.jsonl'}", f"--output_dir={tmp_path}"],
            tmp_path,
        )
        assert_one_line_error(proc, flag.split("=")[0], why)
