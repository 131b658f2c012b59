"""Preference and prompt rows: hh-rlhf conversations parsed and rendered, rows loaded and sliced with
their origins (so that training and evaluation rows can be checked for overlap), preference pairs
cleaned into {"prompt", "chosen", "rejected"}. Heavy imports (datasets, pyarrow) happen inside the
functions that need them so that `--help` stays instant."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from cmdline import MissingInputError, UsageError

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLE_OF_MARKER = {HUMAN: "user", ASSISTANT: "assistant"}
MARKER_OF_ROLE = {"user": HUMAN, "assistant": ASSISTANT}

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


def apply_slice(n: int, sl: slice) -> range:
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
        taken = apply_slice(len(records), s)
        rows += [records[i] for i in taken]
        origins += [(source, i) for i in taken]
    keep = apply_slice(len(rows), sl)
    where = ", ".join(f"{shown}{_slice_text(s)}" for shown, _, _, s in parts)
    where += f" [{split}]" if sl != slice(None) else ""
    return [rows[i] for i in keep], where, [origins[i] for i in keep]


def origin_subsets(origins: list[Origin]) -> list[str]:
    """The subset folder of each row's origin (`load_rows`): a local file's folder, or a hub subset."""
    return [Path(source).parent.name for source, _ in origins]


def indices_by_label(labels: list[str]) -> dict[str, list[int]]:
    """The indices of each label (e.g. each row's subset), labels in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        out.setdefault(label, []).append(i)
    return out


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
