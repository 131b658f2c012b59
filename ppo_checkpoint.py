"""Checkpoints for ppo.py: everything a run needs to continue bit-identically, written atomically
(a temporary folder, then a rename), found again by `--resume_from_checkpoint=auto`; the final save;
and the checks that fail before training rather than after an hour. Tested in tests/test_resume.py.

This module writes and reads files; what a run's state is, is the Trainer's (`state_dict()` /
`load_state_dict()`). Only the process-wide random generators are saved here, one file per process.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

import cmdline
import runtime

CHECKPOINT_FILES = ("trainer_state.pt", "trainer_state.json")

# Flags a resumed run may change: where, how often and with which judges it logs, saves and evaluates
# (evaluation draws from its own generators), and the thread count (a run may resume on another machine;
# threads can change the rounding of float sums). Every other flag shapes the updates, so a checkpoint
# resumes only with the values it was written with; --steps may grow or shrink without --lr_decay.
RESUME_FREE_FLAGS = frozenset(
    "output_dir exp_name resume_from_checkpoint log_with logging_steps sample_every num_samples save_steps "
    "save_total_limit max_bad_updates num_threads eval_every eval_seeds eval_temperature gold_reward_model "
    "merge_lora_on_save".split()
)


def save_checkpoint(acc, out: Path, state: dict, args, save_total_limit: int | None = None) -> Path:
    """`state` (a Trainer's state_dict, with "update" and "episodes") and every process's RNG, written
    to a temporary folder and renamed, so a kill during the save never leaves a checkpoint that loads
    half-written; `args` go to trainer_state.json beside the process count. Every process calls it
    (`acc`: the Accelerator). Keeps the newest `save_total_limit` checkpoints (None or 0: all)."""
    import os
    import shutil

    update = state["update"]
    final = out / f"checkpoint-{update}"
    tmp = out / f".checkpoint-{update}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / f"rng_state_{acc.process_index}.pt")
    if acc.is_main_process:
        torch.save(state, tmp / "trainer_state.pt")
        runtime.write_json(
            tmp / "trainer_state.json",
            {"update": update, "episodes": state["episodes"], "world": acc.num_processes, "args": args},
        )
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if save_total_limit:
            for old in complete_checkpoints(out)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def complete_checkpoints(out: Path) -> list[Path]:
    return runtime.complete_checkpoints(out, CHECKPOINT_FILES)


def find_checkpoint(spec: str, out: Path) -> Path | None:
    if spec != "auto":
        path = Path(spec)
        if not all((path / f).is_file() for f in CHECKPOINT_FILES):
            raise cmdline.MissingInputError(
                f"--resume_from_checkpoint={spec}: not a complete checkpoint folder"
            )
        return path
    found = complete_checkpoints(out) if out.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: Path, world: int, rank: int, args) -> dict:
    """The state a checkpoint holds (for the Trainer's `load_state_dict`), once its process count is
    `world` and `args` (the run's flags) agree with those it was saved with; restores process `rank`'s
    random generators as they were at the save."""
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    # Before the optimizer had a parameter group per model (policy, value function), each with the
    # "initial_lr" the decay scales, checkpoints held one group for both: torch refuses to load that
    # into two groups, with a traceback that does not say what to do.
    if any("initial_lr" not in group for group in state.get("optimizer", {}).get("param_groups", [])):
        raise cmdline.UsageError(
            f"{path} was written by an older ppo.py (one optimizer parameter group for policy and value "
            "function) and cannot be resumed; start a new --output_dir, or drop --resume_from_checkpoint "
            "to start over in this one"
        )
    saved = runtime.read_json(path / "trainer_state.json")
    if saved["world"] != world:
        raise cmdline.UsageError(
            f"{path} was written by {saved['world']} process(es); resume with the same number "
            f"(now {world}) to continue identically"
        )
    check_resume_flags(path, saved["args"], args)
    rng = torch.load(path / f"rng_state_{rank}.pt", weights_only=False)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def check_resume_flags(path: Path, saved: dict, args) -> None:
    """Refuse, naming each one, the flags that differ from the checkpoint's and would change the updates
    (all but RESUME_FREE_FLAGS). A flag the checkpoint does not record (added to ppo.py since) passes."""
    now = runtime.to_jsonable(args)
    free = RESUME_FREE_FLAGS | ({"steps"} if not now.get("lr_decay", True) else set())
    cmdline.refuse_changed_flags(path, saved, now, set(now) - free)


def save_final(
    out: Path, policy, value: nn.Module | None, value_kind: str, tokenizer, merge_lora: bool
) -> None:
    """Policy (LoRA merged when `merge_lora`, else the adapter alone) + tokenizer in HF format, and the
    value function in value_model.safetensors (its kind, "head" or "critic", in the metadata; a tensor
    shared by several names, as a T5 critic's embeddings, once: safetensors' `load_model` ties them
    again); a critic-free run (`value` None) has none to save."""
    from safetensors.torch import save_model

    if merge_lora:
        policy = policy.merge_and_unload()
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    policy.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if value is None:  # a critic-free estimator: there is no value model to save
        return
    save_model(value, str(out / "value_model.safetensors"), metadata={"kind": value_kind})


def check_output_dir(out: Path) -> None:
    """Fail before training, not after an hour, when the output folder cannot be written."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as e:
        raise PermissionError(f"--output_dir={out} is not writable: {e}") from None


def check_disk_space(
    out: Path, model: nn.Module, save_steps: int, save_total_limit: int | None, updates: int
) -> None:
    """Estimate what the run will write and refuse to start when the disk cannot hold it: each
    checkpoint holds the trainable weights and AdamW's two moments (3x the trainable bytes), up to
    save_total_limit + 1 exist at once (the newest is written before the oldest goes), and the final
    save holds the whole policy (LoRA merged) and value function."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    checkpoint = 3 * runtime.tensor_bytes(trainable)
    kept = (save_total_limit or updates // max(save_steps, 1)) + 1
    checkpoints = kept * checkpoint if save_steps else 0
    final = runtime.tensor_bytes(model.parameters())
    runtime.require_free_space(
        out,
        checkpoints + final,
        f"{kept if save_steps else 0} checkpoints of {checkpoint / 2**20:,.0f} MiB "
        f"and a final model of {final / 2**20:,.0f} MiB",
    )
