"""Pool the held-out evaluations of several ppo.py runs (training seeds) per prompt.

Each run's eval.json holds, for the proxy and each gold, every prompt's scores under each sampling seed,
policy and reference. Pooled, a prompt's gain is the mean of its policy draws over all runs minus the
mean of its reference draws, and the standard error is over prompts, the independent units (as
`ppo_eval.paired_gain` does for one run). The length-controlled gain learns the judge's price of a token
within each run's cells (one prompt, one side, one run), so no policy's own change of length leaks into
it, and applies it to the pooled draws. Runs must have evaluated the same prompts with the same judges
and seeds; anything else is refused, naming the setting. `--vs` pools a second group of runs on the same
prompts (each at `--vs_update`, default its last evaluation) and adds the difference of the two pooled gains, paired per prompt
(mean and standard error over prompts). `--by_subset` adds each judge's pooled figures on the prompts of
each subset folder of the evaluation set (e.g. harmless-base and helpful-base), read again from the runs'
flags: a policy can gain on one kind of prompt and lose on another. `--by_router` splits them by what the
proxy's router called each prompt (P(risky | prompt) >= 0.5: risky, else benign; `proxy_risk` in eval.json),
which is where a routed proxy scores with its safety model. Where the runs' eval.json holds the responses'
texts, each split also gets the diagnostics of policy and reference (length, EOS rate, refusal rate...),
pooled over runs. One run alone gives its own figures.

    .venv/bin/python bench/pool_evals.py outputs/hh/ppo-2x-s0 outputs/hh/ppo-2x-s1 outputs/hh/ppo-2x-s2 --by_subset
    .venv/bin/python bench/pool_evals.py outputs/hh/ppo-2x-s* --update 20 --json_out bench/results/hh-rl.jsonl
    .venv/bin/python bench/pool_evals.py outputs/hh/ppo outputs/hh/ppo-s1 outputs/hh/ppo-s2 --vs outputs/hh/est/gae-s*
    .venv/bin/python bench/pool_evals.py outputs/hh/val256-risky9 --vs outputs/hh/val256-base --by_subset --by_router
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsonline import emit  # noqa: E402

import ppo_eval  # noqa: E402
from hh_data import indices_by_label  # noqa: E402

# The flags of args.json that decide which prompts an evaluation scored (see ppo.py's _load_prompts).
PROMPT_FLAGS = ("eval_dataset", "eval_data_dir", "eval_split", "eval_samples", "max_prompt_length")
HOLDOUT_FLAGS = ("query_dataset", "query_split", "data_dir")
GROUP_LABELS = {"by_subset": "subsets", "by_router": "routes"}  # a split's key -> its labels' key
FIGURES = ("gain_mean", "gain_se", "win_rate", "length_controlled_gain_mean", "length_controlled_gain_se")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "runs",
        nargs="+",
        help="ppo.py output folders (eval.json and args.json in each); one gives its own figures",
    )
    p.add_argument(
        "--update", type=int, default=None, help="the evaluation after this update (default: the last)"
    )
    p.add_argument(
        "--vs", nargs="+", default=None, help="runs to compare with, paired per prompt (last evaluation)"
    )
    p.add_argument(
        "--vs_update",
        type=int,
        default=None,
        help="the --vs runs' evaluation after this update (default: the last)",
    )
    p.add_argument("--by_subset", action="store_true", help="also the figures on each subset's prompts")
    p.add_argument(
        "--by_router",
        action="store_true",
        help="also the figures on the prompts the routed proxy's router calls risky, and on the others",
    )
    p.add_argument("--label", default=None, help="free text copied into the JSON")
    p.add_argument("--json_out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    return args


def load_run(folder: str, update: int | None) -> tuple[dict, dict]:
    """(args.json, the evaluation point) of one run folder; exits with a one-line error where missing."""
    root = Path(folder)
    for name in ("eval.json", "args.json"):
        if not (root / name).is_file():
            sys.exit(
                f"error: {root / name} does not exist: give ppo.py output folders that finished an evaluation"
            )
    result = json.loads((root / "eval.json").read_text())
    flags = json.loads((root / "args.json").read_text())
    points = result.get("points") or [result]
    if update is None:
        return flags, result
    found = [p for p in points if p["update"] == update]
    if not found:
        have = ", ".join(str(p["update"]) for p in points)
        sys.exit(f"error: {root} has no evaluation after update {update} (it has: {have})")
    return flags, found[0]


def prompt_settings(flags: dict) -> dict:
    """The flags that decide a run's evaluation prompts: the held-out set's own where given, else also
    the training prompts' (the evaluation then reads their test split or holds out their last rows)."""
    explicit = flags.get("eval_dataset") or flags.get("eval_data_dir") or flags.get("eval_split")
    names = PROMPT_FLAGS + ("query_dataset",) if explicit else PROMPT_FLAGS + HOLDOUT_FLAGS
    return {name: flags.get(name) for name in names}


