"""Preference data: every input form, bad rows, the prompt split, left truncation."""

import gzip
import json
from pathlib import Path

import pytest
from conftest import HH_HARMLESS_TEST, learnable_pairs, write_jsonl

import cmdline
import hh_data
import offline
import ppo_models
import reward_format


def test_parse_render_round_trip_and_turns():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: 4."
    turns = hh_data.parse_hh(text)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"] == "What is 2+2?"
    assert hh_data.render_hh(turns) == text
    assert hh_data.render_hh(turns[:3], add_generation_prompt=True) == text[: text.rindex(" 4.")]
    with pytest.raises(ValueError, match="not hh-rlhf"):
        hh_data.parse_hh("plain text")


@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_HARMLESS_TEST}")
def test_round_trip_on_real_hh_rlhf_rows():
    rows = hh_data.read_records(HH_HARMLESS_TEST)[:300]
    for r in rows:
        for side in ("chosen", "rejected"):
            assert hh_data.render_hh(hh_data.parse_hh(r[side])) == r[side]
        prompt, chosen, rejected = hh_data.split_prompt(r["chosen"], r["rejected"])
        assert prompt.endswith("\n\nAssistant:")
        assert prompt + chosen == r["chosen"] and prompt + rejected == r["rejected"]
        # The replies are the last assistant turn: no further turn markers inside them.
        assert "\n\nHuman:" not in chosen and "\n\nHuman:" not in rejected


def test_split_prompt_backs_off_to_the_assistant_marker():
    # The replies share their first words; the split must not cut inside the reply.
    c = "\n\nHuman: Hi\n\nAssistant: Sure, I can help with that."
    r = "\n\nHuman: Hi\n\nAssistant: Sure, go away."
    assert hh_data.split_prompt(c, r) == (
        "\n\nHuman: Hi\n\nAssistant:",
        " Sure, I can help with that.",
        " Sure, go away.",
    )
    # Text without markers: split at the last whitespace of the common prefix.
    assert hh_data.split_prompt("Q: hi A: yes sir", "Q: hi A: yeah") == ("Q: hi A: ", "yes sir", "yeah")


def test_parse_split():
    assert hh_data.parse_split("test[1800:]") == ("test", slice(1800, None))
    assert hh_data.parse_split("train[:10%]") == ("train", slice(None, "10%"))
    assert hh_data.parse_split("train") == ("train", slice(None, None))
    with pytest.raises(ValueError, match="bad split"):
        hh_data.parse_split("test[a:b]")


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
    expected, _, _ = hh_data.load_preference_pairs(str(jsonl), "train")
    assert len(expected) == 20
    for name, data_dir in [
        (tmp_path / "hh", "a-base,b-base"),
        (tmp_path / "hh", None),
        (tmp_path / "pairs.json", None),
        (tmp_path / "pairs.parquet", None),
    ]:
        got, _, _ = hh_data.load_preference_pairs(str(name), "train", data_dir)
        assert got == expected, name
    one, _, _ = hh_data.load_preference_pairs(str(tmp_path / "hh"), "train", "b-base")
    assert one == expected[10:]
    sliced, _, _ = hh_data.load_preference_pairs(str(jsonl), "train[5:8]")
    assert sliced == expected[5:8]
    pct, _, _ = hh_data.load_preference_pairs(str(jsonl), "train[:50%]")
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
    pairs, counts, _ = hh_data.load_preference_pairs(str(path), "train")
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
        hh_data.load_rows(str(tmp_path / "nope.jsonl"), "train")
    (tmp_path / "broken.jsonl").write_text('{"chosen": "a", "rejected": "b"}\n{oops\n')
    with pytest.raises(ValueError, match=r"broken.jsonl, line 2: not valid JSON"):
        hh_data.load_rows(str(tmp_path / "broken.jsonl"), "train")
    write_jsonl(tmp_path / "cols.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(
        ValueError, match=r"no 'chosen' and 'rejected' columns \(columns found: \['answer', 'question'\]\)"
    ):
        hh_data.load_preference_pairs(str(tmp_path / "cols.jsonl"), "train")
    write_jsonl(tmp_path / "empty.jsonl", [{"chosen": "same", "rejected": "same"}])
    with pytest.raises(ValueError, match="empty.jsonl.*no valid preference pairs"):
        hh_data.load_preference_pairs(str(tmp_path / "empty.jsonl"), "train")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'train' file"):
        hh_data.load_rows(str(tmp_path / "folder"), "train")


