"""ppo.py's evaluation: paired gains, reward-hacking diagnostics (against hand-computed values), gold
reward models and reward-model ensembles, and the figures of plots.py (read through the Figure objects)."""

import json
import math
import re

import pytest
import torch
from conftest import policy_responses
from test_ppo import read_metrics, run_ppo

import plots
import ppo
import ppo_eval
import ppo_models

# --- pure statistics -------------------------------------------------------------------------


def test_paired_gain_averages_seeds_within_a_prompt_then_takes_the_se_over_prompts():
    policy = [[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]]
    reference = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]
    got = ppo_eval.paired_gain(policy, reference)
    # per-prompt gains 3/2, -1/2, 0: mean 1/3, sample variance 13/12, se sqrt(13/12 / 3) = sqrt(13)/6
    assert got["gain_mean"] == pytest.approx(1 / 3)
    assert got["gain_se"] == pytest.approx(math.sqrt(13) / 6)
    # pairs: 2 wins (1>0, 3>1), 1 loss (0<1), 3 ties
    assert got["win_rate"] == pytest.approx(3.5 / 6)
    assert got["policy_mean"] == pytest.approx(8 / 6) and got["reference_mean"] == pytest.approx(6 / 6)
    with pytest.raises(ValueError, match="same prompts and seeds"):
        ppo_eval.paired_gain([[1.0]], [[1.0, 2.0]])


def test_length_controlled_gain_against_a_fixed_effects_regression():
    import numpy as np

    rng = np.random.default_rng(0)
    n, k = 12, 3
    pol_len = rng.integers(10, 40, (n, k)).astype(float)
    ref_len = rng.integers(5, 35, (n, k)).astype(float)
    prompt = rng.normal(size=(n, 1))
    pol = (prompt + 0.05 * pol_len + 0.3 + rng.normal(scale=0.2, size=(n, k))).tolist()
    ref = (prompt + 0.05 * ref_len + rng.normal(scale=0.2, size=(n, k))).tolist()
    got = ppo_eval.length_controlled_gain(pol, ref, pol_len.tolist(), ref_len.tolist())
    # Naive reference: least squares of score on length plus one indicator per (prompt, side) cell.
    y = np.concatenate([np.ravel(pol), np.ravel(ref)])
    x = np.concatenate([pol_len.ravel(), ref_len.ravel()])
    cells = np.repeat(np.arange(2 * n), k)
    design = np.column_stack([x, np.eye(2 * n)[cells]])
    slope = np.linalg.lstsq(design, y, rcond=None)[0][0]
    assert got["length_slope"] == pytest.approx(slope)
    gains = np.mean(pol, 1) - np.mean(ref, 1) - slope * (pol_len.mean(1) - ref_len.mean(1))
    assert got["length_controlled_gain_mean"] == pytest.approx(gains.mean())
    assert got["length_controlled_gain_se"] == pytest.approx(gains.std(ddof=1) / np.sqrt(n))
    assert got["length_diff_mean"] == pytest.approx((pol_len - ref_len).mean())
    # A judge that pays 0.05 per token: the raw gain carries the length, the controlled one is the 0.3.
    raw = ppo_eval.paired_gain(pol, ref)["gain_mean"]
    assert abs(raw - 0.3) > 0.1 and got["length_controlled_gain_mean"] == pytest.approx(0.3, abs=0.1)
    # One seed per prompt: no draw of a cell differs from another, so there is no slope to learn.
    one = ppo_eval.length_controlled_gain([[1.0]], [[0.0]], [[3.0]], [[2.0]])
    assert one["length_slope"] is None and one["length_controlled_gain_mean"] is None
    assert one["length_diff_mean"] == 1.0


def test_repeated_ngrams_count_repeats_within_a_response_only():
    # "a b c a b c": 3-grams abc bca cab abc, one repeat; "x y" has none; a second "a b c" in
    # another response repeats nothing of its own.
    assert ppo_eval.repeated_ngram_share(["a b c a b c", "x y"]) == pytest.approx(1 / 4)
    assert ppo_eval.repeated_ngram_share(["a b c a b c", "x y", "a b c"]) == pytest.approx(1 / 5)
    assert ppo_eval.repeated_ngram_share(["too short"]) == 0.0


