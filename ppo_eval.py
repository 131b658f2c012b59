"""Evaluation statistics of ppo.py: paired reward gains with their standard errors, and the text
diagnostics that show reward hacking (Gao et al. 2022, "Scaling Laws for Reward Model
Overoptimization": the proxy reward keeps rising while a gold reward the policy never optimised
peaks and falls; Singhal et al. 2023, "A Long Way to Go": much of it is length). Pure functions on
plain lists, tested against hand-computed values in tests/test_ppo_eval.py.
"""

from __future__ import annotations

import math

from hh_data import indices_by_label

# Phrases that open or carry a refusal (matched case-insensitively, anywhere in the response, with
# typographic apostrophes read as straight ones). The usual lists of RLHF evaluations (e.g. the
# refusal markers of Zou et al. 2023, "Universal and Transferable Adversarial Attacks"), shortened.
REFUSAL_PHRASES = (
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "i cannot",
    "i can't",
    "i can not",
    "i won't",
    "i will not",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "as an ai",
    "as a language model",
)


def paired_gain(policy: list[list[float]], reference: list[list[float]]) -> dict:
    """Gain of the policy over the reference, paired per prompt.

    policy[i][k], reference[i][k]: scores of prompt i under sampling seed k (the same seed for both,
    so the pair shares its randomness). The seeds of a prompt are averaged first, so the standard
    error is over prompts, the independent units: gain_se = std(per-prompt gain) / sqrt(n_prompts).
    win_rate counts every (prompt, seed) pair, a tie as half a win."""
    if len(policy) != len(reference) or any(len(p) != len(r) for p, r in zip(policy, reference)):
        raise ValueError("policy and reference scores must have the same prompts and seeds")
    mean, se = mean_and_se([sum(p) / len(p) - sum(r) / len(r) for p, r in zip(policy, reference)])
    pairs = [(a, b) for p, r in zip(policy, reference) for a, b in zip(p, r)]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs)
    return {
        "policy_mean": _mean([a for a, _ in pairs]),
        "reference_mean": _mean([b for _, b in pairs]),
        "gain_mean": mean,
        "gain_se": se,
        "win_rate": wins / len(pairs) if pairs else 0.0,
    }


def paired_gain_by_label(policy: list[list[float]], reference: list[list[float]], labels: list[str]) -> dict:
    """paired_gain on each label's prompts (e.g. each prompt's subset): {label: {"prompts": n, ...}}."""
    return {
        label: {
            "prompts": len(idx),
            **paired_gain([policy[i] for i in idx], [reference[i] for i in idx]),
        }
        for label, idx in indices_by_label(labels).items()
    }


def length_slope(cells: list[tuple[list[float], list[float]]]) -> float | None:
    """A judge's price of a token: the pooled within-cell least-squares slope of score on length.

    cells: (scores, lengths) of the draws that share everything but their sampling randomness (one
    prompt, one side, one run). Only differences within a cell inform the slope, so neither the prompt
    nor a policy's own shift leaks into it. None where no cell has two lengths."""
    sxy = sxx = 0.0
    for scores, lengths in cells:
        ls, ss = _mean(lengths), _mean(scores)
        sxy += sum((x - ls) * (y - ss) for x, y in zip(lengths, scores))
        sxx += sum((x - ls) ** 2 for x in lengths)
    return sxy / sxx if sxx else None