def check_poolable(runs: list[str], flags: list[dict], points: list[dict]) -> None:
    """Refuse, naming the setting, runs that did not score the same prompts, seeds and judges."""

    def same(what: str, values: list) -> None:
        if any(v != values[0] for v in values[1:]):
            shown = "; ".join(f"{run}: {v}" for run, v in zip(runs, values))
            sys.exit(f"error: the runs differ in {what}, so their prompts' draws do not pool ({shown})")

    settings = [prompt_settings(f) for f in flags]
    for name in sorted(set().union(*settings)):
        same(f"--{name}", [s.get(name) for s in settings])
    same("the number of evaluation prompts", [p["prompts"] for p in points])
    same("--eval_seeds", [p["eval_seeds"] for p in points])
    same("--reward_model (the proxy)", [f.get("reward_model") for f in flags])
    same("the gold reward models", [sorted(p.get("gold", {})) for p in points])
    if all("prompt_rows" in p for p in points):  # where eval.json records the rows themselves
        same("the evaluation rows (prompt_rows in eval.json)", [p["prompt_rows"] for p in points])


def prompt_subsets(flags: dict, n: int) -> list[str]:
    """The subset folder of each of a run's n evaluation prompts, read again as ppo.py read them."""
    from hh_data import origin_subsets
    from ppo_data import eval_prompt_source, load_prompts

    if not (flags.get("eval_data_dir") or flags.get("eval_dataset")):
        sys.exit("error: --by_subset needs runs evaluated on an explicit --eval_data_dir or --eval_dataset")
    names = ("query_dataset", "data_dir", "eval_dataset", "eval_split", "eval_data_dir")
    dataset, split, data_dir = eval_prompt_source(*(flags.get(name) for name in names))
    try:
        _, origins = load_prompts(dataset, split, data_dir)
    except (OSError, ValueError) as e:
        sys.exit(f"error: --by_subset reads the evaluation prompts again from {dataset}: {e}")
    return origin_subsets(origins[:n])


def router_groups(runs: list[str], points: list[dict]) -> list[str]:
    """risky or benign for each evaluation prompt: the routed proxy's P(risky | prompt) >= 0.5, as the
    runs' evaluations recorded it (the same proxy and prompts in every run: check_poolable)."""
    for run, p in zip(runs, points):
        if "proxy_risk" not in p:
            sys.exit(
                f"error: {run}/eval.json has no proxy_risk: --by_router needs runs whose --reward_model is "
                "routed (router.py), evaluated by a ppo.py that records it (evaluate again with --eval_only)"
            )
    return ["risky" if p >= 0.5 else "benign" for p in points[0]["proxy_risk"]]


def pool_judge(judged: list[dict], lengths: list[dict], groups: dict[str, list[str]] | None = None) -> dict:
    """One judge's pooled figures from each run's figures (with per_prompt) and each run's lengths;
    with `groups` ({"by_subset": one label per prompt, ...}), the paired gain on each label's prompts too."""
    n = len(judged[0]["per_prompt"]["policy"])
    pooled = {
        side: [sum((j["per_prompt"][side][i] for j in judged), []) for i in range(n)]
        for side in ("policy", "reference")
    }
    pooled_lengths = {side: [sum((ln[side][i] for ln in lengths), []) for i in range(n)] for side in pooled}
    cells = [
        (j["per_prompt"][side][i], ln[side][i])
        for j, ln in zip(judged, lengths)
        for side in ("policy", "reference")
        for i in range(n)
    ]
    slope = ppo_eval.length_slope(cells)
    gains = [sum(a) / len(a) - sum(b) / len(b) for a, b in zip(pooled["policy"], pooled["reference"])]
    by_group = {
        key: ppo_eval.paired_gain_by_label(pooled["policy"], pooled["reference"], labels)
        for key, labels in (groups or {}).items()
    }
    return {
        **ppo_eval.paired_gain(pooled["policy"], pooled["reference"]),
        "per_prompt_gain": gains,
        **ppo_eval.length_controlled_gain(
            pooled["policy"],
            pooled["reference"],
            pooled_lengths["policy"],
            pooled_lengths["reference"],
            slope,
        ),
        **by_group,
    }