def test_distinct_2_is_unique_over_all_bigrams_of_the_set():
    assert ppo_eval.distinct_n(["a b a b", "a b"], 2) == pytest.approx(2 / 4)  # ab ba ab | ab
    assert ppo_eval.distinct_n(["one"], 2) == 0.0


def test_refusals_match_the_phrase_list_case_and_apostrophe_blind():
    assert ppo_eval.is_refusal("I\u2019m sorry, but no")
    assert ppo_eval.is_refusal("Well, AS AN AI I have no opinion")
    assert ppo_eval.is_refusal("Honestly I can't do that")
    assert not ppo_eval.is_refusal("Sorry to hear that! Try this.")


def test_text_diagnostics_by_hand():
    got = ppo_eval.text_diagnostics(["I cannot help", "sure sure sure sure"], [3, 4], [True, False])
    assert got == pytest.approx(
        {
            "response_length": 3.5,
            "eos_rate": 0.5,
            "repeated_3gram_share": 1 / 3,  # 1 + 2 3-grams, the second "sure sure sure" repeats
            "distinct_2": 3 / 5,  # (I cannot) (cannot help) (sure sure) x3
            "refusal_rate": 0.5,
        }
    )


def test_an_evaluation_of_two_subsets_is_split_by_subset(capsys):
    def draw(pol: float, ref: float, text: str) -> dict:
        side = lambda score, t: {"score": score, "text": t, "length": 3, "eos": True}  # noqa: E731
        return {"kl": 1.0, "policy": side(pol, text), "reference": side(ref, "fine"), "gold": {"g": {
            "policy": -pol, "reference": -ref}}}  # fmt: skip

    rows = [  # prompts 0 and 2 from subset a (the policy refuses there), 1 and 3 from b; two seeds each
        {"index": 0, "seeds": [draw(1.0, 0.0, "I'm sorry"), draw(3.0, 0.0, "I'm sorry")]},
        {"index": 1, "seeds": [draw(0.0, 1.0, "ok"), draw(0.0, 0.0, "ok")]},
        {"index": 2, "seeds": [draw(0.0, 0.0, "I'm sorry"), draw(1.0, 0.0, "ok")]},
        {"index": 3, "seeds": [draw(0.5, 0.0, "ok"), draw(0.5, 1.0, "ok")]},
    ]
    got = ppo.summarize_evaluation(rows, ["g"], 7, ["a", "b", "a", "b"])
    assert got["subsets"] == ["a", "b", "a", "b"]
    a, b = got["proxy"]["by_subset"]["a"], got["proxy"]["by_subset"]["b"]
    assert a["prompts"] == b["prompts"] == 2
    assert a["gain_mean"] == pytest.approx((2.0 + 0.5) / 2)  # per-prompt gains 2.0 and 0.5
    assert a["gain_se"] == pytest.approx(0.75)  # sample std 0.75 sqrt(2), over sqrt(2) prompts
    assert b["gain_mean"] == pytest.approx((-0.5 + 0.0) / 2)
    assert b["win_rate"] == pytest.approx(1.5 / 4)  # a loss, a tie, a win, a loss
    assert got["gold"]["g"]["by_subset"]["a"]["gain_mean"] == pytest.approx(-1.25)  # the gold is -proxy
    assert got["diagnostics_by_subset"]["a"]["policy"]["refusal_rate"] == pytest.approx(3 / 4)
    assert got["diagnostics_by_subset"]["b"]["policy"]["refusal_rate"] == 0.0
    assert got["diagnostics"]["policy"]["refusal_rate"] == pytest.approx(3 / 8)  # the whole, unchanged
    logged = ppo.tracker_metrics(got)
    assert logged["eval/gold/g/a/gain_mean"] == pytest.approx(-1.25)
    assert logged["eval/diagnostics/a/policy/refusal_rate"] == pytest.approx(3 / 4)
    ppo.print_evaluation(got)
    printed = capsys.readouterr().out
    assert "    a (2): gain +1.250 ± 0.750, win rate 0.875" in printed  # 3 wins and a tie
    assert "a: policy refusals 0.750" in printed
    # One subset (or none known): nothing to split.
    for subsets in (["a"] * 4, None):
        one = ppo.summarize_evaluation(rows, ["g"], 7, subsets)
        assert "by_subset" not in one["proxy"] and "subsets" not in one and "diagnostics_by_subset" not in one


# --- reward models: gold and ensembles -------------------------------------------------------


