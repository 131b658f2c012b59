"""Preference data: every input form, bad rows, the prompt split, left truncation."""

import gzip
import json

import pytest
from conftest import HH_HARMLESS_TEST, learnable_pairs, write_jsonl

import reward_format
import utils


def test_parse_render_round_trip_and_turns():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: 4."
    turns = utils.parse_hh(text)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"] == "What is 2+2?"
    assert utils.render_hh(turns) == text
    assert utils.render_hh(turns[:3], add_generation_prompt=True) == text[: text.rindex(" 4.")]
    with pytest.raises(ValueError, match="not hh-rlhf"):
        utils.parse_hh("plain text")


@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_HARMLESS_TEST}")
def test_round_trip_on_real_hh_rlhf_rows():
    rows = utils.read_records(HH_HARMLESS_TEST)[:300]
    for r in rows:
        for side in ("chosen", "rejected"):
            assert utils.render_hh(utils.parse_hh(r[side])) == r[side]
        prompt, chosen, rejected = utils.split_prompt(r["chosen"], r["rejected"])
        assert prompt.endswith("\n\nAssistant:")
        assert prompt + chosen == r["chosen"] and prompt + rejected == r["rejected"]
        # The replies are the last assistant turn: no further turn markers inside them.
        assert "\n\nHuman:" not in chosen and "\n\nHuman:" not in rejected


def test_split_prompt_backs_off_to_the_assistant_marker():
    # The replies share their first words; the split must not cut inside the reply.
    c = "\n\nHuman: Hi\n\nAssistant: Sure, I can help with that."
    r = "\n\nHuman: Hi\n\nAssistant: Sure, go away."
    assert utils.split_prompt(c, r) == (
        "\n\nHuman: Hi\n\nAssistant:",
        " Sure, I can help with that.",
        " Sure, go away.",
    )
    # Text without markers: split at the last whitespace of the common prefix.
    assert utils.split_prompt("Q: hi A: yes sir", "Q: hi A: yeah") == ("Q: hi A: ", "yes sir", "yeah")


def test_parse_split():
    assert utils.parse_split("test[1800:]") == ("test", slice(1800, None))
    assert utils.parse_split("train[:10%]") == ("train", slice(None, "10%"))
    assert utils.parse_split("train") == ("train", slice(None, None))
    with pytest.raises(ValueError, match="bad split"):
        utils.parse_split("test[a:b]")


def test_every_input_form_gives_the_same_pairs(tmp_path):
    rows = learnable_pairs(20, seed=3)
    # hh-rlhf GitHub layout with two subsets, gzipped
    for subset, part in (("a-base", rows[:10]), ("b-base", rows[10:])):
        (tmp_path / "hh" / subset).mkdir(parents=True)
        with gzip.open(tmp_path / "hh" / subset / "train.jsonl.gz", "wt") as f:
            f.write("".join(json.dumps(r) + "\n" for r in part))
    jsonl = write_jsonl(tmp_path / "pairs.jsonl", rows)
    (tmp_path / "pairs.json").write_text(json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    expected, _ = utils.load_preference_pairs(str(jsonl), "train")
    assert len(expected) == 20
    for name, data_dir in [
        (tmp_path / "hh", "a-base,b-base"),
        (tmp_path / "hh", None),
        (tmp_path / "pairs.json", None),
        (tmp_path / "pairs.parquet", None),
    ]:
        got, _ = utils.load_preference_pairs(str(name), "train", data_dir)
        assert got == expected, name
    one, _ = utils.load_preference_pairs(str(tmp_path / "hh"), "train", "b-base")
    assert one == expected[10:]
    sliced, _ = utils.load_preference_pairs(str(jsonl), "train[5:8]")
    assert sliced == expected[5:8]
    pct, _ = utils.load_preference_pairs(str(jsonl), "train[:50%]")
    assert pct == expected[:10]


def test_bad_rows_are_counted_and_dropped(tmp_path, capsys):
    good = learnable_pairs(3, seed=0)
    bad = [
        {"chosen": good[0]["chosen"]},  # missing rejected
        {"chosen": 5, "rejected": "x"},  # not text
        {"chosen": "", "rejected": "\n\nHuman: a\n\nAssistant: b"},  # empty
        {"chosen": good[1]["chosen"], "rejected": good[1]["chosen"]},  # identical
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", good + bad)
    pairs, counts = utils.load_preference_pairs(str(path), "train")
    assert len(pairs) == 3
    assert {k: counts[k] for k in ("missing", "not_text", "empty", "identical")} == {
        "missing": 1,
        "not_text": 1,
        "empty": 1,
        "identical": 1,
    }
    assert "kept 3" in capsys.readouterr().out


def test_clear_errors_for_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        utils.load_rows(str(tmp_path / "nope.jsonl"), "train")
    (tmp_path / "broken.jsonl").write_text('{"chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(ValueError, match=r"broken.jsonl, line 2: not valid JSON"):
        utils.load_rows(str(tmp_path / "broken.jsonl"), "train")
    write_jsonl(tmp_path / "cols.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(
        ValueError, match=r"no 'chosen' and 'rejected' columns \(columns found: \['answer', 'question'\]\)"
    ):
        utils.load_preference_pairs(str(tmp_path / "cols.jsonl"), "train")
    write_jsonl(tmp_path / "empty.jsonl", [{"chosen": "same", "rejected": "same"}])
    with pytest.raises(ValueError, match="empty.jsonl.*no valid preference pairs"):
        utils.load_preference_pairs(str(tmp_path / "empty.jsonl"), "train")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'train' file"):
        utils.load_rows(str(tmp_path / "folder"), "train")


def test_explicit_and_implicit_prompt(tmp_path):
    implicit = learnable_pairs(4, seed=5)
    explicit = []
    for r in implicit:
        prompt, c, rj = utils.split_prompt(r["chosen"], r["rejected"])
        explicit.append({"prompt": prompt, "chosen": c, "rejected": rj})
    whole = [
        {"prompt": e["prompt"], "chosen": i["chosen"], "rejected": i["rejected"]}
        for e, i in zip(explicit, implicit)
    ]
    a, _ = utils.load_preference_pairs(str(write_jsonl(tmp_path / "i.jsonl", implicit)), "train")
    b, _ = utils.load_preference_pairs(str(write_jsonl(tmp_path / "e.jsonl", explicit)), "train")
    c, _ = utils.load_preference_pairs(str(write_jsonl(tmp_path / "w.jsonl", whole)), "train")
    assert a == b == c
    # Conversational (TRL-style) messages are rendered as hh-rlhf text.
    conv = [
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Bye."}],
        }
    ]
    d, _ = utils.load_preference_pairs(str(write_jsonl(tmp_path / "c.jsonl", conv)), "train")
    assert d == [
        {"prompt": "\n\nHuman: Hi", "chosen": "\n\nAssistant: Hello!", "rejected": "\n\nAssistant: Bye."}
    ]


def test_left_truncation_keeps_special_tokens_and_last_reply(tiny_distilbert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_distilbert))
    long_prompt = "".join(
        f"\n\nHuman: question number {i}\n\nAssistant: answer number {i}" for i in range(50)
    )
    text = long_prompt + "\n\nHuman: last one?\n\nAssistant: the final reply survives"
    (ids,), (cut,) = reward_format.encode_left_truncated(tok, [text], max_length=32)
    assert cut and len(ids) == 32
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids[1:-1]).endswith("the final reply survives")
    (short,), (cut,) = reward_format.encode_left_truncated(tok, ["hello"], max_length=32)
    assert not cut and short == tok("hello")["input_ids"]