def pool_diagnostics(points: list[dict], groups: dict[str, list[str]]) -> dict | None:
    """Policy's and reference's text diagnostics (ppo_eval.text_diagnostics) over every run's draws, on
    all prompts and on each group's; None where a run's eval.json predates the recorded texts."""
    if any("texts" not in p or "eos" not in p for p in points):
        return None

    result = ppo_eval.diagnostics_by_side(points, list(range(points[0]["prompts"])))
    for key, labels in groups.items():
        result[key] = {
            name: ppo_eval.diagnostics_by_side(points, idx) for name, idx in indices_by_label(labels).items()
        }
    return result


def pool(
    runs: list[str],
    update: int | None = None,
    vs: list[str] | None = None,
    by_subset: bool = False,
    vs_update: int | None = None,
    by_router: bool = False,
) -> dict:
    """Each judge's figures per run and pooled over `runs` (at `update`, default the last evaluation);
    with `vs`, the same for those runs (at `vs_update`) and the paired difference of the two pools.
    Every eval.json is read once, and the evaluation prompts at most once."""
    loaded = [load_run(run, update) for run in runs]
    others = [load_run(run, vs_update) for run in vs or []]
    check_poolable(runs + (vs or []), [f for f, _ in loaded + others], [p for _, p in loaded + others])
    groups = {}
    if by_subset:
        first = loaded[0][1]  # ppo.py records each prompt's subset where there are several
        groups["by_subset"] = first.get("subsets") or prompt_subsets(loaded[0][0], first["prompts"])
    if by_router:
        groups["by_router"] = router_groups(runs, [p for _, p in loaded])
    result = summarize(runs, [p for _, p in loaded], groups)
    if not vs:
        return result
    other = summarize(vs, [p for _, p in others], groups)
    return {**result, "vs": other, "difference": paired_difference(result, other)}


def summarize(runs: list[str], points: list[dict], groups: dict[str, list[str]]) -> dict:
    """Each judge's figures per run and pooled over the runs' evaluation `points`."""
    for run, p in zip(runs, points):
        if "lengths" not in p:
            sys.exit(
                f"error: {run}/eval.json predates per-prompt lengths; evaluate it again with ppo.py --eval_only"
            )
    lengths = [p["lengths"] for p in points]
    golds = sorted(points[0].get("gold", {}))

    def figures(f: dict) -> dict:
        return {k: f.get(k) for k in FIGURES}

    per_run = [
        {
            "output_dir": run,
            "update": p["update"],
            "kl_mean": p["kl_mean"],
            "response_length": {
                side: p["diagnostics"][side]["response_length"] for side in ("policy", "reference")
            },
            "proxy": figures(p["proxy"]),
            "gold": {g: figures(p["gold"][g]) for g in golds},
        }
        for run, p in zip(runs, points)
    ]
    pooled = {
        "kl_mean": sum(p["kl_mean"] for p in points) / len(points),
        "proxy": pool_judge([p["proxy"] for p in points], lengths, groups),
        "gold": {g: pool_judge([p["gold"][g] for p in points], lengths, groups) for g in golds},
    }
    diagnostics = pool_diagnostics(points, groups)
    if diagnostics is not None:
        pooled["diagnostics"] = diagnostics
    return {
        "harness": "pool_evals",
        "prompts": points[0]["prompts"],
        "draws_per_prompt": points[0]["eval_seeds"] * len(points),
        "runs": per_run,
        "pooled": pooled,
        **({"subsets": groups["by_subset"]} if "by_subset" in groups else {}),
        **({"routes": groups["by_router"]} if "by_router" in groups else {}),
    }