def test_ensemble_score_is_the_mean_of_standardised_members(word_policy, kind_rm, gpt2_rm):
    from transformers import AutoTokenizer

    policy_tok = AutoTokenizer.from_pretrained(str(word_policy))
    cpu = torch.device("cpu")
    spec = f"text-classification:{kind_rm},{gpt2_rm}"  # a pipeline prefix holds a colon: split on commas
    ensemble, fmt, critic, _ = ppo_models.load_proxy_reward(spec, cpu, False, policy_tok)
    assert critic is None and fmt == {}  # gpt2_rm has no statistics: the ensemble has none either
    prompts = [{"turns": [{"role": "user", "content": w}], "text": None} for w in ("hi", "hello", "hey")]
    replies = [" kind thanks glad", " no away stop", " sure"]
    responses, lengths = policy_responses(policy_tok, replies)
    got = ensemble(prompts, responses, lengths)
    members = []
    for path in (kind_rm, gpt2_rm):
        m = ppo_models.load_scorer(str(path), cpu, False, policy_tok)
        raw = m.scorer(prompts, responses, lengths)
        mean, std = m.fmt.get("reward_mean"), m.fmt.get("reward_std")
        members.append(raw if mean is None else (raw - mean) / std)
    fmt_kind = json.loads((kind_rm / "reward_format.json").read_text())
    assert fmt_kind["reward_std"] > 0  # the DistilBERT member is standardised, the GPT-2 one raw
    torch.testing.assert_close(got, (members[0] + members[1]) / 2)


def test_ppo_trains_against_an_ensemble(word_policy, kind_rm, gpt2_rm, kind_data, tmp_path, capsys):
    out = tmp_path / "ppo"
    result = run_ppo(word_policy, f"{kind_rm},{gpt2_rm}", kind_data, out, "--steps=16", "--eval_samples=4")
    printed = capsys.readouterr().out
    assert "value: the policy backbone" in printed and "an ensemble of 2" in printed
    assert math.isfinite(result["proxy"]["gain_mean"]) and len(read_metrics(out)) == 1