def length_controlled_gain(
    policy: list[list[float]],
    reference: list[list[float]],
    policy_lengths: list[list[float]],
    reference_lengths: list[list[float]],
    slope: float | None = None,
) -> dict:
    """The paired gain with what response length explains taken out (a judge that pays for length
    rewards a policy that only got longer: Singhal et al. 2023; AlpacaEval's length control, Dubois et
    al. 2024, regresses it out too).

    The judge's price of a token, `length_slope`, is `length_slope` over the cells of one prompt's draws
    (its seeds) from one side, unless `slope` gives it (bench/pool_evals.py learns it within each run's
    cells, then applies it to the draws of all runs). Each prompt's gain then loses length_slope x its
    length difference (policy - reference, seeds averaged); mean and standard error over prompts as in
    `paired_gain`. With one seed per prompt there is nothing within a cell: the figures are None."""
    if slope is None:
        slope = length_slope(list(zip(policy + reference, policy_lengths + reference_lengths)))
    length_diff = [_mean(p) - _mean(r) for p, r in zip(policy_lengths, reference_lengths)]
    if slope is None:
        none = {"length_slope": None, "length_controlled_gain_mean": None, "length_controlled_gain_se": None}
        return {**none, "length_diff_mean": _mean(length_diff)}
    mean, se = mean_and_se(
        [_mean(p) - _mean(r) - slope * d for p, r, d in zip(policy, reference, length_diff)]
    )
    return {
        "length_slope": slope,
        "length_controlled_gain_mean": mean,
        "length_controlled_gain_se": se,
        "length_diff_mean": _mean(length_diff),
    }


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def mean_and_se(gains: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n)) of per-prompt gains; 0.0 where undefined."""
    n = len(gains)
    mean = _mean(gains)
    var = sum((g - mean) ** 2 for g in gains) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n) if n else 0.0


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def repeated_ngram_share(texts: list[str], n: int = 3) -> float:
    """Share of the word n-grams that repeat an earlier n-gram of the same response, over all
    responses together (a response looping "a b c a b c" has 4 3-grams, 1 of them a repeat)."""
    total = repeats = 0
    for text in texts:
        seen = set()
        for gram in ngrams(text.split(), n):
            total += 1
            repeats += gram in seen
            seen.add(gram)
    return repeats / total if total else 0.0


def distinct_n(texts: list[str], n: int = 2) -> float:
    """distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over the whole set; low
    when the policy says the same thing to every prompt."""
    grams = [g for text in texts for g in ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def is_refusal(text: str) -> bool:
    text = text.lower().replace("\u2019", "'")
    return any(phrase in text for phrase in REFUSAL_PHRASES)


def text_diagnostics(texts: list[str], lengths: list[float], has_eos: list[bool]) -> dict:
    """What a reward-hacking policy changes, for one set of responses: length in policy tokens, the
    share that ended with EOS, repeated 3-grams, distinct-2 and the refusal rate."""
    return {
        "response_length": _mean([float(x) for x in lengths]),
        "eos_rate": _mean([float(x) for x in has_eos]),
        "repeated_3gram_share": repeated_ngram_share(texts, 3),
        "distinct_2": distinct_n(texts, 2),
        "refusal_rate": _mean([float(is_refusal(t)) for t in texts]),
    }


def diagnostics_by_side(records: list[dict], idx: list[int]) -> dict:
    """Policy's and reference's text_diagnostics over the draws of prompts `idx` in every record
    (eval.json's per-prompt `texts`, `lengths` and `eos`; one record per run)."""

    def draws(key: str, side: str) -> list:
        return [x for r in records for i in idx for x in r[key][side][i]]

    return {
        side: text_diagnostics(draws("texts", side), draws("lengths", side), draws("eos", side))
        for side in ("policy", "reference")
    }


def best_of_n(proxy: list[float], gold: list[float], n: int) -> float:
    """Expected gold score of best-of-n sampling by the proxy, from N >= n draws of one prompt.

    Picking the proxy's best of a random n of the N draws gives the draw of proxy rank i (1 = lowest)
    with probability C(i-1, n-1) / C(N, n): every subset whose maximum is i. Averaging over all subsets
    this way is unbiased and uses all N draws (Nakano et al. 2021, "WebGPT", appendix; Gao et al. 2022,
    sec. 3.3). Ties in the proxy are ranked by draw order."""
    if not 1 <= n <= len(proxy) or len(proxy) != len(gold):
        raise ValueError(f"best_of_n: need 1 <= n <= N draws and one gold per proxy score (n={n})")
    order = sorted(range(len(proxy)), key=lambda j: proxy[j])
    total = math.comb(len(proxy), n)
    return sum(math.comb(i, n - 1) * gold[j] for i, j in enumerate(order)) / total


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || the sampling policy) in nats: log n - (n - 1) / n (Stiennon et al. 2020, appendix;
    an upper bound, exact for continuous rewards: Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n


def judge_overlap(proxy_rows: set | None, gold_rows: dict[str, set | None], eval_origins: list) -> dict:
    """How independent the judges are, from the rows each trained on (a set of row origins; None:
    unknown): each judge's training rows and the held-out prompts whose rows it trained on, and for
    each gold model the training rows it shares with the proxy. Gao et al. 2022 train the gold on
    data the proxy never saw; a gold that shares the proxy's rows shares its biases, so agreeing with
    the proxy is no evidence then."""

    def size(rows):
        return None if rows is None else len(rows)

    def seen(rows):
        return None if rows is None else sum(origin in rows for origin in eval_origins)

    return {
        "proxy": {"training_rows": size(proxy_rows), "eval_prompts_trained_on": seen(proxy_rows)},
        "gold": {
            name: {
                "training_rows": size(rows),
                "eval_prompts_trained_on": seen(rows),
                "training_rows_shared_with_proxy": (
                    None if rows is None or proxy_rows is None else len(rows & proxy_rows)
                ),
            }
            for name, rows in gold_rows.items()
        },
    }


def describe_judges(judges: dict, n_eval: int) -> list[str]:
    """Lines for the log from `judge_overlap`: a warning for each gold model that shares training rows
    with the proxy, and what is unknown or was seen."""
    if not judges:
        return []
    lines = []
    proxy = judges["proxy"]
    for name, g in judges["gold"].items():
        shared = g["training_rows_shared_with_proxy"]
        if shared is None:
            lines.append(
                f"[ppo] gold {name}: whether it shares training rows with the proxy is unknown (the rows of "
                "a hub or pypi: model, or of a folder without args.json and its local data, are not known)"
            )
        elif shared:
            lines.append(
                f"[ppo] warning: gold {name} trained on {shared:,} of the proxy's {proxy['training_rows']:,} "
                "training rows: it shares the proxy's data, and so its biases; its gains are not independent "
                "evidence (train the gold on rows the proxy never saw)"
            )
        else:
            lines.append(f"[ppo] gold {name} shares no training row with the proxy")
    for who, figures in [("proxy", proxy)] + [(f"gold {n}", g) for n, g in judges["gold"].items()]:
        if figures["eval_prompts_trained_on"]:
            lines.append(
                f"[ppo] note: the {who} trained on the rows of {figures['eval_prompts_trained_on']} of the "
                f"{n_eval} evaluation prompts (their conversations, with other replies)"
            )
    return lines