def test_explicit_and_implicit_prompt(tmp_path):
    implicit = learnable_pairs(4, seed=5)
    explicit = []
    for r in implicit:
        prompt, c, rj = hh_data.split_prompt(r["chosen"], r["rejected"])
        explicit.append({"prompt": prompt, "chosen": c, "rejected": rj})
    whole = [
        {"prompt": e["prompt"], "chosen": i["chosen"], "rejected": i["rejected"]}
        for e, i in zip(explicit, implicit)
    ]
    a, _, _ = hh_data.load_preference_pairs(str(write_jsonl(tmp_path / "i.jsonl", implicit)), "train")
    b, _, _ = hh_data.load_preference_pairs(str(write_jsonl(tmp_path / "e.jsonl", explicit)), "train")
    c, _, _ = hh_data.load_preference_pairs(str(write_jsonl(tmp_path / "w.jsonl", whole)), "train")
    assert a == b == c
    # Conversational (TRL-style) messages are rendered as hh-rlhf text.
    conv = [
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Bye."}],
        }
    ]
    d, _, _ = hh_data.load_preference_pairs(str(write_jsonl(tmp_path / "c.jsonl", conv)), "train")
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
    pairs, counts, _ = hh_data.load_preference_pairs(str(ROOT / "data" / "quickstart"), "test", None, None)
    assert len(pairs) == 400 and counts["kept"] == 400


