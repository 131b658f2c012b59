"""The run's environment and files: wandb offline mode, CPU processes, the bf16 default, complete
checkpoints, free disk space, and JSON written atomically."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any


def wandb_offline_if_unreachable(timeout: float = 3.0) -> str | None:
    """Make wandb log offline when it cannot reach its server or has no API key.

    Returns the mode chosen. Without this, `wandb.init` asks for a key on a terminal or waits
    for a network that is not there; offline runs can be synced later with `wandb sync`."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return os.environ["WANDB_MODE"]
    reason = None
    netrc = Path.home() / ".netrc"
    if not os.environ.get("WANDB_API_KEY") and not (netrc.exists() and "api.wandb.ai" in netrc.read_text()):
        reason = "no WANDB_API_KEY"
    else:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        try:
            socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
        except OSError:
            reason = f"{host} unreachable"
    if reason:
        os.environ["WANDB_MODE"] = "offline"
        print(f"[wandb] {reason}: logging offline (sync later with `wandb sync`)", file=sys.stderr)
        return "offline"
    return os.environ.get("WANDB_MODE", "online")


def cpu_processes_without_gpu() -> bool:
    """Several processes (torchrun / `accelerate launch --multi_gpu`) on a machine with no GPU.

    accelerate then needs to be told to use the CPU (gloo), else each process runs alone."""
    import torch

    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if multi and not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"
        return True
    return False


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` ("cpu", "cuda", ...) multiplies bfloat16 matrices in hardware: a CUDA GPU
    with bf16 (Ampere or newer), or a CPU with AVX512-BF16 or AMX. There bf16 autocast is the default
    of both scripts (bench/bf16_check.py measured its effect on PPO's numbers); elsewhere it would be
    emulated, slower than float32, so the default is float32."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        cpu = torch.cpu
        return any(
            getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def default_bf16(device_type: str, launcher: str = "no") -> bool:
    """Both scripts' bf16 default when no flag is given: what `accelerate launch --mixed_precision`
    asked for (`launcher`, the ACCELERATE_MIXED_PRECISION it sets: "bf16" or "fp16"), else
    `native_bf16(device_type)`."""
    if launcher in ("bf16", "fp16"):
        return launcher == "bf16"
    return native_bf16(device_type)


def complete_checkpoints(folder: str | Path, required: tuple[str, ...]) -> list[Path]:
    """`checkpoint-<step>` folders in `folder` holding every file in `required`, oldest first.

    A folder missing one was cut short by a kill during its save: it is skipped with a warning.
    (transformers' own `get_last_checkpoint` returns the newest folder whatever it holds.)"""
    found = []
    for path in Path(folder).glob("checkpoint-*"):
        if not path.is_dir() or not path.name.split("-")[1].isdigit():
            continue
        if all((path / f).is_file() for f in required):
            found.append(path)
        else:
            print(f"warning: skipping {path}: incomplete checkpoint (killed during a save?)", file=sys.stderr)
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def require_free_space(folder: str | Path, need_bytes: int, what: str) -> None:
    """Fail before training when `folder`'s disk cannot hold `need_bytes` (what the run will write,
    estimated from parameter counts) with a 10% margin; `what` says how the estimate was made."""
    free = shutil.disk_usage(folder).free
    if free < 1.1 * need_bytes:
        raise OSError(
            f"{folder}: {free / 2**20:,.0f} MiB free on its disk, but this run will write about "
            f"{need_bytes / 2**20:,.0f} MiB ({what}). Free some space, choose another --output_dir, "
            "or write fewer checkpoints (--save_total_limit, --save_steps)"
        )


def tensor_bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses and enums as plain JSON values (for saving the arguments of a run)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return to_jsonable(obj.to_dict())
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):  # by value, also where the enum mixes in str (transformers' options)
        return to_jsonable(obj.value)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename), so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)
