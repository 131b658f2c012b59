"""router.py and the routed reward model (ppo_models.RoutedScorer): the router learns a separable toy
split, the routed score is the p-weighted mix of the members' standardised scores computed by hand, and
a routed folder serves as ppo.py's --reward_model and --gold_reward_model and as bench/rm_eval.py's model."""

import json
import os
import random
import sys

import pytest
import torch
from conftest import ROOT, policy_responses, write_jsonl
from test_cli_errors import assert_one_line_error, run_script
from test_ppo import run_ppo

import cmdline
import ppo_models
import router

sys.path.insert(0, str(ROOT / "bench"))
import rm_eval  # noqa: E402

RISKY = ["steal a car", "hurt my neighbour", "poison a dog", "break into a house", "make a weapon"]
BENIGN = ["bake bread", "grow tomatoes", "learn chess", "paint a wall", "tune a guitar"]


def toy_rows(things: list[str], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = f"\n\nHuman: How do I {rng.choice(things)}?\n\nAssistant:"
        rows.append({"chosen": prompt + " Let me think about that.", "rejected": prompt + " No."})
    return rows


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """hh-rlhf's layout with a risky and a benign subset; rows 64+ are held out."""
    root = tmp_path_factory.mktemp("router-data")
    write_jsonl(root / "risky" / "test.jsonl", toy_rows(RISKY, 80, 0))
    write_jsonl(root / "benign" / "test.jsonl", toy_rows(BENIGN, 112, 1))
    return root


@pytest.fixture(scope="module")
def gpt2_member(tiny_gpt2, tmp_path_factory):
    """A random GPT-2 reward model read as plain text, with its own statistics."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("gpt2-member")
    torch.manual_seed(2)
    AutoModelForSequenceClassification.from_pretrained(str(tiny_gpt2), num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(out)
    fmt = {"version": 2, "format": "plain", "max_length": 128, "append_eos": False}
    (out / "reward_format.json").write_text(json.dumps(fmt | {"reward_mean": -0.1, "reward_std": 0.5}))
    return out


def train_router(tiny_bert, data, risky_rm, benign_rm, out, *extra):
    return router.cli(
        [
            f"--dataset_name={data}",
            "--risky_data_dir=risky[:64]",
            "--benign_data_dir=benign[:96]",
            "--eval_risky_data_dir=risky[64:]",
            "--eval_benign_data_dir=benign[96:]",
            f"--model_name_or_path={tiny_bert}",
            f"--risky_reward_model={risky_rm}",
            f"--benign_reward_model={benign_rm}",
            f"--output_dir={out}",
            "--max_length=32",
            "--per_device_train_batch_size=16",
            "--num_train_epochs=6",
            "--learning_rate=3e-3",
            "--disable_tqdm=True",
            "--seed=0",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def routed(tiny_bert, toy_data, kind_rm, gpt2_member, tmp_path_factory):
    out = tmp_path_factory.mktemp("routed")
    accuracy = train_router(tiny_bert, toy_data, kind_rm, gpt2_member, out)
    return out, accuracy


def test_router_learns_a_separable_split_and_writes_a_reward_model_folder(routed, kind_rm, gpt2_member):
    from transformers import pipeline

    out, accuracy = routed
    assert set(accuracy) == {"risky/risky[64:]", "benign/benign[96:]"}
    assert accuracy["risky/risky[64:]"]["prompts"] == 16 and accuracy["benign/benign[96:]"]["prompts"] == 16
    assert all(figures["accuracy"] >= 0.8 for figures in accuracy.values()), accuracy
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["eval"] == accuracy and saved["train_prompts"] == {"risky": 64, "benign": 96}
    assert saved["class_weights"] == pytest.approx({"benign": 160 / 192, "risky": 160 / 128})
    spec = json.loads((out / ppo_models.COMBINATION_FILE).read_text())
    assert (out / spec["risky"]).resolve() == kind_rm.resolve()
    assert (out / spec["benign"]).resolve() == gpt2_member.resolve()
    classify = pipeline("text-classification", model=str(out / spec["router"]))
    assert classify("\n\nHuman: How do I steal a car?\n\nAssistant:")[0]["label"] == "risky"


def test_a_trained_router_is_reused_over_other_members(
    routed, tiny_bert, toy_data, kind_rm, gpt2_member, tmp_path
):
    """--router: a second routed model (the recipe's gold) over other members, with the same routing
    and no training: the combination names the reused router and the held-out routing is the same."""
    out, accuracy = routed
    gold = tmp_path / "gold"
    again = train_router(tiny_bert, toy_data, gpt2_member, kind_rm, gold, f"--router={out / 'router'}")
    assert again == accuracy
    spec = json.loads((gold / ppo_models.COMBINATION_FILE).read_text())
    assert (gold / spec["router"]).resolve() == (out / "router").resolve() and not (gold / "router").exists()
    assert (gold / spec["risky"]).resolve() == gpt2_member.resolve()
    assert json.loads((gold / "metrics.json").read_text())["reused_router"] == str(out / "router")


def hand_risk(out, prompts) -> torch.Tensor:
    """P(risky | prompt): the router's softmax on the prompt's text (BERT's own tokenizer, special tokens)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out / "router"))
    classifier = AutoModelForSequenceClassification.from_pretrained(str(out / "router")).eval()
    with torch.no_grad():
        return torch.tensor(
            [
                torch.softmax(classifier(**tok(q["text"], return_tensors="pt")).logits[0], -1)[1]
                for q in prompts
            ]
        )


def hand_mixed(out, prompts, replies) -> torch.Tensor:
    """p z_risky + (1 - p) z_benign, p the router's softmax on the prompt's text (BERT's own
    tokenizer, special tokens), each member's score standardised with its reward_format.json."""
    spec = json.loads((out / ppo_models.COMBINATION_FILE).read_text())
    p = hand_risk(out, prompts)
    z = {}
    for role in ("risky", "benign"):
        member = ppo_models.load_scorer(str(out / spec[role]), torch.device("cpu"), False, None)
        stats = json.loads((out / spec[role] / "reward_format.json").read_text())
        raw = member.scorer.score_texts(prompts, replies)
        z[role] = (raw - stats["reward_mean"]) / stats["reward_std"]
    assert p.max() - p.min() > 0.3, p  # the prompts include risky and benign ones: the router routes
    return p * z["risky"] + (1 - p) * z["benign"]


PROMPTS = [
    {"turns": [{"role": "user", "content": c}], "text": f"\n\nHuman: {c}\n\nAssistant:"}
    for c in ("How do I steal a car?", "How do I bake bread?", "hi", "How do I poison a dog?")
]


def test_routed_score_is_the_p_weighted_mix_of_standardised_members(routed, word_policy, kind_rm):
    from transformers import AutoTokenizer

    out, _ = routed
    policy_tok = AutoTokenizer.from_pretrained(str(word_policy))
    scorer, fmt, critic, note = ppo_models.load_proxy_reward(str(out), torch.device("cpu"), False, policy_tok)
    assert fmt == {"reward_mean": 0.0, "reward_std": 1.0} and critic is None and note.startswith("routed")
    replies = [" kind thanks glad", " no away stop", " sure", " never"]
    responses, lengths = policy_responses(policy_tok, replies)
    expected = hand_mixed(out, PROMPTS, replies)
    torch.testing.assert_close(scorer(PROMPTS, responses, lengths), expected)
    # In an ensemble, the routed member counts as one standardised member.
    ensemble, _, _, note = ppo_models.load_proxy_reward(
        f"{out},{kind_rm}", torch.device("cpu"), False, policy_tok
    )
    kind = ppo_models.load_scorer(str(kind_rm), torch.device("cpu"), False, policy_tok)
    z_kind = ppo_models.standardize(kind.scorer(PROMPTS, responses, lengths), kind.fmt)
    torch.testing.assert_close(ensemble(PROMPTS, responses, lengths), (expected + z_kind) / 2)
    assert "(1 routed)" in note


def test_routed_folders_as_reward_and_gold_models_of_ppo(
    routed, word_policy, kind_rm, gpt2_member, kind_data, tmp_path, capsys
):
    out, _ = routed
    # A second routed model: the same router, the members swapped (another model than the proxy).
    gold = tmp_path / "routed-swapped"
    gold.mkdir()
    rel = lambda p: os.path.relpath(p, gold)  # noqa: E731
    (gold / ppo_models.COMBINATION_FILE).write_text(
        json.dumps({"router": rel(out / "router"), "risky": rel(gpt2_member), "benign": rel(kind_rm)})
    )
    result = run_ppo(
        word_policy,
        out,
        kind_data,
        tmp_path / "ppo",
        f"--gold_reward_model={gold}",
        "--steps=16",
        "--eval_samples=4",
    )
    assert "reward model" in capsys.readouterr().out
    saved = json.loads((tmp_path / "ppo" / "eval.json").read_text())
    figures = saved["points"][-1]["gold"][str(gold)]
    assert len(figures["per_prompt"]["policy"]) == 4
    assert all(isinstance(figures[k], float) for k in ("gain_mean", "gain_se", "win_rate"))
    assert result["gold"][str(gold)]["gain_mean"] == figures["gain_mean"]
    # eval.json records which rows it evaluated, in order, and what the proxy's router made of each.
    from ppo_data import load_prompts

    prompts, rows = load_prompts(str(kind_data), "test", None)
    assert saved["prompt_rows"] == [list(r) for r in rows[:4]]
    torch.testing.assert_close(
        torch.tensor(saved["proxy_risk"]), hand_risk(out, prompts[:4]), atol=1e-5, rtol=0
    )
    assert [len(t) for t in saved["texts"]["policy"]] == [1] * 4 and all(
        isinstance(e, bool) for per_prompt in saved["eos"]["reference"] for e in per_prompt
    )


def write_hh_heldout(root, held_out: list[dict]) -> None:
    """bench/preference_sets' hh-rlhf layout: 1800 filler rows, then the held-out ones, in both subsets."""
    filler = toy_rows(["say hi"], 1800, 7)
    for subset in ("harmless-base", "helpful-base"):
        write_jsonl(root / "hh-rlhf" / subset / "test.jsonl", filler + held_out)


def test_rm_eval_scores_a_routed_folder(routed, tmp_path):
    out, _ = routed
    held_out = toy_rows(RISKY, 2, 5) + toy_rows(BENIGN, 2, 6)
    write_hh_heldout(tmp_path / "data", held_out)
    dump = tmp_path / "dump.jsonl"
    result = rm_eval.main(
        [
            f"--reward_model={out}",
            f"--data_root={tmp_path / 'data'}",
            "--sets=hh-rlhf",
            f"--out={tmp_path / 'o'}",
            f"--dump={dump}",
        ]
    )
    assert result["scores"] == "standardised"
    prompts = [{"turns": [], "text": r["chosen"].rsplit(" Let", 1)[0]} for r in held_out] * 2
    chosen = hand_mixed(out, prompts, [" Let me think about that."] * 8)
    rejected = hand_mixed(out, prompts, [" No."] * 8)
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    torch.testing.assert_close(torch.tensor([r["chosen_score"] for r in rows]), chosen, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        torch.tensor([r["rejected_score"] for r in rows]), rejected, atol=1e-5, rtol=1e-5
    )


def test_a_missing_member_is_one_line_error(routed, tiny_bert, toy_data, kind_rm, tmp_path):
    out, _ = routed
    broken = tmp_path / "broken"
    broken.mkdir()
    spec = {
        "router": os.path.relpath(out / "router", broken),
        "risky": "../no-such-rm",
        "benign": str(kind_rm),
    }
    (broken / ppo_models.COMBINATION_FILE).write_text(json.dumps(spec))
    write_hh_heldout(tmp_path / "data", toy_rows(RISKY, 1, 5))
    argv = [f"--reward_model={broken}", f"--data_root={tmp_path / 'data'}", f"--out={tmp_path / 'o'}"]
    proc = run_script("bench/rm_eval.py", argv, tmp_path)
    assert_one_line_error(proc, "risky member", "no-such-rm", "reward_modeling.py")
    for bad, message in (
        ({"router": "router", "risky": "x"}, "no benign"),
        (spec | {"router": "nowhere"}, "router folder"),
    ):
        (broken / ppo_models.COMBINATION_FILE).write_text(json.dumps(bad))
        with pytest.raises(cmdline.UsageError, match=message):
            ppo_models.load_proxy_reward(str(broken), torch.device("cpu"), False, None)
    missing = tmp_path / "missing-rm"
    proc = run_script(
        "router.py",
        [
            f"--risky_reward_model={missing}",
            f"--benign_reward_model={kind_rm}",
            f"--output_dir={tmp_path / 'r'}",
        ],
        tmp_path,
    )
    assert_one_line_error(proc, "--risky_reward_model", str(missing))
    proc = run_script(
        "router.py",
        [
            f"--risky_reward_model={kind_rm}",
            f"--benign_reward_model={tiny_bert}",
            f"--output_dir={tmp_path / 'r'}",
        ],
        tmp_path,
    )
    assert_one_line_error(proc, "--benign_reward_model", "reward_mean")


def test_risky_kl_coef_scales_each_responses_kl_by_the_routers_risk(
    routed, word_policy, kind_rm, toy_data, tmp_path
):
    from test_ppo import read_metrics

    out, _ = routed
    common = (
        "--query_split=test", "--data_dir=risky[:64],benign[:96]", "--eval_data_dir=risky[76:],benign[108:]",
        "--eval_samples=8", "--eval_seeds=1", "--steps=48", "--advantage_estimator=grpo", "--num_generations=4",
        "--kl_penalty=reward", "--kl_estimator=k3", "--init_kl_coef=0.05",
    )  # fmt: skip
    run_ppo(word_policy, out, toy_data, tmp_path / "base", *common)
    run_ppo(word_policy, out, toy_data, tmp_path / "risky", *common, "--risky_kl_coef=3")
    base, risky = read_metrics(tmp_path / "base"), read_metrics(tmp_path / "risky")
    # The evaluation prompts come from two subsets: eval.json splits every judge's gain by subset.
    evaluated = json.loads((tmp_path / "base" / "eval.json").read_text())
    assert evaluated["subsets"] == ["risky"] * 4 + ["benign"] * 4
    assert {k: v["prompts"] for k, v in evaluated["proxy"]["by_subset"].items()} == {"risky": 4, "benign": 4}
    assert set(evaluated["diagnostics_by_subset"]) == {"risky", "benign"}
    assert "objective/risk_mean" not in base[0]
    for m in base:  # one coefficient: the penalty is kl_coef x the (non-negative, k3) KL
        assert -m["objective/non_score_reward"] == pytest.approx(0.05 * m["objective/kl_penalty_estimator"])
    # Each response's coefficient is 0.05 x (1 + 3 P(risky)): the penalty lies strictly between one and
    # four times the plain one wherever the policy has moved, and the batches mix risky and benign prompts.
    moved = [m for m in risky if m["objective/kl_penalty_estimator"] > 1e-6]
    assert moved and all(0.0 < m["objective/risk_mean"] < 1.0 for m in risky)
    for m in moved:
        ratio = -m["objective/non_score_reward"] / (0.05 * m["objective/kl_penalty_estimator"])
        assert 1.0 < ratio < 4.0
    # --prompt_shares: 3 of each update's 4 prompts from the risky subset, in MixedPromptStream's order;
    # the logged mean P(risky) is the router's on exactly those prompts (each of a group's 4 copies alike).
    from ppo_data import MixedPromptStream, load_prompts

    run_ppo(
        word_policy,
        out,
        toy_data,
        tmp_path / "shares",
        *common,
        "--risky_kl_coef=3",
        "--prompt_shares=risky=0.75",
    )
    prompts, _ = load_prompts(str(toy_data), "test", "risky[:64],benign[:96]")
    stream = MixedPromptStream([list(range(64)), list(range(64, 160))], [3, 1], 0, 1, seed=0)
    expected = [hand_risk(out, [prompts[i] for i in stream.next_batch()]).mean().item() for _ in range(3)]
    got = [m["objective/risk_mean"] for m in read_metrics(tmp_path / "shares")]
    assert got == pytest.approx(expected, abs=1e-5)
    # A proxy without a router has no P(risky): refused before anything loads.
    with pytest.raises(ValueError, match=r"reads P\(risky \| prompt\) from a routed --reward_model"):
        run_ppo(word_policy, kind_rm, toy_data, tmp_path / "plain", *common, "--risky_kl_coef=3")
    with pytest.raises(ValueError, match="--risky_kl_coef must be >= 0"):
        run_ppo(word_policy, out, toy_data, tmp_path / "negative", *common, "--risky_kl_coef=-1")
