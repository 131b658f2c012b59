"""The benchmark path: reward_modeling.py's chunked training step against TRL's, and the bench/ scripts."""

import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HH_HARMLESS_TEST, ROOT, learnable_pairs

import cmdline
import hh_data
import reward_format
import reward_modeling

sys.path.insert(0, str(ROOT / "bench"))


def brute_force_cost(widths, max_tokens, cost):
    """Cheapest split of the sorted pairs into contiguous chunks, by trying every set of cuts."""
    n, best = len(widths), float("inf")
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        total = 0
        for a, b in itertools.pairwise(cuts):
            tokens = 2 * (b - a) * widths[a]
            if tokens > max_tokens and b - a > 1:
                break
            total += tokens + cost
        else:
            best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_plan_chunks_is_an_optimal_partition(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 300) for _ in range(rng.randint(1, 11))]
    chunks = reward_modeling.plan_chunks(lengths, max_tokens=1200, chunk_cost_tokens=64)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for c in chunks:
        assert len(c) == 1 or 2 * len(c) * max(lengths[i] for i in c) <= 1200
    cost = sum(2 * len(c) * max(lengths[i] for i in c) + 64 for c in chunks)
    assert cost == brute_force_cost(sorted(lengths, reverse=True), 1200, 64)


def test_plan_chunks_single_long_pair_and_huge_budget():
    assert reward_modeling.plan_chunks([900, 10], max_tokens=100) == [[0], [1]]
    assert reward_modeling.plan_chunks([7, 7, 7], max_tokens=10**6) == [[0, 1, 2]]


def make_trainer(model_dir, tmp_path, chunk_tokens, margins):
    script_args, training_args, model_args = cmdline.parse_args(
        (reward_modeling.ScriptArguments, reward_modeling.RewardConfig, reward_modeling.ModelConfig),
        [
            f"--model_name_or_path={model_dir}",
            f"--output_dir={tmp_path}",
            "--per_device_train_batch_size=12",
            "--report_to=none",
            f"--train_chunk_tokens={chunk_tokens}",
            *(["--center_rewards_coefficient=0.1"] if margins else []),
        ],
        reward_modeling.RENAMED_FLAGS,
        reward_modeling.default_flags(),
    )
    torch.manual_seed(0)
    _, tok, model, info = reward_modeling.load_backbone(model_args, training_args)
    pairs, _ = hh_data.clean_preference_rows(learnable_pairs(12, seed=3), "test")
    fmt = reward_format.reward_format_for(tok, model, pairs, 64)
    rows, _ = reward_modeling.tokenize_pairs(pairs, tok, fmt)
    if margins:
        rows["margin"] = [0.1 * i for i in range(len(pairs))]
    from datasets import Dataset

    trainer = reward_modeling.build_trainer(
        script_args, training_args, model_args, model, tok, info, Dataset.from_dict(rows), None
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(pairs))])
    return trainer, batch


@pytest.mark.parametrize("backbone", ["tiny_distilbert", "tiny_gpt2"])
@pytest.mark.parametrize("margins", [False, True], ids=["plain", "margin+center"])
def test_chunked_step_matches_trls_single_pass(backbone, margins, request, tmp_path):
    """Same loss, same gradients and same logged metrics as TRL's one padded pass over the batch."""
    model_dir = request.getfixturevalue(backbone)
    results = []
    for chunk_tokens in (0, 200):  # 200 tokens: several chunks of a few pairs each
        trainer, batch = make_trainer(model_dir, tmp_path, chunk_tokens, margins)
        trainer.create_optimizer_and_scheduler(num_training_steps=1)
        trainer.current_gradient_accumulation_steps = 1  # set by train() at each optimizer step
        loss = trainer.training_step(trainer.model, dict(batch))
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        results.append((loss, grads, metrics))
    (loss0, grads0, metrics0), (loss1, grads1, metrics1) = results
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(reward_modeling.plan_chunks(torch.maximum(lengths[:12], lengths[12:]).tolist(), 200)) > 2
    assert torch.allclose(loss0, loss1, atol=1e-6)
    assert grads0.keys() == grads1.keys() and len(grads0) > 4
    for name in grads0:
        assert torch.allclose(grads0[name], grads1[name], atol=1e-6, rtol=1e-4), name
    assert metrics0.keys() == metrics1.keys()
    for key in metrics0:
        assert metrics0[key] == pytest.approx(metrics1[key], abs=1e-5), key


