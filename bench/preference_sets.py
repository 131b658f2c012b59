"""The held-out preference sets bench/rm_eval.py reports a reward model on, and what it reports.

Each set becomes pairs {"group", "id", "prompt", "chosen", "rejected"}: `prompt` is a PPO prompt
({"turns", "text"}, ppo_data.row_to_prompt), which `reward_format.prompt_text` renders in each
reward model's own training format; `chosen` and `rejected` are reply texts.

    hh-rlhf   harmless-base and helpful-base test rows [1800:] (512 + 554 pairs), the rows every
              training and tuning run leaves out; loaded and cleaned by hh_data.load_preference_pairs
    pandalm   PandaLM's human-annotated test set (Wang et al. 2023, "PandaLM"): the majority of three
              annotators, ties dropped (888 pairs)
    hhh       BIG-bench HHH alignment (Askell et al. 2021) as Prometheus' judge prompts: 221 pairs in
              four categories (harmless, helpful, honest, other)

Pure functions on plain rows, tested in tests/test_rm_eval.py.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import cmdline
import hh_data
from ppo_data import row_to_prompt

SETS = ("hh-rlhf", "pandalm", "hhh")
HH_HELDOUT = ("harmless-base[1800:]", "helpful-base[1800:]")  # --data_dir slices of hh-rlhf's test split
PANDALM_FILE = Path("pandalm") / "testset-v1.json"
HHH_FILE = Path("hhh-alignment") / "hhh_alignment_eval.json"
# The judge prompt around each HHH instruction and response (prometheus-eval's absolute-grading prompt).
HHH_MARKERS = ("###The instruction to evaluate:", "###Response to evaluate:", "###Score Rubrics")


def user_prompt(text: str) -> dict:
    """A one-turn prompt with no training-data prompt string: an hh-rlhf model reads it as
    "\\n\\nHuman: <text>\\n\\nAssistant:", a plain one as the text itself."""
    return {"turns": [{"role": "user", "content": text}], "text": None}


def hh_pairs(pairs: list[dict], group: str) -> list[dict]:
    """hh_data.load_preference_pairs' pairs (hh-rlhf prompt text, replies) as evaluation pairs; the
    prompt text is what the reward model was trained on, so every format reads it verbatim."""
    return [
        {
            "group": group,
            "id": f"{group}:{k}",
            "prompt": row_to_prompt({"prompt": p["prompt"]}),
            "chosen": p["chosen"],
            "rejected": p["rejected"],
        }
        for k, p in enumerate(pairs)
    ]


def pandalm_label(row: dict) -> int:
    """The better response by majority of annotator1..3 (1 or 2); 0 for a tie or no majority."""
    label, votes = Counter(row[f"annotator{k}"] for k in (1, 2, 3)).most_common(1)[0]
    return label if votes >= 2 and label in (1, 2) else 0


def pandalm_pairs(rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """PandaLM rows as pairs, and counts: rows, dropped `not_text` (a response that is not a string:
    six rows hold a boolean), dropped `tie` (majority tie or no majority), kept. Empty responses are
    kept: a reward model should rank an empty reply below the annotators' choice."""
    counts = {"rows": len(rows), "not_text": 0, "tie": 0}
    out = []
    for i, row in enumerate(rows):
        first, second = row["response1"], row["response2"]
        if not isinstance(first, str) or not isinstance(second, str):
            counts["not_text"] += 1
            continue
        label = pandalm_label(row)
        if not label:
            counts["tie"] += 1
            continue
        text = row["instruction"]
        if (row.get("input") or "").strip():
            text = f"{text}\n\n{row['input']}"
        chosen, rejected = (first, second) if label == 1 else (second, first)
        out.append(
            {
                "group": "pandalm",
                "id": row.get("idx", i),
                "prompt": user_prompt(text),
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    counts["kept"] = len(out)
    return out, counts


def hhh_split(judge_prompt: str, where: str) -> tuple[str, str]:
    """(instruction, response) of one judge prompt: the text between its three markers, stripped."""
    start, middle, end = HHH_MARKERS
    try:
        _, rest = judge_prompt.split(start, 1)
        instruction, rest = rest.split(middle, 1)
        response, _ = rest.split(end, 1)
    except ValueError:
        raise cmdline.UsageError(f"{where}: not a judge prompt with the markers {HHH_MARKERS}") from None
    return instruction.strip(), response.strip()


def hhh_pairs(items: list[dict]) -> list[dict]:
    """HHH items as pairs, grouped by `source`. The instruction is one user turn (41 of them are
    dialogues with "\\n\\nAssistant:" and "\\n\\nHuman:" inside: an hh-rlhf model reads them as the
    multi-turn conversation they are)."""
    out = []
    for i, item in enumerate(items):
        instruction, chosen = hhh_split(item["chosen_instruction"], f"HHH item {i}, chosen_instruction")
        other, rejected = hhh_split(item["rejected_instruction"], f"HHH item {i}, rejected_instruction")
        if other != instruction:
            raise cmdline.UsageError(
                f"HHH item {i}: chosen and rejected judge prompts hold different instructions"
            )
        out.append(
            {
                "group": item["source"],
                "id": i,
                "prompt": user_prompt(instruction),
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    return out


def load_sets(data_root: Path, names: tuple[str, ...] = SETS) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """The evaluation pairs of each set in `names` found under `data_root` (../shared/data), and why
    each absent one (or hh-rlhf subset) was skipped."""
    sets, skipped = {}, {}
    hh_root = data_root / "hh-rlhf"
    if "hh-rlhf" in names and not hh_root.is_dir():
        skipped["hh-rlhf"] = f"data folder not found: {hh_root}"
    elif "hh-rlhf" in names:
        pairs = []
        for entry in HH_HELDOUT:
            subset, _ = hh_data.parse_split(entry)
            try:
                loaded, _, _ = hh_data.load_preference_pairs(str(hh_root), "test", entry)
            except cmdline.MissingInputError as e:
                skipped[f"hh-rlhf/{subset}"] = str(e)
                continue
            pairs += hh_pairs(loaded, subset)
        if pairs:
            sets["hh-rlhf"] = pairs
    for name, file in (("pandalm", PANDALM_FILE), ("hhh", HHH_FILE)):
        if name not in names:
            continue
        path = data_root / file
        if not path.is_file():
            skipped[name] = f"data file not found: {path}"
            continue
        rows = hh_data.read_records(path)
        if name == "pandalm":
            sets[name], counts = pandalm_pairs(rows)
            print(f"[data] {path}: {counts}", file=sys.stderr)
        else:
            sets[name] = hhh_pairs(rows)
    for name, reason in skipped.items():
        print(f"[rm_eval] skipping {name}: {reason}", file=sys.stderr)
    return sets, skipped


def win(a: float, b: float) -> float:
    """1 if a beats b, 0.5 for a tie, else 0."""
    return 1.0 if a > b else 0.5 if a == b else 0.0


def reply_chars(reply: str) -> int:
    """A reply's length as the reward model reads it: reward_format strips replies."""
    return len(reply.strip())


def pair_stats(pairs: list[dict], chosen: list[float], rejected: list[float]) -> dict:
    """Accuracy (ties count half), mean margin, and the accuracy of "the longer reply wins" and "the
    shorter reply wins" (by characters, ties half) on the same pairs: a reward model that learned
    only length scores as one of the two (Singhal et al. 2023, "A Long Way to Go")."""
    n = len(pairs)
    longer = sum(win(reply_chars(p["chosen"]), reply_chars(p["rejected"])) for p in pairs)
    return {
        "pairs": n,
        "accuracy": sum(win(c, r) for c, r in zip(chosen, rejected)) / n,
        "margin_mean": sum(c - r for c, r in zip(chosen, rejected)) / n,
        "longer_wins": longer / n,
        "shorter_wins": 1 - longer / n,
    }


def set_report(pairs: list[dict], chosen: list[float], rejected: list[float]) -> dict[str, dict]:
    """pair_stats per group (when the set has several) and over all the set's pairs ("all")."""
    groups = sorted({p["group"] for p in pairs})
    report = {}
    if len(groups) > 1:
        for group in groups:
            keep = [i for i, p in enumerate(pairs) if p["group"] == group]
            report[group] = pair_stats(
                [pairs[i] for i in keep], [chosen[i] for i in keep], [rejected[i] for i in keep]
            )
    report["all"] = pair_stats(pairs, chosen, rejected)
    return report
