"""Checkpoints for ppo.py: everything a run needs to continue bit-identically, written atomically
(a temporary folder, then a rename), found again by `--resume_from_checkpoint=auto`; the final save;
and the checks that fail before training rather than after an hour. Tested in tests/test_resume.py.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

import utils

if TYPE_CHECKING:
    from ppo import Trainer


CHECKPOINT_FILES = ("trainer_state.pt", "trainer_state.json")


def save_checkpoint(tr: Trainer, out: Path) -> Path:
    """Everything needed to continue bit-identically, written to a temporary folder and renamed,
    so a kill during the save never leaves a checkpoint that loads half-written."""
    import os
    import shutil

    final = out / f"checkpoint-{tr.update}"
    tmp = out / f".checkpoint-{tr.update}.tmp"
    if tr.acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    tr.acc.wait_for_everyone()
    model = tr.acc.unwrap_model(tr.model)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    state = {
        "model": {k: v for k, v in model.state_dict().items() if k in trainable},
        "optimizer": tr.optimizer.state_dict(),
        "kl_ctl": tr.kl_ctl.state_dict(),
        "scaler": tr.scaler.state_dict() if tr.scaler is not None else None,
        "stream": tr.stream.state_dict(),
        "update": tr.update,
        "episodes": tr.episodes,
        "bad_updates": tr.bad_updates,
    }
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / f"rng_state_{tr.acc.process_index}.pt")
    if tr.acc.is_main_process:
        torch.save(state, tmp / "trainer_state.pt")
        utils.write_json(
            tmp / "trainer_state.json",
            {"update": tr.update, "episodes": tr.episodes, "world": tr.sizes.world, "args": tr.args},
        )
    tr.acc.wait_for_everyone()
    if tr.acc.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        limit = tr.args.save_total_limit
        if limit:
            for old in complete_checkpoints(out)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    tr.acc.wait_for_everyone()
    return final


def complete_checkpoints(out: Path) -> list[Path]:
    return utils.complete_checkpoints(out, CHECKPOINT_FILES)


def find_checkpoint(spec: str, out: Path) -> Path | None:
    if spec != "auto":
        path = Path(spec)
        if not all((path / f).is_file() for f in CHECKPOINT_FILES):
            raise utils.MissingInputError(
                f"--resume_from_checkpoint={spec}: not a complete checkpoint folder"
            )
        return path
    found = complete_checkpoints(out) if out.is_dir() else []
    return found[-1] if found else None


def load_checkpoint(tr: Trainer, path: Path) -> None:
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    saved_world = utils.read_json(path / "trainer_state.json")["world"]
    if saved_world != tr.sizes.world:
        raise utils.UsageError(
            f"{path} was written by {saved_world} process(es); resume with the same number "
            f"(now {tr.sizes.world}) to continue identically"
        )
    model = tr.acc.unwrap_model(tr.model)
    missing = set(state["model"]) - set(model.state_dict())
    if missing:
        raise utils.UsageError(
            f"{path}: checkpoint does not match this model ({len(missing)} unknown tensors)"
        )
    model.load_state_dict(state["model"], strict=False)
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.kl_ctl.load_state_dict(state["kl_ctl"])
    if tr.scaler is not None and state.get("scaler"):
        tr.scaler.load_state_dict(state["scaler"])
    tr.stream.load_state_dict(state["stream"])
    tr.update, tr.episodes, tr.bad_updates = state["update"], state["episodes"], state["bad_updates"]
    rng = torch.load(path / f"rng_state_{tr.acc.process_index}.pt", weights_only=False)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_final(tr: Trainer, out: Path) -> None:
    """Policy (merged or adapter) + tokenizer in HF format, and the value function (if any)."""
    from safetensors.torch import save_file

    model = tr.acc.unwrap_model(tr.model)
    if not tr.acc.is_main_process:
        return
    policy = model.policy
    if tr.args.use_peft and tr.args.merge_lora_on_save:
        policy = policy.merge_and_unload()
    policy.generation_config.pad_token_id = tr.tok.pad_token_id
    policy.save_pretrained(out)
    tr.tok.save_pretrained(out)
    if model.value is None:  # a critic-free estimator: there is no value model to save
        return
    value_state = {k: v.detach().contiguous() for k, v in model.value.state_dict().items()}
    save_file(value_state, str(out / "value_model.safetensors"), metadata={"kind": tr.value_kind})


def check_output_dir(out: Path) -> None:
    """Fail before training, not after an hour, when the output folder cannot be written."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as e:
        raise PermissionError(f"--output_dir={out} is not writable: {e}") from None


def check_disk_space(tr: Trainer, out: Path) -> None:
    """Estimate what the run will write and refuse to start when the disk cannot hold it: each
    checkpoint holds the trainable weights and AdamW's two moments (3x the trainable bytes), up to
    save_total_limit + 1 exist at once (the newest is written before the oldest goes), and the final
    save holds the whole policy (LoRA merged) and value function."""
    model = tr.acc.unwrap_model(tr.model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    checkpoint = 3 * utils.tensor_bytes(trainable)
    kept = (tr.args.save_total_limit or tr.sizes.updates // max(tr.args.save_steps, 1)) + 1
    checkpoints = kept * checkpoint if tr.args.save_steps else 0
    final = utils.tensor_bytes(model.parameters())
    utils.require_free_space(
        out,
        checkpoints + final,
        f"{kept if tr.args.save_steps else 0} checkpoints of {checkpoint / 2**20:,.0f} MiB "
        f"and a final model of {final / 2**20:,.0f} MiB",
    )