def test_quickstart_configs_parse_and_point_at_real_files(tmp_path):
    from conftest import ROOT
    from trl import ModelConfig, RewardConfig

    import ppo
    import reward_modeling

    qs = ROOT / "configs" / "quickstart"
    script, training, model = cmdline.parse_args(
        (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
        [str(qs / "reward_model.yaml")],
        renamed=reward_modeling.RENAMED_FLAGS,
        defaults=reward_modeling.default_flags(),
    )
    assert model.model_name_or_path in offline.OFFLINE_MODELS and (ROOT / script.dataset_name).is_dir()
    (args,) = cmdline.parse_args((ppo.PPOArguments,), [str(qs / "ppo.yaml")], renamed=ppo.ALIASES)
    assert args.model_name in offline.OFFLINE_MODELS and args.reward_model == training.output_dir
    assert (ROOT / args.query_dataset).is_dir() and (ROOT / args.eval_dataset).is_file()
    assert args.use_peft and ppo.derive_sizes(args, world=1).updates == 6
    # The gold judge: another output folder, trained on the rows the proxy is only evaluated on.
    gold_script, gold_training, _ = cmdline.parse_args(
        (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
        [str(qs / "gold_reward_model.yaml")],
        renamed=reward_modeling.RENAMED_FLAGS,
        defaults=reward_modeling.default_flags(),
    )
    assert args.gold_reward_model == gold_training.output_dir != training.output_dir
    assert gold_script.dataset_train_split == script.dataset_test_split == "test"
    assert gold_script.dataset_test_split.startswith(script.dataset_train_split)
    # Flags after the config file override it; a misspelt key is refused by name.
    (short,) = cmdline.parse_args(
        (ppo.PPOArguments,), [str(qs / "ppo.yaml"), "--steps=32", "--bf16=True"], renamed=ppo.ALIASES
    )
    assert (short.steps, short.bf16, short.lora_r, short.model_name) == (32, True, 16, args.model_name)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model_name: gpt2\nlerning_rate: 1.0e-5\nlora_target_modules: [q_proj, v_proj]\n")
    with pytest.raises(ValueError, match="lerning_rate"):
        cmdline.parse_args((ppo.PPOArguments,), [str(typo)])
    typo.write_text("model_name: gpt2\nlora_target_modules: [q_proj, v_proj]\n")
    (listed,) = cmdline.parse_args((ppo.PPOArguments,), [str(typo)])
    assert listed.lora_target_modules == ["q_proj", "v_proj"]


# ---------------------------------------------------------------------------------------------
# Per-subset slices (--data_dir 'a[:3],b') and the refusal of evaluation rows that were trained on.
# ---------------------------------------------------------------------------------------------

HH_RLHF = HH_HARMLESS_TEST.parent.parent
HH_TRAIN_SUBSETS = "harmless-base[:1800],helpful-base[:1800],helpful-online,helpful-rejection-sampled"
HH_HELD_OUT = "harmless-base[1800:],helpful-base[1800:]"


def subset_rows(subset: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{subset}{i}",
            "chosen": f"\n\nHuman: question {subset}{i}\n\nAssistant: kind",
            "rejected": f"\n\nHuman: question {subset}{i}\n\nAssistant: curt",
        }
        for i in range(n)
    ]


@pytest.fixture
def hh_layout(tmp_path):
    """Three subsets in the hh-rlhf GitHub layout, rows a0..a5, b0..b3, c0..c1 of split `test`."""
    for subset, n in (("a", 6), ("b", 4), ("c", 2)):
        (tmp_path / "hh" / subset).mkdir(parents=True)
        with gzip.open(tmp_path / "hh" / subset / "test.jsonl.gz", "wt") as f:
            f.write("".join(json.dumps(r) + "\n" for r in subset_rows(subset, n)))
    return tmp_path / "hh"


def test_per_subset_slices_select_exactly_those_rows_in_order(hh_layout):
    rows, where, origins = hh_data.load_rows(str(hh_layout), "test", "a[:3], b[2:4],c")
    assert [r["id"] for r in rows] == ["a0", "a1", "a2", "b2", "b3", "c0", "c1"]
    a, b, c = (str((hh_layout / s / "test.jsonl.gz").resolve()) for s in "abc")
    assert origins == [(a, 0), (a, 1), (a, 2), (b, 2), (b, 3), (c, 0), (c, 1)]
    assert "a/test.jsonl.gz[:3]" in where and "b/test.jsonl.gz[2:4]" in where
    # Percent and negative slices per subset; a slice on the split applies to the concatenation.
    rows, _, _ = hh_data.load_rows(str(hh_layout), "test", "a[50%:],b[-1:]")
    assert [r["id"] for r in rows] == ["a3", "a4", "a5", "b3"]
    rows, _, origins = hh_data.load_rows(str(hh_layout), "test[1:-1]", "a[:3],c")
    assert [r["id"] for r in rows] == ["a1", "a2", "c0"] and origins[-1] == (c, 0)
    # No --data_dir: every subset, whole.
    rows, _, _ = hh_data.load_rows(str(hh_layout), "test")
    assert len(rows) == 12


def test_reward_model_rows_reads_what_each_folder_trained_on(hh_layout, tmp_path):
    def folder(name, script, combination=None):
        path = tmp_path / name
        path.mkdir()
        (path / "args.json").write_text(json.dumps({"script": script, "training": {}}))
        if combination:
            (path / "reward_combination.json").write_text(
                json.dumps({"combination": "routed", **combination})
            )
        return str(path)

    common = {"dataset_name": str(hh_layout), "dataset_train_split": "test"}
    a, b, c = (str((hh_layout / s / "test.jsonl.gz").resolve()) for s in "abc")
    rm_a = folder("rm-a", {**common, "data_dir": "a[:3]"})
    rm_b = folder("rm-b", {**common, "data_dir": "b,c[1:]"})
    assert ppo_models.reward_model_rows(rm_a) == {(a, 0), (a, 1), (a, 2)}
    assert ppo_models.reward_model_rows(f"text-classification:{rm_a}") == {(a, 0), (a, 1), (a, 2)}
    assert ppo_models.reward_model_rows(f"{rm_a}, {rm_b}") == {(a, 0), (a, 1), (a, 2), (c, 1)} | {
        (b, i) for i in range(4)
    }
    # A routed folder: its members' rows and its router's (risky and benign prompts).
    members = {"router": "router", "risky": "../rm-a", "benign": "../rm-b"}
    routed = folder("routed", {**common, "risky_data_dir": "a[4:]", "benign_data_dir": "c[:1]"}, members)
    router_rows = {(a, 4), (a, 5), (c, 0)}
    assert (
        ppo_models.reward_model_rows(routed) == ppo_models.reward_model_rows(f"{rm_a},{rm_b}") | router_rows
    )
    # A router reused from another routed folder: the rows that folder's router trained on.
    reused = folder(
        "reused", {**common, "router": routed + "/router", "risky_data_dir": "a", "benign_data_dir": "b"},
        {"router": "../routed/router", "risky": "../rm-a", "benign": "../rm-a"},
    )  # fmt: skip
    assert ppo_models.reward_model_rows(reused) == {(a, i) for i in range(3)} | router_rows
    # Unknown: a hub or pypi: name, no args.json, data that is not there; one unknown member makes it all so.
    missing = folder("moved", {**common, "dataset_name": str(tmp_path / "gone"), "data_dir": "a"})
    for name in ("pypi:all-MiniLM-L6-v2", str(tmp_path), missing, f"{rm_a},{missing}"):
        assert ppo_models.reward_model_rows(name) is None, name


def test_hub_datasets_take_per_subset_slices_after_loading(monkeypatch):
    import datasets

    loaded = []

    def fake_load_dataset(name, data_dir=None, split=None):
        loaded.append((name, data_dir, split))
        return datasets.Dataset.from_list(subset_rows(data_dir, 5))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows, _, origins = hh_data.load_rows("org/hh", "test", "x[:2],y[3:]")
    assert [r["id"] for r in rows] == ["x0", "x1", "y3", "y4"]
    assert loaded == [("org/hh", "x", "test"), ("org/hh", "y", "test")]
    assert origins == [("org/hh/x/test", 0), ("org/hh/x/test", 1), ("org/hh/y/test", 3), ("org/hh/y/test", 4)]


def test_bad_subsets_are_refused_clearly(hh_layout):
    with pytest.raises(
        FileNotFoundError, match=r"subset folder not found: .*zz \(subset folders in .*: a, b, c\)"
    ):
        hh_data.load_rows(str(hh_layout), "test", "a[:3],zz[:5]")
    with pytest.raises(ValueError, match=r"bad --data_dir subset 'a\[:x\]'"):
        hh_data.load_rows(str(hh_layout), "test", "a[:x],b")
    with pytest.raises(ValueError, match="names subset folders, but .*test.jsonl.gz is a file"):
        hh_data.load_rows(str(hh_layout / "a" / "test.jsonl.gz"), "test", "a[:3]")


def test_overlap_is_refused_naming_file_and_rows(hh_layout):
    _, _, train = hh_data.load_rows(str(hh_layout), "test", "a[:4],b")
    _, _, held_out = hh_data.load_rows(str(hh_layout), "test", "a[4:]")
    hh_data.refuse_overlap(train, held_out, "train flags", "eval flags")  # same file, disjoint rows
    _, _, overlapping = hh_data.load_rows(str(hh_layout), "test", "a[2:5],c")
    a = str((hh_layout / "a" / "test.jsonl.gz").resolve())
    with pytest.raises(ValueError) as e:
        hh_data.refuse_overlap(train, overlapping, "train flags", "eval flags")
    assert str(e.value).startswith(
        f"the evaluation rows (eval flags) overlap the training rows (train flags): {a} rows [2:4] in both "
        "(training [0:4], evaluation [2:5])."
    )
    assert "b/test" not in str(e.value) and "c/test" not in str(e.value)
    assert hh_data.row_spans([7, 0, 2, 1, 8]) == "[0:3], [7:9]"


def test_reward_modeling_refuses_overlap_before_loading_a_model(hh_layout, tmp_path):
    import reward_modeling

    flags = [
        f"--model_name_or_path={tmp_path / 'no-such-model'}",
        f"--dataset_name={hh_layout}",
        "--data_dir=a[:4],b",
        "--dataset_train_split=test",
        f"--output_dir={tmp_path / 'rm'}",
        "--report_to=none",
    ]
    with pytest.raises(
        ValueError, match=r"a/test.jsonl.gz rows \[0:4\] in both.*b/test.jsonl.gz rows \[0:4\]"
    ):
        reward_modeling.cli(flags)  # the evaluation rows default to --data_dir: the same rows
    with pytest.raises(ValueError, match=r"--eval_data_dir=a\[3:\],c .*a/test.jsonl.gz rows \[3:4\] in both"):
        reward_modeling.cli(flags + ["--eval_data_dir=a[3:],c"])
    with pytest.raises(OSError, match="no-such-model"):  # disjoint rows: on to loading the model
        reward_modeling.cli(flags + ["--eval_data_dir=a[4:],c"])


def test_ppo_eval_prompts_take_their_own_subsets_and_never_training_rows(hh_layout, tiny_gpt2, tmp_path):
    from types import SimpleNamespace

    import ppo

    def load(*flags):
        (args,) = cmdline.parse_args((ppo.PPOArguments,), [f"--query_dataset={hh_layout}", *flags])
        return ppo.Trainer._load_prompts(SimpleNamespace(args=args, acc=SimpleNamespace(print=print)))

    def questions(prompts):
        return [p["turns"][0]["content"].split()[-1] for p in prompts]

    train, train_origins, evals, origins = load(
        "--data_dir=a[:4],b", "--query_split=test", "--eval_data_dir=a[4:],c", "--eval_samples=3"
    )
    assert questions(train) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    assert [(Path(f).parent.name, row) for f, row in train_origins] == [("a", i) for i in range(4)] + [
        ("b", i) for i in range(4)
    ]
    assert questions(evals) == ["a4", "a5", "c0"]
    assert [(Path(f).parent.name, row) for f, row in origins] == [("a", 4), ("a", 5), ("c", 0)]
    # The default evaluation split ('test' of the same subsets) is the training rows themselves.
    with pytest.raises(ValueError, match=r"--eval_data_dir=a\[:4\],b --eval_split=test\) overlap"):
        load("--data_dir=a[:4],b", "--query_split=test")
    with pytest.raises(ValueError, match=r"c/test.jsonl.gz rows \[1:2\] in both"):
        load("--data_dir=c", "--query_split=test", "--eval_split=test[1:]")
    # A .txt prompt file has no test split: its last --eval_samples prompts are held out, not trained on.
    txt = tmp_path / "prompts.txt"
    txt.write_text("".join(f"q{i}\n" for i in range(10)))
    (args,) = cmdline.parse_args((ppo.PPOArguments,), [f"--query_dataset={txt}", "--eval_samples=4"])
    train, train_origins, evals, origins = ppo.Trainer._load_prompts(
        SimpleNamespace(args=args, acc=SimpleNamespace(print=print))
    )
    assert [p["turns"][0]["content"] for p in evals] == ["q6", "q7", "q8", "q9"] and len(train) == 6
    assert train_origins == [(str(txt.resolve()), i) for i in range(6)]
    assert origins == [(str(txt.resolve()), i) for i in range(6, 10)]
    # And the refusal comes before any weights load (only the policy's config is read, for its kind;
    # the reward model folder is empty).
    (tmp_path / "empty-rm").mkdir()
    with pytest.raises(ValueError, match="overlap the training rows"):
        ppo.cli(
            [
                f"--model_name={tiny_gpt2}",
                f"--reward_model={tmp_path / 'empty-rm'}",
                f"--query_dataset={hh_layout}",
                "--data_dir=a",
                "--query_split=test",
                f"--output_dir={tmp_path / 'ppo'}",
            ]
        )


@pytest.mark.skipif(not HH_HARMLESS_TEST.exists(), reason=f"real hh-rlhf data absent: {HH_RLHF}")
def test_real_hh_rlhf_selection_trains_on_7486_rows_and_holds_out_1066():
    train, _, train_origins = hh_data.load_rows(str(HH_RLHF), "test", HH_TRAIN_SUBSETS)
    held_out, _, held_out_origins = hh_data.load_rows(str(HH_RLHF), "test", HH_HELD_OUT)
    assert (len(train), len(held_out)) == (7486, 512 + 554)
    harmless = hh_data.read_records(HH_HARMLESS_TEST)
    assert train[:1800] == harmless[:1800] and held_out[:512] == harmless[1800:]
    assert max(i for f, i in train_origins if "/harmless-base/" in f or "/helpful-base/" in f) == 1799
    assert min(i for _, i in held_out_origins) == 1800
    hh_data.refuse_overlap(train_origins, held_out_origins, HH_TRAIN_SUBSETS, HH_HELD_OUT)
    _, _, everything = hh_data.load_rows(str(HH_RLHF), "test")
    with pytest.raises(ValueError, match=r"harmless-base/test.jsonl.gz rows \[0:1800\] in both"):
        hh_data.refuse_overlap(train_origins, everything, HH_TRAIN_SUBSETS, "all subsets")


def test_hh_configs_parse_with_their_scripts_parsers():
    """Every configs/hh file parses (a misspelt or removed key fails here, not an hour into `make hh`),
    and the reduced recipe holds out what the full one holds out."""
    from conftest import ROOT
    from transformers import TrainingArguments
    from trl import ModelConfig, RewardConfig

    import ppo
    import reward_modeling
    import router

    hh = ROOT / "configs" / "hh"
    for path in sorted(hh.glob("*.yaml")):
        if path.name.startswith("ppo"):
            (args,) = cmdline.parse_args((ppo.PPOArguments,), [str(path)], renamed=ppo.ALIASES)
            assert ppo.derive_sizes(args, world=1).updates >= 12, path.name
            assert "1800:" in args.eval_data_dir and "[:1800]" in args.data_dir, path.name
        elif path.name.startswith("router"):
            cmdline.parse_args(
                (router.RouterArguments, TrainingArguments), [str(path)], defaults=router.default_flags()
            )
        else:
            cmdline.parse_args(
                (reward_modeling.ScriptArguments, RewardConfig, ModelConfig),
                [str(path)],
                renamed=reward_modeling.RENAMED_FLAGS,
                defaults=reward_modeling.default_flags(),
            )
    assert len(list(hh.glob("*.yaml"))) == 5


def test_offline_conversion_runs_once_when_processes_start_together(tmp_path, monkeypatch):
    """Two conversions of the same offline folder at once (the ranks of `accelerate launch`, or runs
    side by side on a fresh machine): one builds, the other waits for it and finds the folder done,
    where both used to write one temporary folder and one failed mid-save."""
    import threading
    import time

    monkeypatch.setenv("RLHF_CACHE", str(tmp_path))
    builds, results = [], []

    def build(tmp):
        builds.append(tmp)
        time.sleep(0.3)  # long enough for the other to arrive while this one converts
        (tmp / "weights").write_text("w")
        (tmp / "config.json").write_text("{}")

    def convert():
        results.append(offline._convert_once(offline.cache_dir() / "model", "config.json", build))

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and results == [tmp_path / "model"] * 2
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "weights"]
    assert not (tmp_path / "model.tmp").exists()