def test_gold_reward_model_is_refused_before_the_policy_loads(kind_rm, kind_data, tmp_path):
    no_policy = tmp_path / "no-such-policy"  # never reached: the reward models are checked first
    with pytest.raises(ValueError, match="gold model must be another one"):
        run_ppo(no_policy, kind_rm, kind_data, tmp_path / "a", f"--gold_reward_model={kind_rm}/.")
    with pytest.raises(ValueError, match="gold model must be another one"):  # a member of the ensemble
        run_ppo(
            no_policy, f"{tmp_path},{kind_rm}", kind_data, tmp_path / "b", f"--gold_reward_model={kind_rm}"
        )
    with pytest.raises(FileNotFoundError, match="--gold_reward_model: reward model not found"):
        run_ppo(no_policy, kind_rm, kind_data, tmp_path / "c", f"--gold_reward_model={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="--eval_seeds must be at least 1"):
        run_ppo(no_policy, kind_rm, kind_data, tmp_path / "d", "--eval_seeds=0")


def test_eval_with_gold_model_and_seeds(word_policy, kind_rm, gpt2_rm, kind_data, tmp_path):
    out = tmp_path / "ppo"
    gold = str(gpt2_rm)
    result = run_ppo(
        word_policy,
        kind_rm,
        kind_data,
        out,
        f"--gold_reward_model={gold}",
        "--eval_seeds=2",
        "--eval_every=1",
        "--steps=48",
        "--eval_samples=8",
    )
    saved = json.loads((out / "eval.json").read_text())
    points = saved["points"]
    assert [p["update"] for p in points] == [1, 2, 3] and saved["update"] == 3
    assert points[-1]["proxy"] == saved["proxy"] and len(read_metrics(out)) == 3
    for point in points:
        assert point["prompts"] == 8 and point["eval_seeds"] == 2
        for figures in (point["proxy"], point["gold"][gold]):
            pol, ref = figures["per_prompt"]["policy"], figures["per_prompt"]["reference"]
            assert len(pol) == len(ref) == 8 and all(len(row) == 2 for row in pol + ref)
            gains = [sum(p) / 2 - sum(r) / 2 for p, r in zip(pol, ref)]
            assert figures["gain_mean"] == pytest.approx(sum(gains) / 8)
            se = math.sqrt(sum((g - sum(gains) / 8) ** 2 for g in gains) / 7 / 8)
            assert figures["gain_se"] == pytest.approx(se)
            assert all(math.isfinite(figures[k]) for k in ("gain_mean", "gain_se", "win_rate"))
        assert point["sqrt_kl"] == pytest.approx(math.sqrt(max(point["kl_mean"], 0)))
        for side in ("policy", "reference"):
            d = point["diagnostics"][side]
            for k in ("eos_rate", "repeated_3gram_share", "distinct_2", "refusal_rate"):
                assert 0.0 <= d[k] <= 1.0, (side, k)
            assert d["response_length"] > 0
    # The same seeds at every evaluation: the frozen reference's draws repeat exactly; two seeds differ.
    ref0 = points[0]["proxy"]["per_prompt"]["reference"]
    assert all(p["proxy"]["per_prompt"]["reference"] == ref0 for p in points)
    assert all(
        p["gold"][gold]["per_prompt"]["reference"] == points[0]["gold"][gold]["per_prompt"]["reference"]
        for p in points
    )
    assert any(row[0] != row[1] for row in ref0)
    # The reference's draws are computed once per run and kept; one evaluation at the end of the same
    # run, its reference sampled afresh, gives the same figures: caching and evaluating change nothing.
    once = run_ppo(
        word_policy, kind_rm, kind_data, tmp_path / "once", f"--gold_reward_model={gold}",
        "--eval_seeds=2", "--steps=48", "--eval_samples=8",
    )  # fmt: skip
    assert once["proxy"] == saved["proxy"] and once["gold"] == saved["gold"]
    assert once["kl_mean"] == saved["kl_mean"] and once["diagnostics"] == saved["diagnostics"]
    # PPO on the proxy: the proxy's gain grows; the random gold model's is whatever it is.
    assert points[-1]["proxy"]["gain_mean"] > 0.3
    logged = ppo.tracker_metrics(result)
    for key in ("eval/proxy/gain_mean", f"eval/gold/{gpt2_rm.name}/gain_se", "eval/sqrt_kl", "eval/win_rate"):
        assert math.isfinite(logged[key]), key
    assert 0 <= logged["eval/diagnostics/policy/refusal_rate"] <= 1
    assert {"training.png", "overoptimization.png", "diagnostics.png"} <= {p.name for p in out.iterdir()}


def test_judge_overlap_counts_shared_rows_and_seen_prompts():
    proxy = {("a", 0), ("a", 1), ("b", 0)}
    golds = {"same": {("a", 1), ("b", 0), ("c", 5)}, "apart": {("c", 0), ("c", 1)}, "hub": None}
    evals = [("c", 0), ("b", 0), ("d", 0)]
    j = ppo_eval.judge_overlap(proxy, golds, evals)
    assert j["proxy"] == {"training_rows": 3, "eval_prompts_trained_on": 1}
    assert j["gold"]["same"] == {
        "training_rows": 3, "eval_prompts_trained_on": 1, "training_rows_shared_with_proxy": 2
    }  # fmt: skip
    assert j["gold"]["apart"]["training_rows_shared_with_proxy"] == 0
    assert j["gold"]["apart"]["eval_prompts_trained_on"] == 1
    assert j["gold"]["hub"] == dict.fromkeys(j["gold"]["same"])  # unknown: None, not 0
    text = "\n".join(ppo_eval.describe_judges(j, len(evals)))
    assert "warning: gold same trained on 2 of the proxy's 3 training rows" in text
    assert "gold apart shares no training row with the proxy" in text
    assert "gold hub: whether it shares training rows with the proxy is unknown" in text
    assert "the gold apart trained on the rows of 1 of the 3 evaluation prompts" in text
    assert "the proxy trained on the rows of 1 of the 3" in text
    assert ppo_eval.describe_judges({}, 3) == []
    unknown_proxy = ppo_eval.judge_overlap(None, {"apart": golds["apart"]}, evals)
    assert unknown_proxy["gold"]["apart"]["training_rows_shared_with_proxy"] is None


def test_a_gold_trained_on_the_proxys_rows_is_flagged(word_policy, kind_rm, kind_data, tmp_path, capsys):
    import shutil

    gold = tmp_path / "kind-rm-copy"  # another folder, the same training rows: no independent judge
    shutil.copytree(kind_rm, gold)
    run_ppo(word_policy, kind_rm, kind_data, tmp_path / "ppo", f"--gold_reward_model={gold}", "--steps=16")
    printed = capsys.readouterr().out
    n = len((kind_data / "train.jsonl").read_text().splitlines())
    assert f"warning: gold {gold} trained on {n} of the proxy's {n} training rows" in printed
    figures = json.loads((tmp_path / "ppo" / "eval.json").read_text())["gold"][str(gold)]
    assert figures["training_rows_shared_with_proxy"] == figures["training_rows"] == n
    assert figures["eval_prompts_trained_on"] == 0  # the held-out prompts come from test.jsonl


def test_eval_only_repeats_the_final_evaluation_of_a_run(
    word_policy, kind_rm, gpt2_rm, kind_data, tmp_path, capsys
):
    gold = str(gpt2_rm)
    common = (f"--gold_reward_model={gold}", "--eval_seeds=2", "--eval_samples=8")
    run = tmp_path / "run"
    trained = run_ppo(word_policy, kind_rm, kind_data, run, "--steps=32", *common)
    assert trained["proxy"]["gain_mean"] != 0  # the run moved the policy
    # The saved policy against the model it started from, with nothing trained and nothing saved.
    capsys.readouterr()
    again = run_ppo(
        run, kind_rm, kind_data, tmp_path / "eval", "--eval_only=True", f"--ref_model={word_policy}", *common
    )
    for key in ("proxy", "gold", "kl_mean", "diagnostics", "lengths"):
        assert again[key] == trained[key], key
    # progress counts every response sampled: 8 prompts x 2 seeds, policy and reference
    err = capsys.readouterr().err
    assert re.search(r"evaluation: 100%.*32/32", err), err[-2000:]
    assert trained["proxy"]["length_diff_mean"] == pytest.approx(
        sum(map(sum, trained["lengths"]["policy"])) / 16 - sum(map(sum, trained["lengths"]["reference"])) / 16
    )
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["update"] == 0 and len(saved["points"]) == 1
    assert not (tmp_path / "eval" / "model.safetensors").exists()
    assert (tmp_path / "eval" / "overoptimization.png").exists()


def test_ref_model_and_eval_only_are_refused_where_they_mean_nothing(
    word_policy, kind_rm, kind_data, tiny_bert, tmp_path
):
    with pytest.raises(ValueError, match="^--eval_only compares --model_name with --ref_model"):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "a", "--eval_only=True")
    with pytest.raises(ValueError, match="adapters off; use --use_peft=False"):
        run_ppo(
            word_policy, kind_rm, kind_data, tmp_path / "b", "--use_peft=True", f"--ref_model={word_policy}"
        )
    with pytest.raises(FileNotFoundError, match="^--ref_model: model folder not found"):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "c", f"--ref_model={tmp_path / 'missing'}")
    with pytest.raises(ValueError, match=f"--ref_model={tiny_bert} has another tokenizer"):
        run_ppo(word_policy, kind_rm, kind_data, tmp_path / "d", f"--ref_model={tiny_bert}", "--steps=16")


