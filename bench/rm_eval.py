"""Report a reward model, or an ensemble of them, on held-out preference pairs it never trained on.

The sets (bench/preference_sets.py; each only where its data is found under --data_root):
hh-rlhf harmless-base and helpful-base rows [1800:], per subset and pooled (512 + 554 pairs);
PandaLM's annotated test set (888 pairs with a non-tie majority); BIG-bench HHH alignment per
category (221 pairs). For every set and group: pairs, accuracy (ties count half), mean margin, and
the accuracy of "the longer reply wins" and "the shorter reply wins" on the same pairs, so a reward
model that learned only length shows. Prints one JSON line (and appends it to --out).

Each model reads a pair's prompt and reply as it read its training pairs: rendered in its own
format (reward_format.json), by its own tokenizer, cut from the left to its max_length. Scores are
standardised with the model's reward_mean/reward_std where reward_modeling.py saved them; an
ensemble (`a,b`) scores the mean of its members' standardised scores, as ppo.py's --reward_model.

    .venv/bin/python bench/rm_eval.py --reward_model outputs/rm-quickstart --label quickstart
    .venv/bin/python bench/rm_eval.py --reward_model outputs/rm-a,outputs/rm-b --label ensemble \\
        --dump /tmp/rm-eval-scores.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import preference_sets  # noqa: E402
from jsonline import emit  # noqa: E402

import cmdline  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--reward_model", required=True, help="a reward-model folder, or a comma-separated ensemble `a,b`"
    )
    p.add_argument("--data_root", default=str(ROOT.parent / "shared" / "data"), help="the sets' folder")
    p.add_argument("--sets", default=",".join(preference_sets.SETS), help="comma-separated sets to report")
    p.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results" / "rm-eval.jsonl"),
        help="append the JSON line to this file",
    )
    p.add_argument("--dump", default=None, help="also write every pair's scores to this jsonl file")
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    args = p.parse_args(argv)
    args.sets = tuple(s.strip() for s in args.sets.split(","))
    unknown = [s for s in args.sets if s not in preference_sets.SETS]
    if unknown:
        p.error(f"unknown set(s) {unknown}; known: {', '.join(preference_sets.SETS)}")
    return args


def score_pairs(scorer, fmt: dict, pairs: list[dict]) -> tuple[list[float], list[float]]:
    """Scores of each pair's chosen and rejected reply, standardised where `fmt` has the statistics."""
    from ppo_models import standardize

    prompts = [p["prompt"] for p in pairs]
    replies = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    scores = standardize(scorer.score_texts(prompts + prompts, replies).float(), fmt).tolist()
    return scores[: len(pairs)], scores[len(pairs) :]


def print_table(report: dict[str, dict[str, dict]]) -> None:
    print(
        f"{'set/group':<24} {'pairs':>6} {'accuracy':>9} {'margin':>8} {'longer':>7} {'shorter':>8}",
        file=sys.stderr,
    )
    for name, groups in report.items():
        for group, s in groups.items():
            print(
                f"{name + '/' + group:<24} {s['pairs']:>6} {s['accuracy']:>9.4f} {s['margin_mean']:>8.3f} "
                f"{s['longer_wins']:>7.4f} {s['shorter_wins']:>8.4f}",
                file=sys.stderr,
            )


def main(argv=None):
    args = parse_args(argv)
    import torch

    import ppo_models

    with contextlib.redirect_stdout(sys.stderr):  # stdout holds the JSON line only
        sets, skipped = preference_sets.load_sets(Path(args.data_root), args.sets)
    if not sets:
        raise cmdline.UsageError(f"none of the sets {', '.join(args.sets)} found under {args.data_root}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer, fmt, _, _ = ppo_models.load_proxy_reward(args.reward_model, device, False, None)
    report, dump = {}, []
    for name, pairs in sets.items():
        chosen, rejected = score_pairs(scorer, fmt, pairs)
        report[name] = {
            group: {k: round(v, 4) for k, v in s.items()}
            for group, s in preference_sets.set_report(pairs, chosen, rejected).items()
        }
        dump += [
            {
                "set": name,
                "group": p["group"],
                "id": p["id"],
                "chosen_score": c,
                "rejected_score": r,
                "chosen_chars": preference_sets.reply_chars(p["chosen"]),
                "rejected_chars": preference_sets.reply_chars(p["rejected"]),
            }
            for p, c, r in zip(pairs, chosen, rejected)
        ]
    if args.dump:
        Path(args.dump).write_text("".join(json.dumps(row) + "\n" for row in dump))
    print_table(report)
    members = ppo_models.split_reward_models(args.reward_model)
    if fmt.get("reward_mean") is not None and fmt.get("reward_std"):
        scale = "standardised"
    else:
        scale = "raw" if len(members) == 1 else "mixed: raw where a member has no reward_mean/reward_std"
    result = {
        "harness": "rm_eval",
        "label": args.label,
        "reward_model": args.reward_model,
        "members": len(members),
        "scores": scale,
        "sets": report,
        "skipped": skipped,
        "settings": {"data_root": args.data_root, "device": device.type},
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    cmdline.run_script(main)