def paired_difference(result: dict, other: dict) -> dict:
    """Per judge: each prompt's pooled gain in `result` minus its pooled gain in `other` (the same
    prompts), mean and standard error over prompts; per subset and per route too where `result` has them."""
    groups = {key: result[name] for key, name in GROUP_LABELS.items() if name in result}

    def difference(a: dict, b: dict) -> dict:
        diffs = [x - y for x, y in zip(a["per_prompt_gain"], b["per_prompt_gain"])]
        mean, se = ppo_eval.mean_and_se(diffs)
        figures = {"gain_mean": mean, "gain_se": se}
        for key, labels in groups.items():
            for name, idx in indices_by_label(labels).items():
                mean, se = ppo_eval.mean_and_se([diffs[i] for i in idx])
                figures.setdefault(key, {})[name] = {"prompts": len(idx), "gain_mean": mean, "gain_se": se}
        return figures

    a, b = result["pooled"], other["pooled"]
    return {
        "proxy": difference(a["proxy"], b["proxy"]),
        "gold": {g: difference(a["gold"][g], b["gold"][g]) for g in a["gold"]},
    }


def describe(result: dict) -> list[str]:
    """The figures as lines for a reader (stderr)."""

    def judge(name: str, f: dict) -> str:
        line = (
            f"{name} {f['gain_mean']:+.3f} (se {f['gain_se']:.3f}, {f['gain_mean'] / f['gain_se']:.1f} se)"
            if f["gain_se"]
            else f"{name} {f['gain_mean']:+.3f}"
        )
        line += f", win {f['win_rate']:.2f}"
        if f.get("length_controlled_gain_mean") is not None:
            line += f", length-controlled {f['length_controlled_gain_mean']:+.3f}"
        return line

    lines = []
    for r in result["runs"]:
        golds = "; ".join(judge(f"gold {g}", f) for g, f in r["gold"].items())
        lines.append(
            f"{r['output_dir']} update {r['update']}: KL {r['kl_mean']:.2f}; {judge('proxy', r['proxy'])}; {golds}"
        )
    p = result["pooled"]
    golds = "; ".join(judge(f"gold {g}", f) for g, f in p["gold"].items())
    lines.append(
        f"pooled ({result['prompts']} prompts x {result['draws_per_prompt']} draws): KL {p['kl_mean']:.2f}; "
        f"{judge('proxy', p['proxy'])}; {golds}"
    )
    diagnostics = p.get("diagnostics")
    if diagnostics:
        lines.append(f"  diagnostics: {describe_diagnostics(diagnostics)}")
    for key in GROUP_LABELS:
        for name, f in p["proxy"].get(key, {}).items():
            golds = "; ".join(judge(f"gold {g}", x[key][name]) for g, x in p["gold"].items())
            lines.append(f"  {name} ({f['prompts']} prompts): {judge('proxy', f)}; {golds}")
            if diagnostics:
                lines.append(f"    diagnostics: {describe_diagnostics(diagnostics[key][name])}")
    if "vs" in result:
        lines += ["vs: " + line for line in describe(result["vs"])]
        d = result["difference"]
        golds = "; ".join(
            f"gold {g} {f['gain_mean']:+.3f} (se {f['gain_se']:.3f})" for g, f in d["gold"].items()
        )
        lines.append(
            f"difference, paired per prompt: proxy {d['proxy']['gain_mean']:+.3f} (se {d['proxy']['gain_se']:.3f}); {golds}"
        )
        for key in GROUP_LABELS:
            for name, f in d["proxy"].get(key, {}).items():
                golds = "; ".join(
                    f"gold {g} {x[key][name]['gain_mean']:+.3f} (se {x[key][name]['gain_se']:.3f})"
                    for g, x in d["gold"].items()
                )
                lines.append(f"  {name}: proxy {f['gain_mean']:+.3f} (se {f['gain_se']:.3f}); {golds}")
    return lines


def describe_diagnostics(d: dict) -> str:
    """Policy against reference: tokens, EOS rate, refusal rate."""
    pol, ref = d["policy"], d["reference"]
    return (
        f"length {pol['response_length']:.1f} vs {ref['response_length']:.1f}, "
        f"EOS {pol['eos_rate']:.2f} vs {ref['eos_rate']:.2f}, "
        f"refusals {pol['refusal_rate']:.3f} vs {ref['refusal_rate']:.3f}"
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = pool(args.runs, args.update, args.vs, args.by_subset, args.vs_update, args.by_router)
    result["label"] = args.label
    for line in describe(result):
        print(line, file=sys.stderr)
    emit(result, args.json_out)
    return result


if __name__ == "__main__":
    main()