def test_a_named_reference_is_the_one_the_kl_reads(word_policy, tiny_gpt2):
    model, ref, _ = ppo_models.build_policy_and_value(str(word_policy), "none", reference_path=str(tiny_gpt2))
    other, _, _ = ppo_models.build_policy_and_value(str(tiny_gpt2), "none")
    for (name, a), b in zip(ref.state_dict().items(), other.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not any(p.requires_grad for p in ref.parameters())
    with pytest.raises(ValueError, match="no reference_path"):
        ppo_models.build_policy_and_value(
            str(word_policy), "head", lora_spec=ppo_models.LoraSpec(4, 8, None), reference_path=str(tiny_gpt2)
        )


# --- plots -----------------------------------------------------------------------------------


def fake_point(update, kl, proxy_gain, gold_gain):
    figures = lambda g: {"gain_mean": g, "gain_se": 0.1 * update, "win_rate": 0.5}  # noqa: E731
    diag = {"response_length": 5.0 + update, "eos_rate": 0.9, "refusal_rate": 0.1}
    return {
        "update": update,
        "sqrt_kl": math.sqrt(kl),
        "proxy": figures(proxy_gain),
        "gold": {"rm-gold": figures(gold_gain)},
        "diagnostics": {"policy": diag, "reference": {**diag, "response_length": 5.0}},
    }


def test_ppo_figures_have_the_panels_and_the_data():
    history = [
        {"update": u, **{k: 0.1 * u for keys in plots.PPO_PANELS.values() for k in keys}, "val/clipfrac": 0.5}
        for u in (1, 2, 3)
    ]
    fig = plots.ppo_training_figure(history)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == list(plots.PPO_PANELS)
    clip = fig.axes[titles.index("clip fractions")]
    assert [list(line.get_ydata()) for line in clip.get_lines()] == [
        pytest.approx([0.1, 0.2, 0.3]),
        [0.5, 0.5, 0.5],
    ]
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]

    points = [fake_point(1, 0.25, 0.2, 0.1), fake_point(2, 1.0, 0.5, -0.2)]
    fig = plots.overoptimization_figure(points)
    (ax,) = fig.axes
    assert ax.get_title() == "gain over the reference vs sqrt(KL)"
    proxy, gold = ax.containers
    assert list(proxy.lines[0].get_xdata()) == [0.5, 1.0] and list(proxy.lines[0].get_ydata()) == [0.2, 0.5]
    assert list(gold.lines[0].get_ydata()) == [0.1, -0.2] and gold.get_label() == "gold rm-gold"
    bars = proxy.lines[2][0].get_segments()  # the error bars: gain ± gain_se
    assert [y for seg in bars for y in (seg[0][1], seg[1][1])] == pytest.approx([0.1, 0.3, 0.3, 0.7])

    fig = plots.diagnostics_figure(points)
    assert [ax.get_title() for ax in fig.axes] == ["response length", "eos rate", "refusal rate"]
    pol, ref = fig.axes[0].get_lines()
    assert list(pol.get_ydata()) == [6.0, 7.0] and list(ref.get_ydata()) == [5.0, 5.0]