def test_left_truncation_gpt2_appends_eos_when_asked(tiny_gpt2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_gpt2))
    (ids,), (cut,) = reward_format.encode_left_truncated(
        tok, ["one two three four five six"], max_length=4, append_eos=True
    )
    assert cut and len(ids) == 4 and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[:-1]) == " four five six"


def test_quickstart_data_is_reproduced_byte_for_byte(tmp_path, monkeypatch):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "make_quickstart_data", ROOT / "data" / "make_quickstart_data.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    monkeypatch.setattr(gen, "OUT", tmp_path)
    gen.main()
    for name in ("train.jsonl", "test.jsonl", "prompts.jsonl"):
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / "quickstart" / name).read_bytes(), name
    pairs, counts = utils.load_preference_pairs(str(ROOT / "data" / "quickstart"), "test", None, None)
    assert len(pairs) == 400 and counts["kept"] == 400


def test_quickstart_configs_parse_and_point_at_real_files(tmp_path):
    from conftest import ROOT
    from trl import ModelConfig, RewardConfig

    import ppo
    import reward_modeling

    qs = ROOT / "configs" / "quickstart"
    script, training, model = utils.parse_args(
        (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
        [str(qs / "reward_model.yaml")],
        renamed=reward_modeling.RENAMED_FLAGS,
        defaults=reward_modeling.default_flags(),
    )
    assert model.model_name_or_path in utils.OFFLINE_MODELS and (ROOT / script.dataset_name).is_dir()
    (args,) = utils.parse_args((ppo.PPOArguments,), [str(qs / "ppo.yaml")], renamed=ppo.ALIASES)
    assert args.model_name in utils.OFFLINE_MODELS and args.reward_model == training.output_dir
    assert (ROOT / args.query_dataset).is_dir() and (ROOT / args.eval_dataset).is_file()
    assert args.use_peft and ppo.derive_sizes(args, world=1).updates == 6
    # Flags after the config file override it; a misspelt key is refused by name.
    (short,) = utils.parse_args(
        (ppo.PPOArguments,), [str(qs / "ppo.yaml"), "--steps=32", "--bf16=True"], renamed=ppo.ALIASES
    )
    assert (short.steps, short.bf16, short.lora_r, short.model_name) == (32, True, 16, args.model_name)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model_name: gpt2\nlerning_rate: 1.0e-5\nlora_target_modules: [q_proj, v_proj]\n")
    with pytest.raises(ValueError, match="lerning_rate"):
        utils.parse_args((ppo.PPOArguments,), [str(typo)])
    typo.write_text("model_name: gpt2\nlora_target_modules: [q_proj, v_proj]\n")
    (listed,) = utils.parse_args((ppo.PPOArguments,), [str(typo)])
    assert listed.lora_target_modules == ["q_proj", "v_proj"]