@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_HARMLESS_TEST}")
def test_rm_bench_trains_the_peers_pairs(tiny_distilbert, capsys):
    import rm_bench

    rm_bench.main(
        [
            f"--model={tiny_distilbert}",
            "--rows=0:40",
            "--batch_size=16",
            "--max_length=256",
            "--no_peak",
            "--max_steps=2",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["pairs_tokenized_as_peer"] == out["pairs_in"] == 40
    assert out["pairs_dropped_for_length"] > 0 and out["pairs_trained"] == 32
    assert out["padding_frac"] < out["padding_frac_trl_batching"]
    assert out["real_tokens"] == sum(out["per_step_real_tokens"]) and out["real_tokens_per_s"] > 0
    assert all(0.6 < loss < 0.8 for loss in out["step_loss"])


def test_compare_ratios_are_medians_of_per_pair_ratios():
    """compare_runs, where the README's ratios come from, against numbers worked out by hand: per pair
    ours / peer, a pair missing a value left out, the median of the rest; the peer's model GFLOP/s
    are ours scaled by the time ratio, for the pairs that trained the same work only."""
    import compare

    peer = [{"episodes_per_s": 4.0, "peak_rss_mib": 1000}, {"episodes_per_s": 5.0, "peak_rss_mib": 1100}]
    peer.append({"episodes_per_s": 4.0, "peak_rss_mib": 1000})
    ours = [{"episodes_per_s": 6.0, "peak_rss_mib": 700}, {"episodes_per_s": 9.0, "peak_rss_mib": 770}]
    ours.append({"episodes_per_s": None, "peak_rss_mib": 800})
    out = compare.compare_runs(compare.parse_args(["ppo"]), peer, ours, peak=None)
    eps = out["episodes_per_s"]
    assert eps["ratio_ours_over_peer"] == [1.5, 1.8]
    assert (eps["median_ratio"], eps["min_ratio"], eps["max_ratio"]) == (1.65, 1.5, 1.8)
    assert out["peak_rss_mib"]["median_ratio"] == 0.7  # of 0.7, 0.7, 0.8

    def rm_run(tokens, seconds, real_tokens=1000):
        return {
            "real_tokens_per_s": tokens,
            "pairs_per_s": 1.0,
            "peak_rss_mib": 100,
            "pairs_trained": 32,
            "real_tokens": real_tokens,
            "gflops_model_real": 100.0,
            "train_s": seconds,
        }

    out = compare.compare_runs(
        compare.parse_args(["rm"]),
        [rm_run(100, 40.0), rm_run(100, 50.0, real_tokens=999)],
        [rm_run(400, 10.0), rm_run(500, 10.0)],
        peak=None,
    )
    assert out["real_tokens_per_s"]["ratio_ours_over_peer"] == [4.0, 5.0]
    assert out["same_work"] is False  # the second pair trained other tokens
    assert out["gflops_model_real"]["peer"] == [25.0]  # 100 GFLOP/s x 10 s / 40 s


@pytest.mark.parametrize("ours_args", ["--bf16", ""], ids=["bf16", "fp32"])
def test_compare_runs_the_peer_in_our_precision(ours_args, monkeypatch, capsys):
    """The peer runs `--mixed_precision=bf16` exactly when ours runs bf16, and the JSON reports what each
    run said it ran (the harnesses are replaced by fakes that echo their command's precision)."""
    import compare

    commands = []

    def fake_run(role, cmd, env, timeout):
        commands.append((role, cmd))
        bf16 = "--mixed_precision=bf16" in cmd or "--bf16" in cmd
        settings = {"mixed_precision": "bf16" if bf16 else "no"} if role == "peer" else {}
        return {
            "episodes_per_s": 2.0,
            "peak_rss_mib": 100,
            "bf16": bf16,
            "settings": settings,
            "other_procs_cpu_cores": 0,
        }

    monkeypatch.setattr(compare, "run_one", fake_run)
    monkeypatch.setattr(compare, "wait_quiet", lambda *a: (0.0, 0.0))
    monkeypatch.setattr(compare, "ensure_peer_venv", lambda: "peer-python")
    compare.main(["ppo", "--preset=tiny", "--pairs=2", f"--ours_args={ours_args}"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    peer_cmds = [cmd for role, cmd in commands if role == "peer"]
    assert len(peer_cmds) == 2 and len(commands) == 4
    want = "bf16" if ours_args else "fp32"
    assert all(("--mixed_precision=bf16" in cmd) == (want == "bf16") for cmd in peer_cmds)
    assert out["precision"] == {"peer": [want, want], "ours": [want, want]}
    assert out["peer_cmd"].endswith("--mixed_precision=bf16") == (want == "bf16")


def test_compare_refuses_variants_of_two_precisions():
    import compare

    with pytest.raises(SystemExit, match="bf16 and float32"):
        compare.peer_precision_flags(["--bf16", "--lora"])
    assert compare.peer_precision_flags(["--bf16", "--bf16 --lora"]) == ["--mixed_precision=bf16"]


def test_scaling_runs_both_sides_on_the_same_work_and_plots_the_file(monkeypatch, tmp_path, capsys):
    """Every grid point runs the peer and ours with the same size, response length, episodes per update
    and updates (the harnesses are fakes that echo them), records the ratios ours / peer, and the plot
    draws one line per side and episodes setting from the file."""
    import compare
    import scaling

    def fake_run(role, cmd, env, timeout):
        flags = dict(a.split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
        episodes = int(flags.get("--batch_size") or flags["--per_device_train_batch_size"])
        assert int(flags["--total_episodes"]) == 2 * episodes
        length = int(flags["--response_length"])
        s = length * episodes / (100.0 if role == "ours" else 50.0)  # ours twice as fast
        out = {"s_per_update_median": s, "episodes_per_s": episodes / s, "peak_rss_mib": 100 + length}
        out["bf16"] = "--bf16" in cmd
        out["settings"] = {"mixed_precision": "bf16" if "--mixed_precision=bf16" in cmd else "no"}
        if role == "ours":
            out["phases_median_s"] = {
                "generate": s / 2,
                "score": 0.0,
                "logprob_forwards": s / 4,
                "train": s / 4,
            }
        return out

    monkeypatch.setattr(compare, "run_one", fake_run)
    monkeypatch.setattr(compare, "wait_quiet", lambda *a: (0.0, 0.0))
    monkeypatch.setattr(compare, "ensure_peer_venv", lambda: "peer-python")
    out = tmp_path / "scaling.jsonl"
    argv = ["--presets=tiny,small", "--response_lengths=48,128", "--episodes=16,64", "--updates=2"]
    scaling.main([*argv, "--bf16", f"--json_out={out}"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and {
        (r["preset"], r["response_length"], r["episodes_per_update"]) for r in rows
    } == set(itertools.product(["tiny", "small"], [48, 128], [16, 64]))
    for r in rows:
        assert r["ratio_ours_over_peer"]["episodes_per_s"] == 2.0
        assert r["ratio_ours_over_peer"]["s_per_update_median"] == 0.5
        assert r["ours"]["precision"] == r["peer"]["precision"] == "bf16"
        assert r["ours"]["phases_median_s"]["generate"] == r["ours"]["s_per_update_median"] / 2
    capsys.readouterr()
    fig = scaling.scaling_figure(rows)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == [
        "ours, 16 episodes",
        "ours, 64 episodes",
        "peer, 16 episodes",
        "peer, 64 episodes",
    ]
    assert list(lines[2].get_ydata()) == [48 * 16 / 50.0, 128 * 16 / 50.0]
    scaling.main([f"--json_out={out}", "--plot", f"--plot_out={tmp_path / 'scaling.png'}"])
    assert (tmp_path / "scaling.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_HARMLESS_TEST}")
def test_gpu_check_dry_run_runs_a_tiny_version_of_every_step():
    """bench/gpu_check.sh --dry-run on the CPU: every step prints its command and passes, and each
    result file gets its line (the peer in bf16 next to ours in bf16; the reward model's tokens/s)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = re.findall(r"\[gpu_check\] (\S+): exit 0 after", proc.stderr)
    assert steps == ["tests", "compare-tiny", "ppo-gpt2-124m", "rm-build", "rm-epoch", "rm-record"]
    out = Path(re.search(r"results in (\S+)", proc.stderr).group(1))
    compare_line = json.loads((out / "gpu-compare.jsonl").read_text().splitlines()[-1])
    assert compare_line["precision"] == {"peer": ["bf16"], "ours": ["bf16"]}
    ppo_line = json.loads((out / "gpu-ppo.jsonl").read_text())
    assert ppo_line["bf16"] and ppo_line["num_updates"] == 1 and ppo_line["device"] == "cpu"
    rm_line = json.loads((out / "gpu-rm.jsonl").read_text())
    assert rm_line["train_pairs"] == 32 and rm_line["train_real_tokens"] > 0


def test_bf16_check_reports_a_self_consistent_bf16_and_zero_kl_against_itself(tiny_gpt2, tmp_path, capsys):
    import bf16_check
    from conftest import write_jsonl

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"say something kind {i}"} for i in range(4)])
    args = [f"--model={tiny_gpt2}", f"--reference={tiny_gpt2}", f"--prompts={prompts}", "--n=4"]
    result = bf16_check.main(args + ["--response_length=6", f"--json_out={tmp_path / 'out.jsonl'}"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert json.loads((tmp_path / "out.jsonl").read_text()) == result
    assert result["episodes"] == 4 and result["response_tokens"] > 0
    # the training forward reproduces the no-grad one bit for bit, so PPO's first ratio is exactly 1
    assert result["bf16_train_forward_equals_phase2"] and result["bf16_first_ratio_max_abs_log"] == 0.0
    assert 0 < result["logprob_abs_err_per_token_mean"] < 0.1
    assert result["kl_k1_per_response_mean"] == {"fp32": 0.0, "bf16": 0.0}  # the same model twice


def test_score_policies_pairs_the_same_prompts_and_seeds(word_policy, tiny_gpt2, kind_rm, tmp_path, capsys):
    import score_policies
    from conftest import write_jsonl

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"tell me about apples {i}"} for i in range(6)])
    argv = [f"--reward_model={kind_rm}", f"--prompts={prompts}", "--n=6", "--seeds=2", "--batch_size=4"]
    policies = [f"base={word_policy}", f"again={word_policy}", f"random={tiny_gpt2}"]
    result = score_policies.main(argv + ["--response_length=6", *policies])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["prompts"] == 6 and len(result["score_mean_per_seed"]["base"]) == 2
    # the same policy, prompts and seeds: the same samples, so no difference and only ties
    assert result["vs_base"]["again"] == {"mean": 0.0, "standard_error": 0.0, "win_rate": 0.5}
    assert result["vs_base"]["random"]["mean"] != 0.0


def test_best_of_n_curve_rises_with_n_and_a_gold_equal_to_the_proxy_agrees(
    word_policy, kind_rm, kind_data, tmp_path, capsys
):
    import best_of_n

    argv = [
        f"--policy={word_policy}", f"--reward_model={kind_rm}", f"--gold_reward_model={kind_rm}",
        f"--query_dataset={kind_data}", "--query_split=test", "--prompts=6", "--n=4", "--response_length=6",
        "--batch_size=8", f"--json_out={tmp_path / 'bon.jsonl'}",
    ]  # fmt: skip
    result = best_of_n.main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    curve = result["curve"]
    assert [row["n"] for row in curve] == [1, 2, 4] and result["prompts"] == 6
    proxy = [row["proxy"]["gain_mean"] for row in curve]
    # best of 1 is the policy itself; the proxy's best of more is better by the proxy, and more so with n
    assert proxy[0] == 0.0 and 0 < proxy[1] < proxy[2]
    # the same model as gold: it agrees with the proxy's choice exactly
    assert [row[str(kind_rm)]["gain_mean"] for row in curve] == proxy
    assert curve[2]["kl"] == pytest.approx(math.log(4) - 0.75, abs=1e-4)
    # --by_subset: the curve on each subset folder's prompts; with equal halves, their mean is the whole.
    from conftest import kind_pairs, write_jsonl

    for name, seed in (("a", 3), ("b", 4)):
        write_jsonl(tmp_path / "sub" / name / "test.jsonl", kind_pairs(5, seed))
    argv[3:5] = [f"--query_dataset={tmp_path / 'sub'}", "--data_dir=a[:3],b[2:5]"]
    split = best_of_n.main(argv + ["--by_subset"])
    assert list(split["by_subset"]) == ["a", "b"] and split["by_subset"]["b"]["prompts"] == 3
    for k, row in enumerate(split["curve"]):
        halves = [split["by_subset"][name]["curve"][k]["proxy"]["gain_mean"] for name in ("a", "b")]
        assert row["proxy"]["gain_mean"] == pytest.approx(sum(halves) / 2, abs=1e-4)
    assert split["by_subset"]["a"]["curve"][2]["proxy"]["gain_mean"] > 0


def test_estimator_quality_summary_is_the_mean_over_seeds_with_its_standard_error():
    import estimator_quality

    def run(estimator, seed, kl, proxy, gold, cpu):
        figures = {"gain_mean": gold, "length_controlled_gain_mean": gold / 2}
        return {
            "estimator": estimator, "seed": seed, "kl_mean": kl, "proxy": {"gain_mean": proxy},
            "gold": {"g": figures}, "train_s": 10.0, "cpu_min": cpu,
        }  # fmt: skip

    runs = [
        run("gae", 0, 1.0, 0.2, 0.1, 2.0),
        run("gae", 1, 3.0, 0.4, 0.3, 4.0),
        run("grpo", 0, 2.0, 0.5, 0.6, 3.0),
    ]
    got = estimator_quality.summarize(runs)
    gae = got["gae"]
    assert gae["seeds"] == [0, 1] and gae["gold"] == "g"
    assert gae["kl"] == pytest.approx(2.0) and gae["kl_se"] == pytest.approx(1.0)  # sd sqrt(2) / sqrt(2)
    assert gae["gold_gain"] == pytest.approx(0.2) and gae["gold_gain_se"] == pytest.approx(0.1)
    assert gae["gold_gain_length_controlled"] == pytest.approx(0.1)
    assert gae["gold_gain_per_kl"] == pytest.approx(0.1) and gae["gold_gain_per_cpu_min"] == pytest.approx(
        0.2 / 3
    )
    assert got["grpo"]["gold_gain_se"] is None and got["grpo"]["gold_gain_per_kl"] == pytest.approx(0.3)


def test_estimator_quality_runs_each_estimator_and_seed_on_equal_settings(
    word_policy, kind_rm, gpt2_rm, kind_data, tmp_path, capsys
):
    import estimator_quality

    config = tmp_path / "ppo.yaml"
    config.write_text(
        f"model_name: {word_policy}\nreward_model: {kind_rm}\nquery_dataset: {kind_data}\nbatch_size: 16\n"
        "mini_batch_size: 8\nsteps: 32\nresponse_length: 6\nlearning_rate: 3.0e-3\neval_samples: 6\n"
        "sample_every: 0\nnum_samples: 0\n"
    )
    argv = [
        str(config),
        "--estimators=gae,grpo",
        "--seeds=0",
        f"--out_root={tmp_path / 'runs'}",
        "--eval_seeds=2",
    ]
    summary = estimator_quality.main(argv + [f"--gold_reward_model={gpt2_rm}"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    runs = [line for line in lines if line["harness"] == "estimator_quality (run)"]
    assert lines[-1] == summary and [r["estimator"] for r in runs] == ["gae", "grpo"]
    for r in runs:
        assert r["updates"] == 2 and r["episodes"] == 32 and r["cpu_min"] > 0
        assert "--num_generations=4" in r["cmd"] and r["proxy"]["length_controlled_gain_mean"] is not None
        saved = json.loads((tmp_path / "runs" / f"{r['estimator']}-s0" / "eval.json").read_text())
        assert (
            r["kl_mean"] == saved["kl_mean"]
            and r["gold"][str(gpt2_rm)]["gain_mean"] == (saved["gold"][str(gpt2_rm)]["gain_mean"])
        )
    assert set(summary["estimators"]) == {"gae", "grpo"}
    with pytest.raises(SystemExit):
        estimator_quality.parse_args([str(config), "--out_root=x", "--seed=3"])


def write_eval_run(folder, rng, shift, n=6, k=3, update=20, recorded=None, **flags):
    """A ppo.py output folder with one evaluation: the policy's draws `shift` tokens longer and
    0.02 x shift better than the reference's, and a judge paying 0.01 per token within a cell;
    `recorded`: more of what eval.json records (prompt_rows, proxy_risk, texts, eos)."""

    ref_len = rng.integers(20, 40, (n, k)).astype(float)
    pol_len = ref_len + shift + rng.integers(-5, 6, (n, k))
    prompt = rng.normal(size=(n, 1))
    ref = prompt + 0.01 * ref_len + rng.normal(scale=0.1, size=(n, k))
    pol = prompt + 0.01 * pol_len + 0.02 * shift + rng.normal(scale=0.1, size=(n, k))

    def figures(p, r):
        return {
            "gain_mean": 0.0,
            "gain_se": 1.0,
            "win_rate": 0.5,
            "per_prompt": {"policy": p, "reference": r},
        }

    point = {
        "update": update, "prompts": n, "eval_seeds": k, "kl_mean": float(shift),
        "proxy": figures(pol.tolist(), ref.tolist()), "gold": {"g": figures((2 * pol).tolist(), ref.tolist())},
        "lengths": {"policy": pol_len.tolist(), "reference": ref_len.tolist()},
        "diagnostics": {side: {"response_length": 30.0} for side in ("policy", "reference")},
        **(recorded or {}),
    }  # fmt: skip
    folder.mkdir()
    (folder / "eval.json").write_text(json.dumps({**point, "points": [{**point, "update": 10}, point]}))
    args = {"query_dataset": "hh", "eval_data_dir": "harmless-base[1800:]", "eval_samples": n,
            "max_prompt_length": 128, "reward_model": "proxy", **flags}  # fmt: skip
    (folder / "args.json").write_text(json.dumps(args))
    return pol, ref, pol_len, ref_len


def test_pool_evals_pools_each_prompts_draws_over_runs_and_learns_length_within_runs(tmp_path, capsys):
    import numpy as np
    import pool_evals

    rng = np.random.default_rng(0)
    runs = [write_eval_run(tmp_path / f"s{s}", rng, shift) for s, shift in enumerate((0, 8, 16))]
    got = pool_evals.main([str(tmp_path / f"s{s}") for s in range(3)] + ["--label", "t"])
    assert json.loads(capsys.readouterr().out)["pooled"]["gold"]["g"]["gain_mean"] == pytest.approx(
        got["pooled"]["gold"]["g"]["gain_mean"]
    )
    pol = np.concatenate([r[0] for r in runs], axis=1)  # [prompt, run x seed]
    ref = np.concatenate([r[1] for r in runs], axis=1)
    gains = pol.mean(1) - ref.mean(1)
    proxy = got["pooled"]["proxy"]
    assert proxy["gain_mean"] == pytest.approx(gains.mean())
    assert proxy["gain_se"] == pytest.approx(gains.std(ddof=1) / np.sqrt(len(gains)))
    assert proxy["win_rate"] == pytest.approx((pol > ref).mean())
    assert got["draws_per_prompt"] == 9 and got["pooled"]["kl_mean"] == pytest.approx(8.0)
    assert [r["update"] for r in got["runs"]] == [20, 20, 20]
    # Naive reference: least squares of score on length plus one indicator per (run, prompt, side) cell.
    y = np.concatenate([np.ravel(a) for r in runs for a in (r[0], r[1])])
    x = np.concatenate([np.ravel(a) for r in runs for a in (r[2], r[3])])
    n, k = runs[0][0].shape
    design = np.column_stack([x, np.eye(6 * n)[np.repeat(np.arange(6 * n), k)]])
    slope = np.linalg.lstsq(design, y, rcond=None)[0][0]
    assert proxy["length_slope"] == pytest.approx(slope)
    pol_len = np.concatenate([r[2] for r in runs], axis=1)
    ref_len = np.concatenate([r[3] for r in runs], axis=1)
    lc = gains - slope * (pol_len.mean(1) - ref_len.mean(1))
    assert proxy["length_controlled_gain_mean"] == pytest.approx(lc.mean())
    # Cells pooled over runs would mistake the runs' longer and better policies for a judge paying
    # ~0.03 per token; learned within runs it is the 0.01 the judge pays.
    assert slope == pytest.approx(0.01, abs=0.004)
    # An earlier evaluation point, by --update.
    assert pool_evals.pool([str(tmp_path / "s0"), str(tmp_path / "s1")], update=10)["runs"][0]["update"] == 10
    # --vs: runs 1 and 2 against run 0, paired per prompt.
    vs = pool_evals.pool([str(tmp_path / "s1"), str(tmp_path / "s2")], vs=[str(tmp_path / "s0")])
    mine = np.concatenate([r[0] for r in runs[1:]], axis=1).mean(1) - np.concatenate(
        [r[1] for r in runs[1:]], axis=1
    ).mean(1)
    diff = mine - (runs[0][0].mean(1) - runs[0][1].mean(1))
    assert vs["difference"]["proxy"]["gain_mean"] == pytest.approx(diff.mean())
    assert vs["difference"]["proxy"]["gain_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(len(diff)))
    assert vs["vs"]["draws_per_prompt"] == 3 and vs["pooled"]["proxy"]["gain_mean"] == pytest.approx(
        mine.mean()
    )
    assert vs["vs"]["runs"][0]["update"] == 20  # the last evaluation, unless --vs_update names another
    again = pool_evals.pool([str(tmp_path / "s1")], vs=[str(tmp_path / "s0")], vs_update=10)
    assert again["vs"]["runs"][0]["update"] == 10 and again["runs"][0]["update"] == 20


def test_pool_evals_refuses_runs_that_did_not_score_the_same_prompts(tmp_path):
    import numpy as np
    import pool_evals

    rng = np.random.default_rng(1)
    write_eval_run(tmp_path / "a", rng, 0)
    write_eval_run(tmp_path / "b", rng, 4, eval_data_dir="helpful-base[1800:]")
    write_eval_run(tmp_path / "c", rng, 4)
    with pytest.raises(SystemExit, match=r"differ in --eval_data_dir.*helpful-base\[1800:\]"):
        pool_evals.pool([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(SystemExit, match=r"differ in --eval_data_dir"):
        pool_evals.pool([str(tmp_path / "a"), str(tmp_path / "c")], vs=[str(tmp_path / "b")])
    with pytest.raises(SystemExit, match=r"no evaluation after update 30 \(it has: 10, 20\)"):
        pool_evals.pool([str(tmp_path / "a"), str(tmp_path / "c")], update=30)
    with pytest.raises(SystemExit, match="missing/eval.json does not exist"):
        pool_evals.pool([str(tmp_path / "a"), str(tmp_path / "missing")])
    write_eval_run(tmp_path / "d", rng, 4, n=5)
    with pytest.raises(SystemExit, match="differ in --eval_samples"):
        pool_evals.pool([str(tmp_path / "a"), str(tmp_path / "d")])


def test_pool_evals_by_router_splits_by_the_proxys_risk_with_each_sides_diagnostics(tmp_path, capsys):
    import numpy as np
    import pool_evals

    rng = np.random.default_rng(3)
    n, k = 4, 2
    risk = [0.9, 0.2, 0.5, 0.49]  # risky, benign, risky (the threshold is inclusive), benign
    rows = [["hh/harmless-base/test.jsonl.gz", 1800 + i] for i in range(n)]

    def recorded(refuse_on: set[int]) -> dict:
        """The policy refuses every draw of the prompts in `refuse_on` and ends with EOS on odd prompts;
        the reference never refuses and always ends."""
        texts = {
            "policy": [
                ["I'm sorry, I can't help." if i in refuse_on else "Sure: step one."] * k for i in range(n)
            ],
            "reference": [["Here is how."] * k for _ in range(n)],
        }
        eos = {"policy": [[i % 2 == 1] * k for i in range(n)], "reference": [[True] * k for _ in range(n)]}
        return {"prompt_rows": rows, "proxy_risk": risk, "texts": texts, "eos": eos}

    runs = [
        write_eval_run(tmp_path / f"s{s}", rng, 4 * s, n=n, k=k, recorded=recorded({0} if s else {0, 1}))
        for s in range(2)
    ]
    got = pool_evals.main([str(tmp_path / "s0"), str(tmp_path / "s1"), "--by_router"])
    assert got["routes"] == ["risky", "benign", "risky", "benign"]
    gains = np.concatenate([r[0] for r in runs], axis=1).mean(1) - np.concatenate(
        [r[1] for r in runs], 1
    ).mean(1)
    proxy = got["pooled"]["proxy"]["by_router"]
    assert proxy["risky"]["prompts"] == 2 and proxy["risky"]["gain_mean"] == pytest.approx(
        gains[[0, 2]].mean()
    )
    assert proxy["benign"]["gain_se"] == pytest.approx(gains[[1, 3]].std(ddof=1) / np.sqrt(2))
    assert "by_subset" not in got["pooled"]["proxy"]
    # Diagnostics pooled over both runs' draws: prompt 0 refused in both, prompt 1 in one of two.
    diag = got["pooled"]["diagnostics"]
    assert diag["policy"]["refusal_rate"] == pytest.approx(3 / 8) and diag["reference"]["refusal_rate"] == 0
    assert diag["by_router"]["risky"]["policy"]["refusal_rate"] == pytest.approx(1 / 2)
    assert diag["by_router"]["benign"]["policy"]["refusal_rate"] == pytest.approx(1 / 4)
    assert diag["policy"]["eos_rate"] == pytest.approx(1 / 2)  # the odd prompts: benign
    assert diag["by_router"]["benign"]["policy"]["eos_rate"] == 1.0
    assert diag["by_router"]["risky"]["policy"]["eos_rate"] == 0.0
    assert diag["by_router"]["risky"]["reference"]["eos_rate"] == 1.0
    pol_len = np.concatenate([r[2] for r in runs], axis=1)
    assert diag["by_router"]["risky"]["policy"]["response_length"] == pytest.approx(pol_len[[0, 2]].mean())
    assert "refusals 0.500 vs 0.000" in capsys.readouterr().err
    # --vs splits the paired difference by route too.
    vs = pool_evals.pool([str(tmp_path / "s1")], vs=[str(tmp_path / "s0")], by_router=True)
    diff = (runs[1][0].mean(1) - runs[1][1].mean(1)) - (runs[0][0].mean(1) - runs[0][1].mean(1))
    assert vs["difference"]["proxy"]["by_router"]["risky"]["gain_mean"] == pytest.approx(diff[[0, 2]].mean())
    # Runs that scored other rows, or recorded no router, are refused.
    other = recorded(set()) | {"prompt_rows": rows[::-1]}
    write_eval_run(tmp_path / "moved", rng, 0, n=n, k=k, recorded=other)
    with pytest.raises(SystemExit, match=r"differ in the evaluation rows \(prompt_rows"):
        pool_evals.pool([str(tmp_path / "s0"), str(tmp_path / "moved")])
    write_eval_run(tmp_path / "plain", rng, 0, n=n, k=k)
    with pytest.raises(SystemExit, match="plain/eval.json has no proxy_risk: --by_router needs .* routed"):
        pool_evals.pool([str(tmp_path / "plain")], by_router=True)
    assert "diagnostics" not in pool_evals.pool([str(tmp_path / "plain")])["pooled"]


def test_pool_evals_by_subset_splits_the_prompts_by_the_folder_they_came_from(tmp_path):
    import gzip

    import numpy as np
    import pool_evals

    for subset, n in (("x", 5), ("y", 3)):  # hh-rlhf's layout: <subset>/test.jsonl.gz
        (tmp_path / "hh" / subset).mkdir(parents=True)
        with gzip.open(tmp_path / "hh" / subset / "test.jsonl.gz", "wt") as f:
            for i in range(n):
                q = f"\n\nHuman: question {subset}{i}\n\nAssistant:"
                f.write(json.dumps({"chosen": q + " kind", "rejected": q + " curt"}) + "\n")
    flags = {"query_dataset": str(tmp_path / "hh"), "eval_data_dir": "x[2:],y[:1]"}  # x2 x3 x4 y0
    rng = np.random.default_rng(2)
    runs = [write_eval_run(tmp_path / f"s{s}", rng, 4 * s, n=4, **flags) for s in range(2)]
    got = pool_evals.pool([str(tmp_path / "s0"), str(tmp_path / "s1")], by_subset=True)
    pol = np.concatenate([r[0] for r in runs], axis=1)  # [prompt, run x seed]
    ref = np.concatenate([r[1] for r in runs], axis=1)
    gains, gold_gains = pol.mean(1) - ref.mean(1), (2 * pol).mean(1) - ref.mean(1)  # the gold scores 2 x
    proxy, gold = got["pooled"]["proxy"]["by_subset"], got["pooled"]["gold"]["g"]["by_subset"]
    assert list(gold) == ["x", "y"] and gold["x"]["prompts"] == 3 and gold["y"]["prompts"] == 1
    assert proxy["x"]["gain_mean"] == pytest.approx(gains[:3].mean())
    assert proxy["x"]["gain_se"] == pytest.approx(gains[:3].std(ddof=1) / np.sqrt(3))
    assert proxy["y"]["gain_mean"] == pytest.approx(gains[3]) and proxy["y"]["gain_se"] == 0.0
    assert gold["x"]["gain_mean"] == pytest.approx(gold_gains[:3].mean())
    assert gold["x"]["win_rate"] == pytest.approx((2 * pol[:3] > ref[:3]).mean())
    # --vs splits the paired difference by subset too: run 1 against run 0.
    vs = pool_evals.pool([str(tmp_path / "s1")], vs=[str(tmp_path / "s0")], by_subset=True)
    diff = (runs[1][0].mean(1) - runs[1][1].mean(1)) - (runs[0][0].mean(1) - runs[0][1].mean(1))
    got_x = vs["difference"]["proxy"]["by_subset"]["x"]
    assert got_x["prompts"] == 3 and got_x["gain_mean"] == pytest.approx(diff[:3].mean())
    assert got_x["gain_se"] == pytest.approx(diff[:3].std(ddof=1) / np.sqrt(3))
    assert vs["difference"]["proxy"]["gain_mean"] == pytest.approx(diff.mean())
    # ppo.py records each prompt's subset where there are several: read from eval.json, no data needed.
    recorded = {"subsets": ["y", "x", "x", "y"]}
    for s in range(2):
        write_eval_run(tmp_path / f"r{s}", rng, 4 * s, n=4, recorded=recorded, query_dataset="gone")
    split = pool_evals.pool([str(tmp_path / "r0"), str(tmp_path / "r1")], by_subset=True)
    assert {k: v["prompts"] for k, v in split["pooled"]["proxy"]["by_subset"].items()} == {"y": 2, "x": 2}
    write_eval_run(tmp_path / "t0", rng, 0, eval_data_dir=None)
    write_eval_run(tmp_path / "t1", rng, 0, eval_data_dir=None)
    with pytest.raises(SystemExit, match="needs runs evaluated on an explicit --eval_data_dir"):
        pool_evals.pool([str(tmp_path / "t0"), str(tmp_path / "t1")], by_subset=True)


def linear_forward_flops(model, **inputs) -> float:
    """2 m n k summed over every Linear call of one forward, counted by hooks: the naive reference."""
    total = [0.0]

    def count(module, args, output):
        total[0] += 2.0 * args[0].numel() * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model(**inputs)
    for h in hooks:
        h.remove()
    return total[0]


def test_op_shares_counts_a_reward_models_matmul_flops_exactly(tiny_distilbert, tmp_path, capsys):
    """bench/op_shares.py: the FLOPs it reads from the profiler's matrix-product shapes equal three
    times the forward's Linear FLOPs counted by hooks (forward, input and weight gradients: every weight
    trains, attention is the fused kernel), and the shares of the pass add up to one."""
    import op_shares
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "shares.jsonl"
    result = op_shares.main(
        ["--task", "reward", "--model", str(tiny_distilbert), "--rows", "4", "--length", "24", "--padded",
         "--attn_implementation", "sdpa", "--repeats", "1", "--threads", "1", "--json_out", str(out)]
    )  # fmt: skip
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_distilbert), num_labels=1)
    ids = torch.randint(1000, 20000, (4, 24))
    expected = 3 * linear_forward_flops(model, input_ids=ids)
    assert result["matmul_flop"] == pytest.approx(expected, rel=1e-6)
    assert sum(result["shares"].values()) == pytest.approx(1.0, abs=0.005)
    assert result["shares"]["matrix products"] > 0 and result["s_per_pass_median"] > 0
    assert json.loads(out.read_text())["task"] == "reward"
    with pytest.raises(SystemExit):
        op_shares.parse_args(["--task", "lora", "--response", "30", "--length", "24"])
    assert "--response 30: the lora task needs it below --length (24)" in capsys.readouterr().err