def test_prompt_shares_parse_and_refuse_what_cannot_be_drawn():
    from ppo_data import parse_prompt_shares, prompt_share_groups

    assert parse_prompt_shares("harmless-base=0.5, helpful-online=0.25") == {
        "harmless-base": 0.5,
        "helpful-online": 0.25,
    }
    for bad, says in (
        ("harmless-base", "each entry is SUBSET=SHARE"),
        ("a=0", "each entry is SUBSET=SHARE"),
        ("a=half", "each entry is SUBSET=SHARE"),
        ("a=0.5,a=0.2", "names a twice"),
        ("a=0.7,b=0.4", "sum to more than 1"),
    ):
        with pytest.raises(cmdline.UsageError, match=says):
            parse_prompt_shares(bad)
    # A row's subset: its local file's folder, or the hub subset of its source.
    origins = [("/data/hh/harmless-base/test.jsonl.gz", 3), ("Anthropic/hh-rlhf/helpful-online/train", 0)]
    assert hh_data.origin_subsets(origins) == ["harmless-base", "helpful-online"]
    subsets = ["a"] * 5 + ["b"] * 3 + ["c"] * 4
    groups, counts, names = prompt_share_groups(subsets, {"a": 0.5}, 16)
    assert groups == [[0, 1, 2, 3, 4], list(range(5, 12))] and counts == [8, 8] and names == ["a", "b, c"]
    # Rounded half up to whole prompts; the rest takes what is left.
    assert prompt_share_groups(subsets, {"b": 0.25, "c": 0.1}, 6)[1] == [2, 1, 3]
    for shares, per_update, says in (
        ({"d": 0.5}, 16, "names d, but the training prompts come from a, b, c"),
        ({"a": 0.5, "b": 0.5}, 16, "leaves no prompt per update to c"),
        ({"a": 0.5, "b": 0.2, "c": 0.2}, 10, "leaves 1 of 10 prompts per update to no subset"),
        ({"a": 0.01}, 16, "a=0.01 of 16 prompts per update rounds to none"),
    ):
        with pytest.raises(cmdline.UsageError, match=says):
            prompt_share_groups(subsets, shares, per_update)