def test_reward_model_figures_and_folder_detection(tmp_path):
    calibration = [
        {"bin": "0.50-0.60", "pairs": 10, "confidence": 0.55, "accuracy": 0.6},
        {"bin": "0.90-1.00", "pairs": 30, "confidence": 0.95, "accuracy": 0.9},
    ]
    log = [
        {"step": 10, "loss": 0.69, "accuracy": 0.5},
        {"step": 20, "loss": 0.4, "accuracy": 0.8},
        {"step": 20, "train_runtime": 3.0},
    ]
    metrics = {"eval": {"calibration": calibration, "expected_calibration_error": 0.04}, "log_history": log}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    figs = plots.figures_for(tmp_path)
    (ax,) = figs["calibration.png"].axes
    assert ax.get_title() == "reliability (ECE 0.040)"
    diagonal, model = ax.get_lines()
    assert list(model.get_xdata()) == [0.55, 0.95] and list(model.get_ydata()) == [0.6, 0.9]
    loss_ax, acc_ax = figs["training.png"].axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("training loss", "training accuracy")
    assert list(loss_ax.get_lines()[0].get_ydata()) == [0.69, 0.4]
    assert list(acc_ax.get_lines()[0].get_xdata()) == [10, 20]
    assert sorted(p.name for p in plots.write_plots(tmp_path)) == ["calibration.png", "training.png"]


def test_a_plotting_error_is_a_warning(tmp_path, capsys):
    plots.plot_safely(tmp_path)  # an empty folder: nothing to plot
    assert "[plots] warning" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text("not json\n")
    plots.plot_safely(tmp_path)
    assert "JSONDecodeError" in capsys.readouterr().err


def test_best_of_n_equals_the_mean_over_every_subset():
    import itertools

    proxy = [0.3, -1.0, 2.0, 0.3, 0.9]
    gold = [1.0, 4.0, -2.0, 0.5, 3.0]
    for n in range(1, 6):
        subsets = list(itertools.combinations(range(5), n))
        # the proxy's pick in each subset; of tied draws the later one, as in best_of_n's stable sort
        picks = [max(s, key=lambda j: (proxy[j], j)) for s in subsets]
        naive = sum(gold[j] for j in picks) / len(subsets)
        assert ppo_eval.best_of_n(proxy, gold, n) == pytest.approx(naive)
    assert ppo_eval.best_of_n(proxy, gold, 1) == pytest.approx(sum(gold) / 5)
    assert ppo_eval.best_of_n_kl(1) == 0.0 and ppo_eval.best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)
    with pytest.raises(ValueError, match="n <= N"):
        ppo_eval.best_of_n(proxy, gold, 6)