def test_mixed_prompt_stream_takes_each_groups_count_in_its_own_passes_and_resumes():
    from ppo_data import MixedPromptStream

    groups, counts = [[10, 11, 12, 13, 14], list(range(100, 112))], [2, 6]
    stream = MixedPromptStream(groups, counts, 0, 1, seed=3)
    batches = [stream.next_batch() for _ in range(5)]
    for batch in batches:  # exactly the counts, in an order that mixes the groups
        assert sum(i < 100 for i in batch) == 2 and len(batch) == 8
    assert any(batch[:2] != [i for i in batch if i < 100] for batch in batches)
    picks = [i for batch in batches for i in batch if i < 100]  # group 0: 10 picks = two whole passes
    assert sorted(picks[:5]) == groups[0] and sorted(picks[5:]) == groups[0]
    big = [i for batch in batches[:2] for i in batch if i >= 100]  # group 1: one whole pass in two updates
    assert sorted(big) == groups[1]
    # Two processes split each update's prompts between them.
    ranks = [MixedPromptStream(groups, counts, r, 2, seed=3) for r in range(2)]
    for batch in batches:
        assert ranks[0].next_batch() + ranks[1].next_batch() == batch
    # A checkpoint's state resumes the same order.
    again = MixedPromptStream(groups, counts, 0, 1, seed=3)
    [again.next_batch() for _ in range(3)]
    resumed = MixedPromptStream(groups, counts, 0, 1, seed=3)
    resumed.load_state_dict(json.loads(json.dumps(again.state_dict())))
    assert [resumed.next_batch() for _ in range(2)] == batches[3:]
